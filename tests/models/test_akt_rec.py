"""AKT-Rec: semantic-ID clusters, the head-to-tail transfer term computed by hand, the ablation
switches, the gate diagnostics, and that it learns."""

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from tests.models.ctr_fixtures import NUM_CLUSTERS, ctr_inputs, impressions, item_cluster, user_cluster
from tfrs_llmrec.config.schema import AktRecConfig, ModelConfig, RankingConfig
from tfrs_llmrec.data.spec import ITEM_INDEX, LABEL, USER_INDEX
from tfrs_llmrec.models import build_ranker
from tfrs_llmrec.models.akt_rec import dense_clusters


def config(**akt):
    return ModelConfig(ranking=RankingConfig(embedding_dim=8, mlp_units=[32, 16], attention_units=[16]),
                       akt_rec=AktRecConfig(**{"gate_units": [8], **akt}))


def test_clusters_are_dense_indices_of_semantic_id_prefixes():
    ids = np.array([[7, 1, 0], [3, 2, 0], [7, 1, 5], [7, 2, 5]])
    np.testing.assert_array_equal(dense_clusters(ids, 1)[0], [1, 0, 1, 1])
    clusters, count = dense_clusters(ids, 2)
    np.testing.assert_array_equal(clusters, [1, 0, 1, 2])
    assert count == 3


def test_akt_rec_learns_which_items_a_user_clicks():
    model = build_ranker("akt_rec", config(), ctr_inputs(), seed=3)
    model.compile(tf.keras.optimizers.Adam(0.01))
    for step in range(150):
        model.train_step(impressions(128, seed=1000 + step))
    held_out = impressions(2000, seed=1)
    assert roc_auc_score(held_out[LABEL].numpy(), model.predict_logits(held_out).numpy()) > 0.9


def numpy_info_nce(query, keys, temperature):
    query = query / np.linalg.norm(query, axis=1, keepdims=True)
    keys = keys / np.linalg.norm(keys, axis=1, keepdims=True)
    logits = query @ keys.T / temperature
    logits -= logits.max(axis=1, keepdims=True)
    return float(np.mean(-np.diag(logits) + np.log(np.exp(logits).sum(axis=1))))


def hand_transfer(embeddings, clusters, is_head, batch_clusters, lambda1, lambda2, temperature):
    heads, tails = [], []
    for cluster in sorted(set(batch_clusters.tolist())):
        members = clusters == cluster
        if (members & is_head).any() and (members & ~is_head).any():
            heads.append(embeddings[members & is_head].mean(axis=0))
            tails.append(embeddings[members & ~is_head].mean(axis=0))
    heads, tails = np.array(heads), np.array(tails)
    return lambda1 * numpy_info_nce(heads, tails, temperature) + lambda2 * numpy_info_nce(tails, heads, temperature)


def test_the_transfer_term_pairs_head_and_tail_means_of_the_batch_clusters():
    inputs = ctr_inputs()
    features = impressions(40, seed=5)
    # A batch without cluster 3's items and users: that cluster's pair must stay out.
    keep = (item_cluster(features[ITEM_INDEX].numpy()) != 3) & (user_cluster(features[USER_INDEX].numpy()) != 3)
    features = {key: tf.boolean_mask(value, keep) for key, value in features.items()}
    with_transfer = build_ranker("akt_rec", config(lambda1=0.3, lambda2=0.9, orthogonality_weight=0.0), inputs, seed=3)
    without = build_ranker("akt_rec", config(lambda1=0.0, lambda2=0.0, orthogonality_weight=0.0), inputs, seed=3)
    difference = with_transfer.compute_loss(features).numpy() - without.compute_loss(features).numpy()

    # The fixture's semantic IDs: cluster = first code (level 1), item % 4 and user % 4.
    items = np.arange(inputs.num_items)
    catalogue = with_transfer.item_embedding(tf.constant(items, tf.int64)).numpy()
    users = with_transfer.user_embedding(tf.range(inputs.num_users, dtype=tf.int64), features).numpy()
    expected = hand_transfer(catalogue, item_cluster(items), inputs.item_is_head,
                             item_cluster(features[ITEM_INDEX].numpy()), 0.3, 0.9, 0.2)
    expected += hand_transfer(users, user_cluster(np.arange(inputs.num_users)), inputs.user_is_active,
                              user_cluster(features[USER_INDEX].numpy()), 0.3, 0.9, 0.2)
    assert NUM_CLUSTERS > 1 and expected > 0
    np.testing.assert_allclose(difference, expected, rtol=1e-4)


