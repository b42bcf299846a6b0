import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.data.spec import PAD_ITEM
from tfrs_llmrec.layers.cluster_embedding import ClusterGatedEmbedding, ClusterGatedOutput

CLUSTER_OF_ID = [0, 0, 1, 2, 1]
BUCKETS = [3, 2]
IDS = np.array([[0, 3, PAD_ITEM], [4, 1, 2]], np.int64)
ACTIVITY = np.array([[[0, 1], [2, 0], [-1, -1]], [[1, 1], [2, 1], [0, 0]]], np.int64)

RNG = np.random.default_rng(0)
INDIVIDUAL = RNG.normal(size=(5, 4)).astype(np.float32)
CLUSTERS = RNG.normal(size=(3, 4)).astype(np.float32)
ACTIVITY_TABLE = RNG.normal(size=(5, 2)).astype(np.float32)  # 3 + 2 buckets, activity_dim 2
GATE_KERNEL = RNG.normal(size=(4, 1)).astype(np.float32)
GATE_BIAS = np.array([0.2], np.float32)


def layer(**kwargs):
    settings = dict(num_ids=5, num_clusters=3, dim=4, cluster_of_id=CLUSTER_OF_ID, activity_buckets=BUCKETS,
                    gate_units=(), activity_dim=2, seed=0)
    return ClusterGatedEmbedding(**{**settings, **kwargs})


def set_tables(cgae):
    cgae(tf.constant(IDS), tf.constant(ACTIVITY))
    if cgae.individual_embedding is not None:
        cgae.individual_embedding.set_weights([INDIVIDUAL])
    if cgae.cluster_embedding is not None:
        cgae.cluster_embedding.set_weights([CLUSTERS])
    if cgae.gate is not None:
        cgae.activity_embedding.set_weights([ACTIVITY_TABLE])
        cgae.gate.set_weights([GATE_KERNEL, GATE_BIAS])
    return cgae


def numpy_parts(ids):
    """c and d looked up by hand, zero at padding."""
    valid = (ids >= 0)[..., None]
    safe = np.maximum(ids, 0)
    return CLUSTERS[np.asarray(CLUSTER_OF_ID)[safe]] * valid, INDIVIDUAL[safe] * valid


