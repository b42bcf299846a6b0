"""What every text encoder provides: batches of strings in, L2-normalised float32 vectors out."""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np


class TextEncoder(Protocol):
    @property
    def dimension(self) -> int:
        """Length of the vectors."""

    @property
    def identity(self) -> str:
        """Names the encoder and its weights/version, for manifests and cache keys."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 [len(texts), dimension], rows L2-normalised."""
