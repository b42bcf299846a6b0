"""The semantic-features Beam job on a tiny prepared dataset, with the real MiniLM encoder."""

import json
import textwrap

import numpy as np
import pytest

from beam_jobs.features import item_texts, run_features, user_history_vectors
from beam_jobs.ingest import run_ingestion
from tfrs_llmrec.config import load_experiment
from tfrs_llmrec.data import PreparedDataset
from tfrs_llmrec.data.dataset import CsrRows
from tfrs_llmrec.data.features import SemanticFeatures
from tfrs_llmrec.encoders import build_encoder
from tfrs_llmrec.semantic_ids import assign_codes, load_quantizer

TITLES = {"i1": "Super Mario Kart", "i2": "Mario Kart 64", "i3": "Halo 3", "i4": "Halo: Reach",
          "i5": "FIFA 19", "i6": "FIFA 20"}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    log = ["user_id,item_id,timestamp"]
    for user in range(6):
        for position, item in enumerate(["i1", "i2", "i3", "i4", "i5", "i6"][user % 3 * 2:] + ["i1", "i3"]):
            log.append(f"u{user},{item},{position}")
    (root / "log.csv").write_text("\n".join(log) + "\n")
    (root / "items.csv").write_text("item_id,title,genres\n" + "".join(
        f"{item},{title},{'Racing' if 'Kart' in title else 'Shooter' if 'Halo' in title else 'Sports'}\n"
        for item, title in TITLES.items()))
    config_path = root / "exp.yaml"
    config_path.write_text(textwrap.dedent(f"""
        name: features
        output_dir: {root / 'runs'}
        data:
          dataset: csv
          path: {root / 'log.csv'}
          k_core: 0
          num_shards: 2
          columns: {{items_path: {root / 'items.csv'}, genres: genres}}
        features:
          semantic_ids: {{num_levels: 2, codebook_size: 3, latent_dim: 4, hidden_dims: [16], epochs: 5}}
    """))
    config = load_experiment(config_path)
    dataset = PreparedDataset.open(run_ingestion(config.data, root / "runs", seed=0))
    return config, dataset


def test_item_texts_compose_metadata():
    assert item_texts("Halo 3", ["Shooter", "Xbox"], "Finish the fight.") == {
        "title": "Halo 3", "metadata": "Halo 3. Genres: Shooter, Xbox. Finish the fight."}
    assert item_texts("Halo 3", [], "") == {"title": "Halo 3", "metadata": "Halo 3"}


def test_user_vector_is_normalised_mean_of_training_items(prepared):
    _, dataset = prepared
    vectors = np.eye(dataset.num_items, 4, dtype=np.float32)
    users = user_history_vectors(dataset, vectors)
    train = dataset.split_items("train")
    expected = vectors[train.row(0)].mean(axis=0)
    np.testing.assert_allclose(users[0], expected / np.linalg.norm(expected), rtol=1e-6)


def test_users_without_training_items_get_zero_vectors_wherever_they_are():
    # The users split leaves held-out users without training items, the last user index included.
    class Timelines:
        def split_items(self, split):
            return CsrRows(np.array([0, 0, 2, 2, 3, 3]), np.array([1, 2, 0]))

    vectors = np.eye(3, 4, dtype=np.float32)
    users = user_history_vectors(Timelines(), vectors)
    expected = np.zeros((5, 4), np.float32)
    expected[1, 1:3] = expected[3, 0] = 1.0
    expected[1] /= np.sqrt(2.0)
    np.testing.assert_allclose(users, expected, rtol=1e-6)


def test_features_job_writes_vectors_ids_and_manifest(prepared):
    config, dataset = prepared
    root = run_features(config.features, dataset, seed=0)
    features = SemanticFeatures.open(root)
    encoder = build_encoder(config.features.encoder)
    titles = dataset.item_table().titles
    # Vectors equal the encoder's own output for the same texts (RunInference changes nothing).
    np.testing.assert_allclose(features.item_vectors["title"], encoder.encode(titles), atol=1e-5)
    assert features.item_semantic_ids.shape == (dataset.num_items, 2)
    assert features.item_semantic_ids.max() < 3
    assert features.user_semantic_ids.shape == (dataset.num_users, 2)
    assert not features.has_motivation.any()  # llm.backend is none
    similarity = features.item_vectors["metadata"] @ features.item_vectors["metadata"].T
    index = {title: position for position, title in enumerate(titles)}
    # The two Halo games are closer to each other than to a FIFA game.
    assert similarity[index["Halo 3"], index["Halo: Reach"]] > similarity[index["Halo 3"], index["FIFA 19"]]
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["encoder"].startswith("all-MiniLM-L6-v2@")
    assert set(manifest["item_semantic_ids"]) >= {"collision_rate", "usage_per_level", "reconstruction_mse"}
    assert run_features(config.features, dataset, seed=0) == root  # complete: reused
    assert not list(root.parent.glob("*.partial-*"))


