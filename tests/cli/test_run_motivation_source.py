"""MotiR over LLM purchase motivations, end to end through a loopback OpenAI-compatible server.

Items of the clustered log are i0..i39, titled "Game number N": the titles say nothing about
the cluster (N mod 4). The fake LLM gives every item of a cluster the same
cluster-specific motivations, so the motivation vectors (and only they) are one per cluster,
which the test reads back from the trained model's checkpoint.
"""

import re

import numpy as np
import pytest
import tensorflow as tf

from tests.cli.test_run_end_to_end import write_clustered_log, write_config
from tests.cli.test_run_semantic_models import FEW_EPOCHS, read, run_llmrec
from tests.llm.fake_openai import FakeOpenAIServer, chat_reply
from tfrs_llmrec.data import PreparedDataset
from tfrs_llmrec.data.features import SemanticFeatures
from tfrs_llmrec.training import best_checkpoint

CLUSTER_MOTIVATIONS = [
    '["unwinds with a cosy farming routine", "likes calm games before bed"]',
    '["trains for online shooter tournaments", "wants fast competitive matches"]',
    '["follows every football season", "plays sports games with friends"]',
    '["loves solving hard logic puzzles", "enjoys brain teasers on the commute"]',
]


def respond(request):
    title = re.search(r"Title: Game number (\d+)", request.user_text)
    if title:
        return chat_reply(CLUSTER_MOTIVATIONS[int(title.group(1)) % 4])
    return chat_reply('["video games"]')  # user interests (EIMF's), not used by MotiR


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("motivation")
    data = tmp_path / "log.csv"
    write_clustered_log(data)
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\n" + "".join(f"i{n},Game number {n}\n" for n in range(40)), encoding="utf-8")
    config = write_config(tmp_path, data)
    config.write_text(config.read_text().replace("max_history: 8}", f"max_history: 8, columns: {{items_path: {items}}}}}"))
    return tmp_path, config


@pytest.fixture
def llm_env(subprocess_env):
    env = {name: value for name, value in subprocess_env.items() if name.lower() not in ("http_proxy", "all_proxy")}
    env["no_proxy"] = "127.0.0.1,localhost"
    return env


def test_motivation_source_without_an_llm_is_one_clear_error(experiment, llmrec_cmd, subprocess_env):
    tmp_path, config = experiment
    result = run_llmrec(llmrec_cmd, subprocess_env, "train", str(config), "--set", "name=no-llm",
                        "--set", "model.name=motir", "--set", "model.semantic.source=motivation")
    assert result.returncode == 1
    assert "model.semantic.source" in result.stderr and "features.llm.backend" in result.stderr
    assert not (tmp_path / "runs" / "no-llm" / "checkpoints").exists()


def test_motir_trains_on_llm_motivations(experiment, llmrec_cmd, llm_env):
    tmp_path, config = experiment
    server = FakeOpenAIServer(respond).start()
    try:
        result = run_llmrec(
            llmrec_cmd, llm_env, "run", str(config), "--set", "name=motivation", "--set", "model.name=motir",
            "--set", "model.semantic.source=motivation", "--set", "export.enabled=false", *FEW_EPOCHS,
            "--set", "features.llm.backend=openai", "--set", f"features.llm.endpoint.base_url={server.base_url}",
            "--set", "features.llm.endpoint.model=fake-llm", "--set", "features.llm.endpoint.backoff_s=0",
            "--set", f"features.llm.cache_dir={tmp_path / 'llm-cache'}")
        item_prompts = [request for request in server.requests if "Title: Game number" in request.user_text]
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(item_prompts) == 40  # one LLM call per item
    run_dir = tmp_path / "runs" / "motivation"
    assert len(read(run_dir / "train_result.json")["alignment"]["mean_cosine_per_epoch"]) >= 1

    # The semantic tower of the trained model holds the encoded motivations: one vector per
    # cluster, since the LLM gave every item of a cluster the same motivations.
    (features_dir,) = [path for path in (tmp_path / "runs" / "features").iterdir()
                       if SemanticFeatures.open(path).has_motivation.all()]
    features = SemanticFeatures.open(features_dir)
    reader = tf.train.load_checkpoint(best_checkpoint(run_dir / "checkpoints" / "3-joint"))
    in_model = reader.get_tensor("model/semantic_tower/item_vectors/.ATTRIBUTES/VARIABLE_VALUE")
    np.testing.assert_array_equal(in_model, features.item_vectors["motivation"])
    assert not np.allclose(in_model, features.item_vectors["title"])
    item_ids = PreparedDataset.open(next((tmp_path / "runs" / "datasets").iterdir())).item_ids()
    clusters = np.array([int(item_id[1:]) % 4 for item_id in item_ids])
    for cluster in range(4):
        rows = in_model[clusters == cluster]
        np.testing.assert_allclose(rows, np.broadcast_to(rows[0], rows.shape), atol=1e-6)
    assert not np.allclose(in_model[clusters == 0][0], in_model[clusters == 1][0])
