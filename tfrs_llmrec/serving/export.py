"""Exports a trained retrieval model for serving.

Two SavedModels, each with a `serving_default` signature taking (user_index [B], history [B, L]):
- the query model returns `query_embedding` [B, d];
- the index model embeds the query and returns the top-K `item_ids` (raw ids, strings) and
  `scores`, searching a BruteForce or a ScaNN index built from the item tower's embeddings.
Saves go to a temporary directory that is renamed into place, so a crash never leaves a
directory that looks like a complete SavedModel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import tensorflow as tf

from tfrs_llmrec.data.spec import HISTORY, USER_INDEX

QUERY_EMBEDDING = "query_embedding"
ITEM_IDS = "item_ids"
SCORES = "scores"
# ScaNN's TF ops live in the "Scann" namespace, which SavedModel refuses unless allowed.
SCANN_SAVE_OPTIONS = tf.saved_model.SaveOptions(namespace_whitelist=["Scann"])


def _serving_spec(max_history: int):
    return (tf.TensorSpec([None], tf.int64, name=USER_INDEX), tf.TensorSpec([None, max_history], tf.int64, name=HISTORY))


def save_atomically(module: tf.Module, path: Path, signatures, options=None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f"{path.name}.partial-{uuid.uuid4().hex[:8]}")
    tf.saved_model.save(module, str(staging), signatures=signatures, options=options)
    if path.exists():
        shutil.rmtree(path)
    staging.rename(path)
    return path


class _QueryModule(tf.Module):
    def __init__(self, query_tower: Callable, max_history: int):
        super().__init__()
        self.query_tower = query_tower
        self.serve = tf.function(self._serve, input_signature=_serving_spec(max_history))

    def _serve(self, user_index, history):
        return {QUERY_EMBEDDING: self.query_tower({USER_INDEX: user_index, HISTORY: history})}


class _IndexModule(tf.Module):
    def __init__(self, query_tower: Callable, index: tf.keras.layers.Layer, max_history: int):
        super().__init__()
        self.query_tower = query_tower
        self.index = index
        self.serve = tf.function(self._serve, input_signature=_serving_spec(max_history))

    def _serve(self, user_index, history):
        queries = self.query_tower({USER_INDEX: user_index, HISTORY: history})
        scores, item_ids = self.index(queries)
        return {SCORES: scores, ITEM_IDS: item_ids}


def save_query_model(query_tower: Callable, max_history: int, path: Path) -> Path:
    module = _QueryModule(query_tower, max_history)
    return save_atomically(module, path, {"serving_default": module.serve})


def save_index_model(query_tower: Callable, index: tf.keras.layers.Layer, max_history: int, path: Path,
                     scann: bool) -> Path:
    module = _IndexModule(query_tower, index, max_history)
    return save_atomically(module, path, {"serving_default": module.serve},
                           options=SCANN_SAVE_OPTIONS if scann else None)


def check_in_fresh_process(saved_model_dir: Path, inputs: Dict[str, np.ndarray], timeout: int = 600) -> Dict[str, np.ndarray]:
    """Loads the SavedModel in a new Python process, calls `serving_default`, returns its outputs."""
    with tempfile.TemporaryDirectory() as scratch:
        inputs_path, outputs_path = Path(scratch) / "inputs.npz", Path(scratch) / "outputs.npz"
        np.savez(inputs_path, **inputs)
        command = [sys.executable, "-m", "tfrs_llmrec.serving.reload", str(saved_model_dir), str(inputs_path),
                   str(outputs_path)]
        # Quiet TF and ScaNN's C++ logging in the child; failures still come back on stderr.
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "GLOG_minloglevel": "2"}
        finished = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
        if finished.returncode != 0:
            tail = "\n".join(finished.stderr.strip().splitlines()[-5:])
            raise RuntimeError(f"{saved_model_dir}: reloading in a fresh process failed:\n{tail}")
        with np.load(outputs_path, allow_pickle=False) as outputs:
            return {name: outputs[name] for name in outputs.files}

