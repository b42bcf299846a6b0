"""Apache Beam pipelines that turn raw logs and item text into TFRecords (runner-agnostic)."""

from tfrs_llmrec._keras_env import use_legacy_keras

use_legacy_keras()
