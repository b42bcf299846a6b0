"""TFX pipeline definitions and runners (local LocalDagRunner, Kubeflow compilation)."""

from tfrs_llmrec._keras_env import use_legacy_keras

use_legacy_keras()
