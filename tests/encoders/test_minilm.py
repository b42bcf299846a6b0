"""MiniLMEncoder (TensorFlow port) against vectors and token ids from sentence-transformers.

tests/fixtures/minilm_reference.npz was written by tests/fixtures/make_minilm_reference.py
(see its docstring for the throwaway venv it needs).
"""

import hashlib
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfrs_llmrec.assets import minilm_dir

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "minilm_reference.npz"


@pytest.fixture(scope="module")
def reference():
    data = np.load(FIXTURE)
    return {
        "sentences": [str(s) for s in data["sentences"]],
        "vectors": data["vectors"],
        "input_ids": data["input_ids"],
        "lengths": data["lengths"],
        "metadata": json.loads(str(data["metadata"])),
    }


@pytest.fixture(scope="module")
def encoder():
    from tfrs_llmrec.encoders.minilm import MiniLMEncoder

    # A small batch so the 14 fixture sentences span several batches.
    return MiniLMEncoder(max_length=128, batch_size=4)


def test_vectors_match_sentence_transformers(encoder, reference):
    vectors = encoder.encode(reference["sentences"])
    assert vectors.dtype == np.float32 and vectors.shape == (len(reference["sentences"]), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    cosines = np.sum(vectors * reference["vectors"], axis=1)
    assert cosines.min() >= 0.999, dict(zip(reference["sentences"], cosines))
    assert np.abs(vectors - reference["vectors"]).max() < 1e-5


def test_token_ids_match_the_reference_tokenizer(encoder, reference):
    ids = encoder.tokenize(reference["sentences"])
    for row, sentence in enumerate(reference["sentences"]):
        expected = reference["input_ids"][row][: reference["lengths"][row]].tolist()
        assert ids[row] == expected, sentence


def test_long_text_is_truncated_like_the_reference(encoder, reference):
    untruncated = reference["metadata"]["untruncated_lengths"]
    longest = int(np.argmax(untruncated))
    assert untruncated[longest] > 128 and reference["lengths"][longest] == 128
    ids = encoder.tokenize([reference["sentences"][longest]])[0]
    assert len(ids) == 128 and ids[0] == 101 and ids[-1] == 102


def test_identity_names_model_weights_and_truncation(encoder):
    digest = hashlib.sha256((minilm_dir() / "model.safetensors").read_bytes()).hexdigest()
    assert encoder.dimension == 384
    assert encoder.identity == f"all-MiniLM-L6-v2@{digest[:12]}:max_length=128"


def test_vector_does_not_depend_on_batch_companions(encoder, reference):
    short = "Super Mario Kart"
    alone = encoder.encode([short])
    longest = max(reference["sentences"], key=len)
    crowd = [longest, "x", short, longest + " again", "Halo 3"] * 3
    in_batch = encoder.encode(crowd)
    for row in (2, 7, 12):
        np.testing.assert_allclose(in_batch[row], alone[0], atol=1e-5)
    # The traced module called directly on a padded batch agrees with encode().
    import tensorflow as tf

    direct = encoder.module(tf.constant(crowd)).numpy()
    np.testing.assert_allclose(direct, in_batch, atol=1e-5)


def test_encode_edge_cases(encoder):
    assert encoder.encode([]).shape == (0, 384)
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        encoder.encode(["ok", 3])


def test_keras_layer_gives_the_same_vectors(encoder, reference):
    import tensorflow as tf

    layer = encoder.as_keras_layer()
    inputs = tf.keras.Input(shape=(), dtype=tf.string)
    model = tf.keras.Model(inputs, layer(inputs))
    assert model.output_shape == (None, 384) and not model.trainable_weights
    got = model(tf.constant(reference["sentences"][:5])).numpy()
    np.testing.assert_allclose(got, reference["vectors"][:5], atol=1e-5)


RELOAD_SCRIPT = """
import json, sys
import numpy as np
import tfrs_llmrec
import tensorflow as tf
from tfrs_llmrec.encoders.saved_model import SavedModelEncoder

path, out = sys.argv[1], sys.argv[2]
sentences = json.loads(sys.stdin.read())
encoder = SavedModelEncoder(path, batch_size=5)
raw = tf.saved_model.load(path).signatures["serving_default"](texts=tf.constant(sentences))
np.savez(out, encoded=encoder.encode(sentences), raw=raw["embeddings"].numpy(), dimension=encoder.dimension)
"""


def test_saved_model_round_trip_in_a_fresh_process(encoder, reference, tmp_path, subprocess_env):
    target = tmp_path / "models" / "minilm"
    assert encoder.save_encoder_saved_model(target) == target
    assert (target / "saved_model.pb").is_file()
    metadata = json.loads((target / "assets.extra" / "encoder.json").read_text())
    assert metadata["identity"] == encoder.identity and metadata["dimension"] == 384
    # Staging directories are renamed away, and an existing model is not silently replaced.
    assert [p.name for p in target.parent.iterdir()] == ["minilm"]
    with pytest.raises(FileExistsError):
        encoder.save_encoder_saved_model(target)

    out = tmp_path / "reloaded.npz"
    result = subprocess.run([sys.executable, "-c", RELOAD_SCRIPT, str(target), str(out)],
                            input=json.dumps(reference["sentences"]), capture_output=True, text=True,
                            env=subprocess_env, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    reloaded = np.load(out)
    assert int(reloaded["dimension"]) == 384
    in_process = encoder.encode(reference["sentences"])
    np.testing.assert_allclose(reloaded["encoded"], in_process, atol=1e-5)
    np.testing.assert_allclose(reloaded["raw"], in_process, atol=1e-5)
    np.testing.assert_allclose(reloaded["encoded"], reference["vectors"], atol=1e-5)


def _safetensors_blob(tensors, metadata=None):
    header, payload = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(payload), len(payload) + len(raw)]}
        payload += raw
    encoded = json.dumps(header).encode("utf-8")
    return struct.pack("<Q", len(encoded)) + encoded + payload


