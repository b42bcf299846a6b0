import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.layers.gated_fusion import ScalarGate, TwoWeightGate


def branches(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (tf.constant(rng.normal(size=shape) * 3.0, tf.float32),
            tf.constant(rng.normal(size=shape) * 3.0, tf.float32))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_scalar_gate_weights_lie_in_the_unit_interval_and_mix_the_branches():
    h_cf, h_sem = branches([16, 8])
    fused, alpha = ScalarGate(seed=1)(h_cf, h_sem)
    alpha = alpha.numpy()
    assert alpha.shape == (16,)
    assert ((alpha >= 0.0) & (alpha <= 1.0)).all()
    expected = alpha[:, None] * h_sem.numpy() + (1.0 - alpha[:, None]) * h_cf.numpy()
    np.testing.assert_allclose(fused.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_scalar_gate_matches_a_hand_computation():
    gate = ScalarGate(input_dim=2)
    gate.gate.set_weights([np.ones([4, 1], np.float32), np.zeros([1], np.float32)])
    h_cf = tf.constant([[1.0, 0.0], [0.0, 0.0]])
    h_sem = tf.constant([[0.5, -1.0], [2.0, 0.0]])
    fused, alpha = gate(h_cf, h_sem)
    expected_alpha = sigmoid(np.array([1.0 + 0.5 - 1.0, 2.0]))  # sum of [h_cf; h_sem]
    np.testing.assert_allclose(alpha.numpy(), expected_alpha, rtol=1e-6)
    np.testing.assert_allclose(fused.numpy()[0], expected_alpha[0] * np.array([0.5, -1.0])
                               + (1.0 - expected_alpha[0]) * np.array([1.0, 0.0]), rtol=1e-6)

    gate.gate.set_weights([np.array([[2.0], [0.0], [0.0], [-1.0]], np.float32), np.array([0.5], np.float32)])
    _, alpha = gate(h_cf, h_sem)
    np.testing.assert_allclose(alpha.numpy(), sigmoid(np.array([2.0 + 1.0 + 0.5, 0.5])), rtol=1e-6)


def test_scalar_gate_keeps_leading_dimensions():
    h_cf, h_sem = branches([3, 4, 6])
    fused, alpha = ScalarGate()(h_cf, h_sem)
    assert fused.shape == (3, 4, 6) and alpha.shape == (3, 4)


@pytest.mark.parametrize("make", [lambda: ScalarGate(seed=2),
                                  lambda: TwoWeightGate(output_dim=3, hidden_dim=5, seed=2)],
                         ids=["scalar", "two_weight"])
def test_gradient_reaches_both_branches_and_the_gate(make):
    gate = make()
    h_cf, h_sem = branches([4, 6], seed=3)
    with tf.GradientTape() as tape:
        tape.watch([h_cf, h_sem])
        fused, semantic_weight = gate(h_cf, h_sem)
        loss = tf.reduce_sum(fused * tf.range(1.0, fused.shape[-1] + 1.0)) + tf.reduce_sum(semantic_weight)
    gradients = tape.gradient(loss, [h_cf, h_sem] + gate.trainable_variables)
    assert len(gate.trainable_variables) >= 2
    for gradient in gradients:
        assert gradient is not None
        assert np.abs(gradient.numpy()).sum() > 0.0


def test_two_weight_gate_weights_sum_to_one_and_project_256_to_128():
    h_cf, h_sem = branches([10, 256], seed=4)
    gate = TwoWeightGate(input_dim=256, output_dim=128, seed=5)
    fused, w_sem = gate(h_cf, h_sem)
    weights = gate.weights_for(h_cf, h_sem).numpy()
    assert fused.shape == (10, 128) and w_sem.shape == (10,)
    assert ((weights >= 0.0) & (weights <= 1.0)).all()
    np.testing.assert_allclose(weights.sum(axis=-1), np.ones(10), rtol=1e-6)
    np.testing.assert_allclose(w_sem.numpy(), weights[:, 1], rtol=1e-6)

    kernel, bias = gate.projection.get_weights()
    mixed = weights[:, :1] * h_cf.numpy() + weights[:, 1:] * h_sem.numpy()
    np.testing.assert_allclose(fused.numpy(), mixed @ kernel + bias, rtol=1e-4, atol=1e-4)


def test_two_weight_gate_matches_a_hand_computation_without_projection():
    gate = TwoWeightGate(output_dim=None, hidden_dim=3, input_dim=2)
    gate.gate_logits.set_weights([np.zeros([3, 2], np.float32), np.array([0.0, np.log(3.0)], np.float32)])
    h_cf = tf.constant([[1.0, 2.0]])
    h_sem = tf.constant([[-3.0, 4.0]])
    fused, w_sem = gate(h_cf, h_sem)
    np.testing.assert_allclose(w_sem.numpy(), [0.75], rtol=1e-6)  # softmax([0, log 3]) = (1/4, 3/4)
    np.testing.assert_allclose(fused.numpy(), [[0.25 * 1.0 + 0.75 * -3.0, 0.25 * 2.0 + 0.75 * 4.0]], rtol=1e-6)


@pytest.mark.parametrize("make", [lambda: ScalarGate(input_dim=4, seed=6),
                                  lambda: TwoWeightGate(output_dim=3, hidden_dim=5, input_dim=4, seed=6)],
                         ids=["scalar", "two_weight"])
def test_config_round_trip_rebuilds_the_same_gate(make):
    gate = make()
    clone = type(gate).from_config(gate.get_config())
    assert clone.get_config() == gate.get_config()
    h_cf, h_sem = branches([2, 4], seed=7)
    for original, rebuilt in zip(gate(h_cf, h_sem), clone(h_cf, h_sem)):
        np.testing.assert_allclose(original.numpy(), rebuilt.numpy(), rtol=1e-6)  # same seeded weights


def test_gates_build_eagerly_with_input_dim_and_reject_mismatched_inputs():
    assert len(ScalarGate(input_dim=4).weights) == 2
    assert len(TwoWeightGate(output_dim=3, input_dim=4).weights) == 6
    h_cf, h_sem = branches([2, 4])
    with pytest.raises(ValueError, match="same last dimension"):
        ScalarGate()(h_cf, h_sem[:, :3])
    with pytest.raises(ValueError, match="last dimension 5"):
        TwoWeightGate(input_dim=5)(h_cf, h_sem)


@pytest.mark.parametrize("make", [lambda: ScalarGate(input_dim=4, seed=0),
                                  lambda: TwoWeightGate(output_dim=None, input_dim=4, seed=0)])
def test_gate_reads_gate_inputs_but_mixes_the_branches(make):
    gate = make()
    h_cf, h_sem = branches((3, 4))
    g_cf, g_sem = branches((3, 4), seed=5)
    fused, weight = gate(h_cf, h_sem, gate_inputs=(g_cf, g_sem))
    _, expected_weight = gate(g_cf, g_sem)
    np.testing.assert_allclose(weight.numpy(), expected_weight.numpy(), rtol=1e-6)
    w = weight.numpy()[:, None]
    np.testing.assert_allclose(fused.numpy(), w * h_sem.numpy() + (1 - w) * h_cf.numpy(), rtol=1e-5, atol=1e-6)
