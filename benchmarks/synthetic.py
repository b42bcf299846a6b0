"""Synthetic training batches at Amazon-Games-like sizes, shared by the step-time benchmarks."""

from typing import Callable, Dict, Tuple

import numpy as np

from tfrs_llmrec.data.spec import HISTORY, ITEM_INDEX, PAD_ITEM, USER_INDEX


def long_tailed_popularity(rng: np.random.Generator, num_items: int) -> np.ndarray:
    """Zipf-like item probabilities, 1 / (rank + 10)^0.9, in a random order over the item indices."""
    popularity = 1.0 / (np.arange(num_items) + 10.0) ** 0.9
    return rng.permutation(popularity / popularity.sum())


def geometric_lengths(mean: float, max_history: int) -> Callable[[np.random.Generator, int], np.ndarray]:
    """History lengths with mean `mean`, zero (a user's first interaction) included, cut at max_history."""
    return lambda rng, rows: np.minimum(rng.geometric(1.0 / (mean + 1.0), size=rows) - 1, max_history)


def training_batches(rng: np.random.Generator, popularity: np.ndarray, num_users: int,
                     lengths_of: Callable[[np.random.Generator, int], np.ndarray], num_batches: int,
                     batch_size: int, max_history: int) -> Tuple[Dict[str, np.ndarray], np.ndarray, float]:
    """`num_batches` batches of (user, positive item, history) with items drawn from `popularity`:
    the features (one leading axis over batches: the pipeline hands out ready batches, no per-step
    batching), the items' training counts (every item seen at least once) and the mean real history
    length."""
    rows = num_batches * batch_size
    num_items = len(popularity)
    items = rng.choice(num_items, size=rows, p=popularity)
    users = rng.integers(0, num_users, size=rows)
    lengths = lengths_of(rng, rows)
    history = rng.choice(num_items, size=(rows, max_history), p=popularity)
    history[np.arange(max_history)[np.newaxis, :] >= lengths[:, np.newaxis]] = PAD_ITEM
    features = {USER_INDEX: users.reshape(num_batches, batch_size).astype(np.int64),
                ITEM_INDEX: items.reshape(num_batches, batch_size).astype(np.int64),
                HISTORY: history.reshape(num_batches, batch_size, max_history).astype(np.int64)}
    counts = np.bincount(items, minlength=num_items) + 1
    return features, counts, float(lengths.mean())
