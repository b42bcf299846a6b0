import math

import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.losses.cosine_alignment import cosine_alignment_loss, mean_cosine
from tfrs_llmrec.losses.info_nce import info_nce_loss

SOURCE = tf.constant([[1.0, 0.0], [1.0, 1.0]])
TARGET = tf.constant([[0.0, 1.0], [2.0, 2.0]])


def test_pointwise_loss_by_hand():
    # cos = [0, 1] -> 1 - cos = [1, 0] -> mean 0.5.
    assert float(cosine_alignment_loss(SOURCE, TARGET)) == pytest.approx(0.5, rel=1e-6)
    assert float(cosine_alignment_loss(SOURCE, TARGET, sample_weight=tf.constant([0.0, 1.0]))) == pytest.approx(
        0.0, abs=1e-6)


def test_only_the_source_gets_gradients():
    source = tf.Variable(SOURCE)
    target = tf.Variable(TARGET)
    for temperature in (None, 0.5):
        with tf.GradientTape() as tape:
            loss = cosine_alignment_loss(source, target, temperature=temperature)
        grad_source, grad_target = tape.gradient(loss, [source, target])
        assert grad_target is None
        assert np.all(np.isfinite(grad_source.numpy()))
    # Pointwise: d(1 - cos)/ds at s = [1, 0], t = [0, 1] is -(t - cos s) / |s| / B = [0, -0.5];
    # descent turns s toward t.
    with tf.GradientTape() as tape:
        loss = cosine_alignment_loss(source, target)
    np.testing.assert_allclose(tape.gradient(loss, source).numpy()[0], [0.0, -0.5], atol=1e-6)


def test_contrastive_alignment_by_hand():
    # Identity source and target: each row's cosine logits [1, 0] / tau.
    eye = tf.eye(2)
    for temperature, expected in ((1.0, math.log(1 + math.exp(-1))), (0.5, math.log(1 + math.exp(-2)))):
        assert float(cosine_alignment_loss(eye, eye, temperature=temperature)) == pytest.approx(expected, rel=1e-6)
    rng = np.random.default_rng(0)
    source, target = tf.constant(rng.normal(size=(4, 3)), tf.float32), tf.constant(rng.normal(size=(4, 3)), tf.float32)
    assert float(cosine_alignment_loss(source, target, temperature=0.2)) == pytest.approx(
        float(info_nce_loss(source, target, None, temperature=0.2)), rel=1e-6)


def test_mean_cosine():
    assert float(mean_cosine(SOURCE, TARGET)) == pytest.approx(0.5, rel=1e-6)
    assert float(mean_cosine(tf.constant([[1.0, 0.0]]), tf.constant([[-3.0, 0.0]]))) == pytest.approx(-1.0, rel=1e-6)
    # A zero vector has cosine 0, not NaN: mean of [0, 1] = 0.5.
    assert float(mean_cosine(tf.constant([[0.0, 0.0], [1.0, 1.0]]), TARGET)) == pytest.approx(0.5, rel=1e-6)
