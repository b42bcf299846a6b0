"""Selects Keras 2 (tf_keras) for TensorFlow before anything touches `tf.keras`.

TFRS is written for Keras 2. TensorFlow reads TF_USE_LEGACY_KERAS when `tf.keras` is first
resolved, so every entry point (library, CLI, tests, Beam workers, TFX executors) imports
this module before it imports TensorFlow.
"""

import os
import sys

LEGACY_KERAS_VARIABLE = "TF_USE_LEGACY_KERAS"


def use_legacy_keras() -> None:
    """Sets TF_USE_LEGACY_KERAS=1, and fails loudly if Keras 3 was already bound."""
    os.environ[LEGACY_KERAS_VARIABLE] = "1"
    keras_module = sys.modules.get("keras")
    tensorflow = sys.modules.get("tensorflow")
    if tensorflow is None or keras_module is None:
        return
    # `keras` in sys.modules is only a problem if tf.keras already resolved to it.
    bound = getattr(tensorflow, "keras", None)
    if bound is keras_module and getattr(keras_module, "__version__", "2").startswith("3"):
        raise RuntimeError(
            "tf.keras was bound to Keras 3 before tfrs_llmrec was imported; "
            "import tfrs_llmrec (or set TF_USE_LEGACY_KERAS=1) before TensorFlow"
        )
