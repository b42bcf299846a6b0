import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.layers.mmoe import MMoE

INPUTS = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)


def relu(x):
    return np.maximum(x, 0.0)


def mlp_numpy(mlp, x, relu_output):
    """A ReLU MLP evaluated from its weights; the last layer is linear unless relu_output."""
    weights = mlp.get_weights()
    layers = list(zip(weights[::2], weights[1::2]))
    for index, (kernel, bias) in enumerate(layers):
        x = x @ kernel + bias
        if index < len(layers) - 1 or relu_output:
            x = relu(x)
    return x


def built_mmoe(**kwargs):
    settings = dict(num_experts=3, expert_units=(6, 4), num_tasks=2, tower_units=(3,), seed=0)
    mmoe = MMoE(**{**settings, **kwargs})
    mmoe(tf.constant(INPUTS))
    return mmoe


def softmax(logits):
    exponentials = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


def test_outputs_one_logit_per_task_and_gates_that_sum_to_one():
    mmoe = built_mmoe(num_tasks=3)
    logits, gate_weights = mmoe(tf.constant(INPUTS), return_gate_weights=True)
    assert isinstance(logits, list) and len(logits) == 3
    assert all(task_logits.shape == (5,) for task_logits in logits)
    assert gate_weights.shape == (5, 3, 3) and gate_weights.dtype == tf.float32
    gate_weights = gate_weights.numpy()
    assert (gate_weights >= 0.0).all()
    np.testing.assert_allclose(gate_weights.sum(axis=-1), np.ones((5, 3)), rtol=1e-6)
    assert len(mmoe(tf.constant(INPUTS))) == 3  # without the flag: the logits alone


def test_matches_a_numpy_mixture_of_experts():
    mmoe = built_mmoe()
    logits, gate_weights = mmoe(tf.constant(INPUTS), return_gate_weights=True)
    experts = np.stack([mlp_numpy(expert, INPUTS, relu_output=True) for expert in mmoe.experts], axis=1)  # [B, E, 4]
    for task in range(2):
        kernel, bias = mmoe.gates[task].get_weights()
        gates = softmax(INPUTS @ kernel + bias)
        np.testing.assert_allclose(gate_weights.numpy()[:, task], gates, rtol=1e-5, atol=1e-6)
        mixed = np.einsum("be,beu->bu", gates, experts)
        expected = mlp_numpy(mmoe.towers[task], mixed, relu_output=False)[:, 0]
        np.testing.assert_allclose(logits[task].numpy(), expected, rtol=1e-4, atol=1e-5)


def test_a_gate_forced_onto_one_expert_gives_that_experts_tower_output():
    mmoe = built_mmoe()
    mmoe.gates[1].set_weights([np.zeros([4, 3], np.float32), np.array([0.0, 0.0, 60.0], np.float32)])
    logits, gate_weights = mmoe(tf.constant(INPUTS), return_gate_weights=True)
    np.testing.assert_allclose(gate_weights.numpy()[:, 1], np.tile([0.0, 0.0, 1.0], (5, 1)), atol=1e-7)
    expert_2 = mlp_numpy(mmoe.experts[2], INPUTS, relu_output=True)
    np.testing.assert_allclose(logits[1].numpy(), mlp_numpy(mmoe.towers[1], expert_2, relu_output=False)[:, 0],
                               rtol=1e-5, atol=1e-6)


def test_seeded_experts_start_different_and_the_config_round_trips():
    mmoe = built_mmoe(seed=11)
    kernels = [expert.get_weights()[0] for expert in mmoe.experts]
    assert not np.allclose(kernels[0], kernels[1]) and not np.allclose(kernels[1], kernels[2])
    clone = MMoE.from_config(mmoe.get_config())
    assert clone.get_config() == mmoe.get_config()
    for original, rebuilt in zip(mmoe(tf.constant(INPUTS)), clone(tf.constant(INPUTS))):
        np.testing.assert_allclose(rebuilt.numpy(), original.numpy(), rtol=1e-6)


def test_gradients_reach_every_expert_gate_and_tower():
    mmoe = built_mmoe(expert_units=(4,), tower_units=())
    with tf.GradientTape() as tape:
        logits = mmoe(tf.constant(INPUTS))
        loss = tf.reduce_sum(logits[0] * tf.range(1.0, 6.0)) - tf.reduce_sum(logits[1] ** 2)
    gradients = tape.gradient(loss, mmoe.trainable_variables)
    assert len(gradients) == 3 * 2 + 2 * 2 + 2 * 2
    for variable, gradient in zip(mmoe.trainable_variables, gradients):
        assert gradient is not None, variable.name
        assert np.isfinite(gradient.numpy()).all()
        if "kernel" in variable.name:
            assert np.abs(gradient.numpy()).sum() > 0, variable.name


def test_works_in_a_tf_function():
    mmoe = built_mmoe()
    compiled = tf.function(lambda x: mmoe(x, return_gate_weights=True),
                           input_signature=[tf.TensorSpec([None, 4])])
    logits, gate_weights = compiled(tf.constant(INPUTS[:2]))
    eager_logits = mmoe(tf.constant(INPUTS[:2]))
    for compiled_logits, expected in zip(logits, eager_logits):
        np.testing.assert_allclose(compiled_logits.numpy(), expected.numpy(), rtol=1e-6)
    assert gate_weights.shape == (2, 2, 3)


def test_rejects_empty_architectures():
    with pytest.raises(ValueError, match="at least one expert"):
        MMoE(num_experts=0, expert_units=(4,), num_tasks=1)
    with pytest.raises(ValueError, match="at least one expert"):
        MMoE(num_experts=2, expert_units=(), num_tasks=1)


def test_mmoe_under_mixed_precision():
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        logits, gate_weights = MMoE(num_experts=2, expert_units=(4,), num_tasks=2, tower_units=(3,), seed=0)(
            tf.constant(INPUTS), return_gate_weights=True)
        assert all(task_logits.dtype == tf.float16 for task_logits in logits)
        assert gate_weights.dtype == tf.float32
        np.testing.assert_allclose(gate_weights.numpy().sum(axis=-1), np.ones((5, 2)), rtol=1e-6)
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
