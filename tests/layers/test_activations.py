import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.layers.activations import Dice, activation_layer

EPSILON = 1e-8


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def dice_numpy(x, mean, variance, alpha):
    p = sigmoid((x - mean) / np.sqrt(variance + EPSILON))
    return p * x + (1.0 - p) * alpha * x


X = np.array([[1.0, -2.0, 0.5], [3.0, 0.0, -1.5], [-1.0, 4.0, 2.0], [0.0, 1.0, -0.5]], np.float32)
ALPHA = np.array([0.5, -0.2, 0.1], np.float32)


def built_dice(**kwargs):
    dice = Dice(**kwargs)
    dice.build((None, 3))
    dice.alpha.assign(ALPHA)
    return dice


def test_training_normalises_with_the_batch_statistics():
    outputs = built_dice()(tf.constant(X), training=True).numpy()
    np.testing.assert_allclose(outputs, dice_numpy(X, X.mean(axis=0), X.var(axis=0), ALPHA), rtol=1e-5, atol=1e-6)


def test_inference_normalises_with_the_moving_statistics_and_updates_nothing():
    dice = built_dice()
    moving_mean, moving_variance = np.array([0.5, -1.0, 2.0], np.float32), np.array([4.0, 0.25, 1.0], np.float32)
    dice.moving_mean.assign(moving_mean)
    dice.moving_variance.assign(moving_variance)
    outputs = dice(tf.constant(X), training=False).numpy()
    np.testing.assert_allclose(outputs, dice_numpy(X, moving_mean, moving_variance, ALPHA), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(dice.moving_mean.numpy(), moving_mean)
    np.testing.assert_array_equal(dice.moving_variance.numpy(), moving_variance)
    # The default (no training flag outside fit) is inference too.
    np.testing.assert_allclose(dice(tf.constant(X)).numpy(), outputs, rtol=1e-6)


def test_training_moves_the_moving_averages_by_the_momentum():
    dice = built_dice(momentum=0.9)
    dice(tf.constant(X), training=True)
    np.testing.assert_allclose(dice.moving_mean.numpy(), 0.1 * X.mean(axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dice.moving_variance.numpy(), 0.9 + 0.1 * X.var(axis=0), rtol=1e-5)


def test_statistics_pool_every_axis_but_the_last_and_skip_masked_positions():
    garbage = np.full([1, 3], 1e4, np.float32)
    sequences = np.stack([np.concatenate([X[:2], garbage]), np.concatenate([X[2:], garbage])])  # [2, 3, 3]
    mask = tf.constant([[True, True, False], [True, True, False]])
    dice = built_dice(momentum=0.0)
    outputs = dice(tf.constant(sequences), training=True, mask=mask).numpy()
    expected = dice_numpy(X, X.mean(axis=0), X.var(axis=0), ALPHA)
    np.testing.assert_allclose(outputs[:, :2].reshape(4, 3), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dice.moving_mean.numpy(), X.mean(axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dice.moving_variance.numpy(), X.var(axis=0), rtol=1e-5)


def test_an_all_padding_batch_leaves_the_moving_averages_alone():
    dice = built_dice()
    outputs = dice(tf.constant(X[None]), training=True, mask=tf.zeros([1, 4], tf.bool))
    assert np.isfinite(outputs.numpy()).all()
    np.testing.assert_array_equal(dice.moving_mean.numpy(), np.zeros(3))
    np.testing.assert_array_equal(dice.moving_variance.numpy(), np.ones(3))


def test_gradient_reaches_the_input_and_alpha_and_training_works_in_a_tf_function():
    dice = built_dice(momentum=0.5)
    x = tf.constant(X)

    @tf.function
    def step(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = tf.reduce_sum(dice(inputs, training=True))
        return tape.gradient(loss, [inputs, dice.alpha])

    grad_x, grad_alpha = step(x)
    assert np.abs(grad_x.numpy()).sum() > 0 and np.abs(grad_alpha.numpy()).sum() > 0
    np.testing.assert_allclose(dice.moving_mean.numpy(), 0.5 * X.mean(axis=0), rtol=1e-5, atol=1e-7)
    assert [variable.name for variable in dice.trainable_variables] == [dice.alpha.name]


MIRRORED_SCRIPT = """
import json
import tfrs_llmrec
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tfrs_llmrec.layers.activations import Dice
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    dice = Dice(momentum=0.0)
    dice.build((None, 2))
batches = strategy.experimental_distribute_dataset(
    tf.data.Dataset.from_tensor_slices(np.arange(8, dtype=np.float32).reshape(4, 2)).batch(4))
step = tf.function(lambda batch: strategy.run(lambda rows: dice(rows, training=True), args=(batch,)))
for batch in batches:
    step(batch)
print("RESULT", json.dumps({"mean": dice.moving_mean.numpy().tolist(),
                            "variance": dice.moving_variance.numpy().tolist()}))
"""


def test_replicas_keep_their_own_statistics_and_reads_average_them(subprocess_env):
    # Replica 0 sees rows [0, 1], [2, 3] (mean [1, 2]), replica 1 rows [4, 5], [6, 7] (mean [5, 6]);
    # each has variance 1 per unit.
    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True, text=True,
                            env=subprocess_env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    statistics = json.loads(result.stdout.split("RESULT", 1)[1])
    np.testing.assert_allclose(statistics["mean"], [3.0, 4.0], rtol=1e-6)
    np.testing.assert_allclose(statistics["variance"], [1.0, 1.0], rtol=1e-6)


def test_config_round_trip():
    dice = Dice(epsilon=1e-6, momentum=0.5)
    clone = Dice.from_config(dice.get_config())
    assert (clone.epsilon, clone.momentum) == (1e-6, 0.5)


def test_activation_layer_by_name():
    assert isinstance(activation_layer("dice"), Dice)
    assert isinstance(activation_layer("Dice"), Dice)
    prelu = activation_layer("prelu", input_rank=3)
    assert isinstance(prelu, tf.keras.layers.PReLU)
    prelu(tf.ones([2, 5, 4]))
    assert prelu.alpha.shape == (1, 4)  # one slope per unit, shared over positions (and the batch)
    assert prelu(tf.ones([3, 7, 4])).shape == (3, 7, 4)  # any sequence length
    assert activation_layer("prelu")(tf.ones([2, 4])).shape == (2, 4)
    relu = activation_layer("relu", layer_name="act")
    assert relu.name == "act"
    np.testing.assert_array_equal(relu(tf.constant([-1.0, 2.0])).numpy(), [0.0, 2.0])


def test_dice_under_mixed_precision():
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        dice = Dice()
        outputs = dice(tf.constant(X), training=True)
        assert outputs.dtype == tf.float16
        assert dice.moving_mean.dtype == tf.float32
        np.testing.assert_allclose(outputs.numpy(), dice_numpy(X, X.mean(axis=0), X.var(axis=0), 0.0),
                                   rtol=1e-2, atol=1e-2)
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("rank", [2, 3])
def test_dice_rejects_an_unknown_unit_count(rank):
    with pytest.raises(ValueError, match="known last dimension"):
        Dice().build([None] * rank)
