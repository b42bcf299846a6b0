"""A TextEncoder over any TensorFlow SavedModel that maps a batch of strings to vectors.

The model's `serving_default` signature must take one string tensor, shaped `[None]` or
`[None, 1]`, and return a float tensor `[None, dim]` (if it returns several, the one named
"embeddings" is used). Vectors are L2-normalised here whether or not the model already does it.
`tensorflow_text` is imported before loading, when it is installed, so models that tokenise
in-graph (such as the MiniLM SavedModel written by `MiniLMEncoder.save_encoder_saved_model`)
find their ops.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import tensorflow as tf

SIGNATURE_KEY = "serving_default"
# With several float outputs, the one of this name holds the vectors.
SIGNATURE_OUTPUT = "embeddings"
# encode() shows a progress bar from this many texts on.
PROGRESS_MIN_TEXTS = 1000


class SavedModelEncoderError(ValueError):
    """The SavedModel cannot serve as a text encoder."""


def _register_text_ops() -> None:
    try:
        import tensorflow_text  # noqa: F401  (registers the tokeniser ops SavedModels may use)
    except ImportError:
        pass


def l2_normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; all-zero rows stay zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))


class SavedModelEncoder:
    """TextEncoder backed by a SavedModel's `serving_default` signature."""

    def __init__(self, path: Union[str, Path], batch_size: int = 64):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.path = Path(path).expanduser().resolve()
        self.batch_size = int(batch_size)
        graph_file = self.path / "saved_model.pb"
        if not graph_file.is_file():
            raise FileNotFoundError(f"{self.path}: no saved_model.pb (not a SavedModel directory)")
        self._graph_sha256 = hashlib.sha256(graph_file.read_bytes()).hexdigest()
        _register_text_ops()
        self._model = tf.saved_model.load(str(self.path))
        signatures = getattr(self._model, "signatures", {})
        if SIGNATURE_KEY not in signatures:
            raise SavedModelEncoderError(
                f"{self.path}: no {SIGNATURE_KEY!r} signature (has {sorted(signatures) or 'none'})")
        self._function = signatures[SIGNATURE_KEY]
        self._input_name, self._input_rank = self._check_input()
        self._output_name = self._pick_output()
        self._dimension: Optional[int] = None
        static = self._function.structured_outputs[self._output_name].shape
        if static.rank == 2 and static[-1] is not None:
            self._dimension = int(static[-1])

    def _check_input(self):
        args, kwargs = self._function.structured_input_signature
        specs = dict(kwargs)
        if args or len(specs) != 1:
            raise SavedModelEncoderError(
                f"{self.path}: {SIGNATURE_KEY} must take exactly one named string input, "
                f"got {len(args) + len(specs)} inputs")
        (name, spec), = specs.items()
        if spec.dtype != tf.string:
            raise SavedModelEncoderError(f"{self.path}: {SIGNATURE_KEY} input {name!r} is {spec.dtype.name}, "
                                         "expected string")
        shape = spec.shape
        if shape.rank == 1 or (shape.rank == 2 and shape[1] == 1):
            return name, shape.rank
        raise SavedModelEncoderError(f"{self.path}: {SIGNATURE_KEY} input {name!r} has shape {shape}, "
                                     "expected [None] or [None, 1]")

    def _pick_output(self) -> str:
        outputs = self._function.structured_outputs
        floats = {name: spec for name, spec in outputs.items() if spec.dtype.is_floating}
        if len(floats) == 1:
            return next(iter(floats))
        if SIGNATURE_OUTPUT in floats:
            return SIGNATURE_OUTPUT
        raise SavedModelEncoderError(
            f"{self.path}: {SIGNATURE_KEY} has float outputs {sorted(floats) or 'none'}; expected one, "
            f"or one named {SIGNATURE_OUTPUT!r}")

    def __repr__(self) -> str:
        return f"SavedModelEncoder(identity={self.identity!r}, batch_size={self.batch_size})"

    @property
    def identity(self) -> str:
        return f"saved_model:{self.path}@{self._graph_sha256[:12]}"

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = int(self._run([""]).shape[1])
        return self._dimension

    def _run(self, texts: Sequence[str]) -> np.ndarray:
        batch = tf.constant(list(texts), dtype=tf.string)
        if self._input_rank == 2:
            batch = batch[:, tf.newaxis]
        output = self._function(**{self._input_name: batch})[self._output_name]
        vectors = output.numpy()
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise SavedModelEncoderError(f"{self.path}: {SIGNATURE_KEY} returned shape {vectors.shape} for "
                                         f"{len(texts)} texts, expected [{len(texts)}, dim]")
        return vectors

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{position}] is {type(text).__name__}, expected str")
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        from tqdm.auto import tqdm

        parts = []
        with tqdm(total=len(texts), desc="saved_model", unit="text", mininterval=1.0,
                  disable=len(texts) < PROGRESS_MIN_TEXTS) as bar:
            for start in range(0, len(texts), self.batch_size):
                parts.append(self._run(texts[start:start + self.batch_size]))
                bar.update(len(parts[-1]))
        vectors = np.concatenate(parts, axis=0)
        if self._dimension is None:
            self._dimension = int(vectors.shape[1])
        elif vectors.shape[1] != self._dimension:
            raise SavedModelEncoderError(f"{self.path}: vectors have {vectors.shape[1]} dimensions, "
                                         f"expected {self._dimension}")
        return l2_normalize_rows(vectors)