def test_gated_embedding_matches_numpy():
    cgae = set_tables(layer())
    output = cgae(tf.constant(IDS), tf.constant(ACTIVITY), return_components=True)
    assert isinstance(output, ClusterGatedOutput)
    c, d = numpy_parts(IDS)
    # Feature 0 buckets are rows 0..2 of the activity table, feature 1 buckets rows 3..4; -1 clips to 0.
    clipped = np.maximum(ACTIVITY, 0)
    activity = np.concatenate([ACTIVITY_TABLE[clipped[..., 0]], ACTIVITY_TABLE[3 + clipped[..., 1]]], axis=-1)
    r = 1.0 / (1.0 + np.exp(-((activity @ GATE_KERNEL)[..., 0] + GATE_BIAS[0])))
    r = r * (IDS >= 0)
    np.testing.assert_allclose(output.gate.numpy(), r, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(output.cluster.numpy(), c, rtol=1e-6)
    np.testing.assert_allclose(output.individual.numpy(), d, rtol=1e-6)
    np.testing.assert_allclose(output.embedding.numpy(), r[..., None] * c + (1 - r[..., None]) * d,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cgae(tf.constant(IDS), tf.constant(ACTIVITY)).numpy(), output.embedding.numpy())


def test_ids_of_one_cluster_share_its_embedding():
    output = layer()(tf.constant([2, 4, 3]), tf.constant([[0, 0], [1, 1], [2, 0]]), return_components=True)
    cluster = output.cluster.numpy()
    np.testing.assert_array_equal(cluster[0], cluster[1])  # IDs 2 and 4 are both in cluster 1
    assert not np.allclose(cluster[0], cluster[2])
    assert not np.allclose(output.individual.numpy()[0], output.individual.numpy()[1])


def test_ablations_give_exactly_c_d_and_their_mean():
    c, d = numpy_parts(IDS)
    valid = IDS >= 0
    cluster_only = set_tables(layer(use_individual=False))(tf.constant(IDS), return_components=True)
    np.testing.assert_array_equal(cluster_only.embedding.numpy(), c)
    np.testing.assert_array_equal(cluster_only.gate.numpy(), valid.astype(np.float32))
    assert cluster_only.individual is None

    individual_only = set_tables(layer(use_cluster=False, cluster_of_id=None))(tf.constant(IDS),
                                                                               return_components=True)
    np.testing.assert_array_equal(individual_only.embedding.numpy(), d)
    np.testing.assert_array_equal(individual_only.gate.numpy(), np.zeros(IDS.shape))
    assert individual_only.cluster is None

    ungated = set_tables(layer(use_gate=False))(tf.constant(IDS), return_components=True)
    np.testing.assert_allclose(ungated.embedding.numpy(), (c + d) / 2.0, rtol=1e-6)
    np.testing.assert_array_equal(ungated.gate.numpy(), 0.5 * valid)

    for ablated in (layer(use_individual=False), layer(use_cluster=False), layer(use_gate=False)):
        assert ablated.gate is None and ablated.activity_embedding is None


def test_padding_ids_get_zeros_whatever_their_activity_holds():
    cgae = layer(gate_units=(3,))
    output = cgae(tf.constant([PAD_ITEM, 1]), tf.constant([[99, -7], [0, 1]]), return_components=True)
    for tensor in output:
        np.testing.assert_array_equal(tensor.numpy()[0], np.zeros_like(tensor.numpy()[0]))
    assert np.abs(output.embedding.numpy()[1]).sum() > 0


def test_activity_buckets_outside_the_range_are_clipped():
    cgae = layer(gate_units=(3,))
    ids = tf.constant([1, 1])
    high = cgae(ids, tf.constant([[7, 5], [2, 1]]), return_components=True).gate.numpy()
    low = cgae(ids, tf.constant([[-3, -1], [0, 0]]), return_components=True).gate.numpy()
    assert high[0] == high[1]
    np.testing.assert_array_equal(low[0], cgae(ids[:1], tf.constant([[0, 0]]), return_components=True).gate[0])


def test_gradients_reach_both_tables_the_activity_table_and_the_gate():
    cgae = layer(gate_units=(3,))
    with tf.GradientTape() as tape:
        output = cgae(tf.constant(IDS), tf.constant(ACTIVITY), return_components=True)
        loss = tf.reduce_sum(output.embedding * tf.range(1.0, 5.0))
    variables = cgae.trainable_variables
    assert len(variables) == 3 + 4  # individual, cluster, activity tables; gate hidden and output Dense
    for variable, gradient in zip(variables, tape.gradient(loss, variables)):
        assert gradient is not None, variable.name
        values = tf.convert_to_tensor(gradient).numpy()
        assert np.abs(values).sum() > 0, variable.name


def test_works_in_a_tf_function_with_dynamic_batch_and_length():
    cgae = layer(gate_units=(3,))

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int64), tf.TensorSpec([None, None, 2], tf.int64)])
    def embed(ids, activity):
        return cgae(ids, activity, return_components=True)

    for ids, activity in ((IDS, ACTIVITY), (IDS[:1, :2], ACTIVITY[:1, :2])):
        compiled = embed(tf.constant(ids), tf.constant(activity))
        eager = cgae(tf.constant(ids), tf.constant(activity), return_components=True)
        assert compiled.embedding.shape == ids.shape + (4,) and compiled.gate.shape == ids.shape
        for actual, expected in zip(compiled, eager):
            np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=1e-6)


def test_seeded_config_round_trip_rebuilds_the_same_layer():
    cgae = layer(gate_units=(3,), seed=4)
    config = cgae.get_config()
    assert config["cluster_of_id"] == CLUSTER_OF_ID
    clone = ClusterGatedEmbedding.from_config(config)
    assert clone.get_config() == config
    np.testing.assert_allclose(clone(tf.constant(IDS), tf.constant(ACTIVITY)).numpy(),
                               cgae(tf.constant(IDS), tf.constant(ACTIVITY)).numpy(), rtol=1e-6)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="5 integers"):
        layer(cluster_of_id=[0, 1])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        layer(cluster_of_id=[0, 1, 2, 3, 0])
    with pytest.raises(ValueError, match="required"):
        layer(cluster_of_id=None)
    with pytest.raises(ValueError, match="at least one"):
        layer(use_individual=False, use_cluster=False)
    with pytest.raises(ValueError, match="activity_buckets"):
        layer(activity_buckets=())
    with pytest.raises(ValueError, match="activity features"):
        layer()(tf.constant(IDS))


def test_cluster_gated_embedding_under_mixed_precision():
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        for cgae in (layer(gate_units=(3,)), layer(use_gate=False), layer(use_individual=False)):
            output = cgae(tf.constant(IDS), tf.constant(ACTIVITY), return_components=True)
            assert output.embedding.dtype == tf.float16 and output.gate.dtype == tf.float16
            assert np.isfinite(output.embedding.numpy()).all()
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
