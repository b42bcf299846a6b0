"""Most-popular baseline: every user gets the items with the most training interactions."""

from typing import Sequence

import numpy as np


class PopularityModel:
    """Scores are expressed as one-dimensional embeddings so the shared evaluator applies.

    Ties in popularity are broken by item index, as a deployed popularity list would be, so the
    score is minus the item's position in that list (exact in float32 up to 16M items).
    """

    def __init__(self, item_train_counts: Sequence[int]):
        counts = np.asarray(item_train_counts, dtype=np.int64)
        order = np.lexsort((np.arange(counts.size), -counts))
        position = np.empty(counts.size, dtype=np.int64)
        position[order] = np.arange(counts.size)
        self._item_scores = (-position).astype(np.float32)[:, np.newaxis]

    def item_embeddings(self) -> np.ndarray:
        return self._item_scores

    def query_embeddings(self, user_indices: np.ndarray, histories=None) -> np.ndarray:
        return np.ones((len(user_indices), 1), dtype=np.float32)