def test_the_transfer_moves_tail_members_more_than_head_members():
    inputs = ctr_inputs()
    model = build_ranker("akt_rec", config(lambda1=0.1, lambda2=1.0, orthogonality_weight=0.0), inputs, seed=3)
    features = impressions(64, seed=6)
    model.compute_loss(features)
    table = model.item_ids.individual_embedding.embeddings
    with tf.GradientTape() as tape:
        transfer = model._transfer(model._catalogue(), model.item_cluster, model.num_item_clusters,
                                   model.item_is_head, tf.gather(model.item_cluster, features[ITEM_INDEX]))
    gradient = tf.convert_to_tensor(tape.gradient(transfer, table)).numpy()[:-1]  # the default ID last
    # Summed over a cluster's head (tail) members, a gradient is the one of their mean embedding.
    clusters = item_cluster(np.arange(inputs.num_items))
    moved = {side: [np.linalg.norm(gradient[(clusters == cluster) & (inputs.item_is_head == side)].sum(axis=0))
                    for cluster in range(NUM_CLUSTERS)] for side in (True, False)}
    assert np.mean(moved[False]) > 3 * np.mean(moved[True]) > 0


@pytest.mark.parametrize("switches, alpha", [({"use_hfa_gate": False}, 0.5), ({"use_cluster_view": False}, 1.0),
                                             ({"use_instance_view": False}, 0.0)])
def test_view_ablations_fix_alpha(switches, alpha):
    model = build_ranker("akt_rec", config(**switches), ctr_inputs(), seed=3)
    diagnostics = model.example_diagnostics(impressions(16, seed=7))
    np.testing.assert_allclose(diagnostics["view_alpha"].numpy(), alpha)


@pytest.mark.parametrize("switches, gate", [({"use_cgae_gate": False}, 0.5), ({"use_individual_embedding": False}, 1.0),
                                            ({"use_cluster_embedding": False}, 0.0)])
def test_embedding_ablations_fix_the_cgae_gate(switches, gate):
    model = build_ranker("akt_rec", config(**switches), ctr_inputs(), seed=3)
    features = impressions(16, seed=7)
    diagnostics = model.example_diagnostics(features)
    np.testing.assert_allclose(diagnostics["item_gate"].numpy(), gate)
    assert np.isfinite(model.compute_loss(features).numpy())


def test_full_model_gates_are_learned_values_in_the_unit_interval():
    diagnostics = build_ranker("akt_rec", config(), ctr_inputs(), seed=3).example_diagnostics(impressions(16))
    for name in ("item_gate", "user_gate", "view_alpha"):
        values = diagnostics[name].numpy()
        assert values.shape == (16,) and np.all((values > 0) & (values < 1)), name


def test_an_unknown_item_with_a_known_semantic_id_takes_its_clusters_embedding():
    from tfrs_llmrec.data import ctr_spec

    model = build_ranker("akt_rec", config(), ctr_inputs(), seed=3)
    features = impressions(8, seed=9)
    unknown = {**features, ITEM_INDEX: -tf.ones_like(features[ITEM_INDEX])}

    def with_ids(rows):
        return {**unknown, ctr_spec.ITEM_SEMANTIC_ID: tf.constant(rows, tf.int64)}

    default = model.predict_logits(unknown).numpy()
    # The fixture's clusters are the first code (item % 4); the second code does not matter at level 1.
    cluster_2 = model.predict_logits(with_ids([[2, 0]] * 8)).numpy()
    cluster_2_again = model.predict_logits(with_ids([[2, 5]] * 8)).numpy()
    cluster_3 = model.predict_logits(with_ids([[3, 0]] * 8)).numpy()
    no_such_cluster = model.predict_logits(with_ids([[9, 0]] * 8)).numpy()
    not_given = model.predict_logits(with_ids([[-1, -1]] * 8)).numpy()
    np.testing.assert_array_equal(cluster_2, cluster_2_again)
    assert not np.allclose(cluster_2, cluster_3) and not np.allclose(cluster_2, default)
    np.testing.assert_array_equal(no_such_cluster, default)
    np.testing.assert_array_equal(not_given, default)
    # A known item ignores the semantic ID it is sent with.
    known = model.predict_logits(features).numpy()
    np.testing.assert_array_equal(model.predict_logits({**features, ctr_spec.ITEM_SEMANTIC_ID: tf.constant(
        [[3, 0]] * 8, tf.int64)}).numpy(), known)
