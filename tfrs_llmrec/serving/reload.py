"""Entry point run in a fresh process: load a SavedModel, call its signatures, save the outputs.

Usage: python -m tfrs_llmrec.serving.reload SAVED_MODEL_DIR [--core-only]
       --call SIGNATURE INPUTS.npz OUTPUTS.npz [--call ...]
Each call's outputs go to its OUTPUTS.npz; the calls share one process, so TensorFlow is imported
and the model loaded once. With --core-only no custom op library is registered, as in a stock TF
Serving binary.
"""

import argparse
import sys

from tfrs_llmrec._keras_env import use_legacy_keras

use_legacy_keras()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def request_error(message: str) -> str:
    """The line of a TF error that says what is wrong (an assertion's message, or the error's own
    line), without the graph-execution preamble and the node trace."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if "assertion failed" in line:
            return line
    kept = [line for line in lines if not line.startswith(("Graph execution error", "Detected at node", "File ",
                                                           "[[", "[Op:"))]
    return (kept or lines or [message])[0]


def main(argv) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("saved_model_dir")
    parser.add_argument("--call", nargs=3, action="append", required=True, metavar=("SIGNATURE", "INPUTS", "OUTPUTS"))
    parser.add_argument("--core-only", action="store_true")
    args = parser.parse_args(argv)
    if not args.core_only:
        # ScaNN's custom ops (ScaNN index models) and the tokeniser ops of an in-graph text encoder.
        from scann.scann_ops.py import scann_ops  # noqa: F401
        import tensorflow_text  # noqa: F401

    signatures = tf.saved_model.load(args.saved_model_dir).signatures
    for signature, inputs_path, outputs_path in args.call:
        serving = signatures[signature]
        with np.load(inputs_path, allow_pickle=False) as inputs:
            try:
                outputs = serving(**{name: tf.constant(inputs[name]) for name in inputs.files})
            except tf.errors.OpError as error:
                # One line, last on stderr: which call, and what the model says is wrong with the request.
                print(f"error: {args.saved_model_dir} ({signature}): {request_error(error.message)}", file=sys.stderr)
                return 1
        arrays = {}
        for name, tensor in outputs.items():
            value = tensor.numpy()
            arrays[name] = value.astype(str) if value.dtype == object else value
        np.savez(outputs_path, **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
