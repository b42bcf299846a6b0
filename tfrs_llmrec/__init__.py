"""tfrs_llmrec: a TensorFlow Recommenders trainer that adds language-model semantics."""

from tfrs_llmrec._keras_env import use_legacy_keras

use_legacy_keras()

__version__ = "0.1.0"