def test_rows_are_written_from_staged_index_ranges_and_the_staging_is_removed(prepared, tmp_path, monkeypatch):
    from dataclasses import replace

    import beam_jobs.features as features_job

    config, dataset = prepared
    # Ranges of 4 over 6 items and 6 users: each DoFn call writes a partial range too.
    monkeypatch.setattr(features_job, "STAGING_BATCH", 4)
    root = run_features(config.features, dataset, seed=0, output_dir=tmp_path)
    assert sorted(path.name for path in root.iterdir()) == ["items", "manifest.json", "rqvae_items", "rqvae_users",
                                                            "users"]
    features = SemanticFeatures.open(root)
    titles = dataset.item_table().titles
    np.testing.assert_allclose(features.item_vectors["title"], build_encoder(config.features.encoder).encode(titles),
                               atol=1e-5)
    expected_users = user_history_vectors(dataset, features.item_vectors["metadata"])
    np.testing.assert_allclose(features.user_history_vectors, expected_users, atol=1e-6)
    # Each row's codes are its own vector's under the saved quantisers (sid_source is metadata).
    for quantizer, vectors, codes in (("rqvae_items", features.item_vectors["metadata"], features.item_semantic_ids),
                                      ("rqvae_users", features.user_history_vectors, features.user_semantic_ids)):
        np.testing.assert_array_equal(codes, assign_codes(load_quantizer(root / quantizer), vectors))
    # Unique mode: the staged last level follows each item's own codes and makes every tuple unique.
    semantic_ids = replace(config.features.semantic_ids, mode="unique")
    unique = SemanticFeatures.open(run_features(replace(config.features, semantic_ids=semantic_ids), dataset, seed=0,
                                                output_dir=tmp_path))
    assert len({tuple(codes) for codes in unique.item_semantic_ids}) == dataset.num_items
    np.testing.assert_array_equal(unique.item_semantic_ids[:, :-1],
                                  assign_codes(load_quantizer(unique.root / "rqvae_items"),
                                               unique.item_vectors["metadata"]))


def test_llm_backend_adds_motivations_and_shared_interests(prepared, tmp_path, monkeypatch):
    from dataclasses import replace

    from tests.llm.fake_openai import FakeOpenAIServer, chat_reply

    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")

    def responder(request):
        text = request.user_text
        if "Halo" in text and "history" not in text.lower():
            return chat_reply('["a story-driven shooter", "split-screen co-op with friends"]')
        return chat_reply('["racing with friends", "sci-fi shooters"]')

    config, dataset = prepared
    server = FakeOpenAIServer(responder).start()
    try:
        endpoint = replace(config.features.llm.endpoint, base_url=server.base_url, model="fake-llm", timeout_s=5.0,
                           backoff_s=0.0)
        llm = replace(config.features.llm, backend="openai", endpoint=endpoint, cache_dir=str(tmp_path / "cache"),
                      max_interests=3)
        features_config = replace(config.features, llm=llm)
        root = run_features(features_config, dataset, seed=0)
        requests_first_run = len(server.requests)
    finally:
        server.stop()
    features = SemanticFeatures.open(root)
    assert features.has_motivation.all()  # every item got motivations, encoded into its own vector
    assert not np.allclose(features.item_vectors["motivation"], features.item_vectors["metadata"])
    manifest = json.loads((root / "manifest.json").read_text())
    interests = manifest["llm"]["interests"]
    # Only typical users (AP exemplars) were sent to the LLM; everyone shares an exemplar's interests.
    assert 1 <= interests["typical_users"] <= dataset.num_users
    assert interests["source"] == "llm"
    assert (features.user_num_interests == 2).all()
    assert requests_first_run == dataset.num_items + interests["typical_users"]
    np.testing.assert_allclose(np.linalg.norm(features.user_interests[:, :2], axis=-1), 1.0, rtol=1e-5)


def test_collaborative_projection_moves_the_item_codes_and_is_reported(prepared):
    from dataclasses import replace

    from tfrs_llmrec.config.schema import CollaborativeProjectionConfig

    config, dataset = prepared
    plain = run_features(config.features, dataset, seed=0)
    semantic_ids = replace(config.features.semantic_ids, collaborative=CollaborativeProjectionConfig(
        enabled=True, epochs=30, batch_size=4, learning_rate=0.05))
    collaborative = run_features(replace(config.features, semantic_ids=semantic_ids), dataset, seed=0)
    assert collaborative != plain  # another features config, another directory
    manifests = [json.loads((root / "manifest.json").read_text()) for root in (plain, collaborative)]
    assert manifests[0]["collaborative_projection"] is None
    report = manifests[1]["collaborative_projection"]
    assert report["pairs"] > 0 and len(report["loss_per_epoch"]) == 30
    for manifest in manifests:
        assert set(manifest["item_semantic_ids"]["top_level_pair_agreement"]) == {"same_cluster", "random_baseline"}
    # The item codes come from the projected vectors; the stored LM vectors stay the encoder's.
    plain_features, collaborative_features = SemanticFeatures.open(plain), SemanticFeatures.open(collaborative)
    np.testing.assert_array_equal(plain_features.item_vectors["metadata"], collaborative_features.item_vectors["metadata"])
    assert not np.array_equal(plain_features.item_semantic_ids, collaborative_features.item_semantic_ids)
