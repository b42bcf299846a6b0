"""Run by horovodrun on each rank: trains a tiny model on rank-dependent data, prints a checksum."""

import hashlib

import tfrs_llmrec  # noqa: F401  (Keras 2 before TensorFlow)

import horovod.tensorflow as hvd_tf  # noqa: E402
import horovod.tensorflow.keras as hvd  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

hvd.init()
rank = hvd.rank()


def make_model(seed):
    tf.keras.utils.set_random_seed(seed)  # rank-dependent init: the broadcast must fix it
    return tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(8, activation="relu"),
                                tf.keras.layers.Dense(1)])


def batch(step):
    rng = np.random.default_rng(1000 * rank + step)
    x = rng.normal(size=(16, 4)).astype("float32")
    return x, (x.sum(axis=1, keepdims=True) * (rank + 1)).astype("float32")


def checksum(model):
    weights = np.concatenate([v.numpy().ravel() for v in model.weights]).astype("float32")
    return hashlib.sha256(weights.tobytes()).hexdigest()[:16]


def train(minimize: bool) -> str:
    model = make_model(seed=rank)
    optimizer = hvd.DistributedOptimizer(tf.keras.optimizers.SGD(0.05))
    hvd_tf.broadcast_variables(model.variables, root_rank=0)
    for step in range(3):
        x, y = batch(step)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
        if minimize:  # goes through compute_gradients, which allreduces
            optimizer.minimize(loss, model.trainable_variables, tape=tape)
        else:  # apply_gradients alone never allreduces: ranks drift apart
            optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    return checksum(model)


print(f"RESULT rank={rank} minimize={train(True)} apply_gradients={train(False)}", flush=True)
