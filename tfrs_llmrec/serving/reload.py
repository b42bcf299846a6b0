"""Entry point run in a fresh process: load a SavedModel, call serving_default, save the outputs.

Usage: python -m tfrs_llmrec.serving.reload SAVED_MODEL_DIR INPUTS.npz OUTPUTS.npz
"""

import sys

from tfrs_llmrec._keras_env import use_legacy_keras

use_legacy_keras()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def main(argv) -> int:
    saved_model_dir, inputs_path, outputs_path = argv
    # Registers ScaNN's custom ops; a ScaNN index SavedModel cannot load without them.
    from scann.scann_ops.py import scann_ops  # noqa: F401
    # Registers the tokeniser ops of an in-graph text encoder (intention-aware serving models).
    import tensorflow_text  # noqa: F401

    serving = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
    with np.load(inputs_path, allow_pickle=False) as inputs:
        outputs = serving(**{name: tf.constant(inputs[name]) for name in inputs.files})
    arrays = {}
    for name, tensor in outputs.items():
        value = tensor.numpy()
        arrays[name] = value.astype(str) if value.dtype == object else value
    np.savez(outputs_path, **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
