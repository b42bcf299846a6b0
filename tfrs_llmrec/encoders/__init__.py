"""Text encoders: batches of strings in, L2-normalised float32 vectors out.

`MiniLMEncoder` (all-MiniLM-L6-v2 in TensorFlow, tokeniser in-graph) and `SavedModelEncoder`
(any string-to-vector SavedModel) load TensorFlow, so they are imported on first use;
`build_encoder` picks one from an `EncoderConfig`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tfrs_llmrec.encoders.base import TextEncoder
from tfrs_llmrec.encoders.factory import build_encoder

if TYPE_CHECKING:
    from tfrs_llmrec.encoders.minilm import MiniLMEncoder
    from tfrs_llmrec.encoders.saved_model import SavedModelEncoder

_LAZY = {
    "MiniLMEncoder": "tfrs_llmrec.encoders.minilm",
    "SavedModelEncoder": "tfrs_llmrec.encoders.saved_model",
}

__all__ = ["MiniLMEncoder", "SavedModelEncoder", "TextEncoder", "build_encoder"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
