"""The data contract (spec), raw-source adapters, the downloader, and prepared-dataset readers."""

from tfrs_llmrec._keras_env import use_legacy_keras

use_legacy_keras()

from tfrs_llmrec.data.dataset import (  # noqa: E402
    CsrRows,
    EvalTargets,
    ItemTable,
    PreparedDataset,
    load_eval_targets,
    prepared_dataset_dir,
)
from tfrs_llmrec.data.errors import DataError  # noqa: E402

__all__ = ["CsrRows", "DataError", "EvalTargets", "ItemTable", "PreparedDataset", "load_eval_targets",
           "prepared_dataset_dir"]
