"""SavedModelEncoder over small string-to-vector SavedModels written by the tests."""

import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.encoders.saved_model import SavedModelEncoder, SavedModelEncoderError

DIM = 6


def _raw_vectors(texts):
    """What the toy model computes: a hashed one-hot, scaled by 3, plus a length feature."""
    hashed = tf.one_hot(tf.strings.to_hash_bucket_fast(texts, DIM - 1), DIM - 1) * 3.0
    return tf.concat([hashed, tf.cast(tf.strings.length(texts), tf.float32)[:, tf.newaxis]], axis=1)


class _Toy(tf.Module):
    def __init__(self, scale=1.0):
        super().__init__()
        self.scale = tf.Variable(scale)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def flat(self, sentences):
        return {"vectors": _raw_vectors(sentences) * self.scale}

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.string, name="column")])
    def column(self, column):
        return {"out": _raw_vectors(tf.reshape(column, [-1])) * self.scale}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="texts")])
    def two_outputs(self, texts):
        vectors = _raw_vectors(texts) * self.scale
        return {"embeddings": vectors, "logits": vectors[:, :2]}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="texts")])
    def ambiguous(self, texts):
        vectors = _raw_vectors(texts)
        return {"a": vectors, "b": vectors * 2.0}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="ids")])
    def ints(self, ids):
        return {"vectors": tf.cast(ids[:, tf.newaxis], tf.float32) * tf.ones([1, DIM])}


def save(path, signature, scale=1.0):
    module = _Toy(scale)
    tf.saved_model.save(module, str(path), signatures={"serving_default": getattr(module, signature)})
    return path


def expected(texts):
    raw = _raw_vectors(tf.constant(texts)).numpy()
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


TEXTS = ["alpha", "beta gamma", "", "delta", "a much longer text than the others", "zeta", "eta"]


def test_vectors_are_normalised_and_keep_input_order_across_batches(tmp_path):
    encoder = SavedModelEncoder(save(tmp_path / "flat", "flat", scale=7.0), batch_size=2)
    vectors = encoder.encode(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), DIM)
    np.testing.assert_allclose(vectors, expected(TEXTS), atol=1e-6)
    np.testing.assert_allclose(vectors, SavedModelEncoder(tmp_path / "flat", batch_size=100).encode(TEXTS), atol=1e-7)
    assert encoder.dimension == DIM
    assert encoder.encode([]).shape == (0, DIM)
    with pytest.raises(TypeError, match=r"texts\[0\] is bytes"):
        encoder.encode([b"raw"])


def test_column_input_and_named_embeddings_output(tmp_path):
    column = SavedModelEncoder(save(tmp_path / "column", "column"), batch_size=3)
    np.testing.assert_allclose(column.encode(TEXTS), expected(TEXTS), atol=1e-6)
    two = SavedModelEncoder(save(tmp_path / "two", "two_outputs"))
    np.testing.assert_allclose(two.encode(TEXTS), expected(TEXTS), atol=1e-6)


def test_identity_names_the_path_and_changes_with_the_graph(tmp_path):
    path = save(tmp_path / "model", "flat")
    first = SavedModelEncoder(path)
    assert first.identity.startswith(f"saved_model:{path.resolve()}@") and len(first.identity.split("@")[-1]) == 12
    assert SavedModelEncoder(path).identity == first.identity
    import shutil

    shutil.rmtree(path)
    save(path, "column")
    assert SavedModelEncoder(path).identity != first.identity


def test_unusable_models_are_rejected_with_the_reason(tmp_path):
    with pytest.raises(FileNotFoundError, match="saved_model.pb"):
        SavedModelEncoder(tmp_path / "missing")
    with pytest.raises(SavedModelEncoderError, match="expected string"):
        SavedModelEncoder(save(tmp_path / "ints", "ints"))
    with pytest.raises(SavedModelEncoderError, match="'a', 'b'"):
        SavedModelEncoder(save(tmp_path / "ambiguous", "ambiguous"))
    with pytest.raises(ValueError, match="batch_size"):
        SavedModelEncoder(tmp_path / "ints", batch_size=0)


def test_zero_vectors_stay_finite(tmp_path):
    encoder = SavedModelEncoder(save(tmp_path / "zero", "flat", scale=0.0))
    vectors = encoder.encode(["a", "b"])
    assert np.isfinite(vectors).all() and not vectors.any()