def test_safetensors_parser_reads_dtypes_and_rejects_bad_files():
    from tfrs_llmrec.encoders.minilm import SafetensorsError, parse_safetensors

    matrix = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
    bf16 = (np.array([1.5, -2.25], dtype=np.float32).view(np.uint32) >> 16).astype("<u2")
    blob = _safetensors_blob({
        "m": ("F32", [2, 3], matrix.astype("<f4").tobytes()),
        "h": ("F16", [2], np.array([0.5, 3.0], dtype="<f2").tobytes()),
        "b": ("BF16", [2], bf16.tobytes()),
        "i": ("I64", [1, 2], np.array([[7, -1]], dtype="<i8").tobytes()),
        "s": ("F32", [], np.array(2.5, dtype="<f4").tobytes()),
    }, metadata={"format": "pt"})
    tensors = parse_safetensors(blob)
    assert sorted(tensors) == ["b", "h", "i", "m", "s"]
    np.testing.assert_array_equal(tensors["m"], matrix)
    np.testing.assert_array_equal(tensors["h"], [0.5, 3.0])
    np.testing.assert_array_equal(tensors["b"], np.array([1.5, -2.25], dtype=np.float32))
    assert tensors["b"].dtype == np.float32 and tensors["i"].tolist() == [[7, -1]] and float(tensors["s"]) == 2.5

    with pytest.raises(SafetensorsError, match="too short"):
        parse_safetensors(b"\x01\x02")
    with pytest.raises(SafetensorsError, match="header claims"):
        parse_safetensors(struct.pack("<Q", 10**6) + b"{}")
    with pytest.raises(SafetensorsError, match="bad offsets"):
        parse_safetensors(_safetensors_blob({"m": ("F32", [2, 3], b"\x00" * 20)}))
    with pytest.raises(SafetensorsError, match="unsupported dtype"):
        parse_safetensors(_safetensors_blob({"c": ("C64", [1], b"\x00" * 8)}))
