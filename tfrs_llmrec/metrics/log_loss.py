"""Binary log loss (mean binary cross-entropy), in NumPy, from probabilities or from logits."""

from __future__ import annotations

import numpy as np


def log_loss(labels, probabilities, eps: float = 1e-7, from_logits: bool = False) -> float:
    """Mean of -[y log p + (1 - y) log(1 - p)] over the examples.

    Probabilities are clipped to [eps, 1 - eps] so a confident mistake costs -log(eps) instead of
    infinity. With `from_logits=True` the second argument holds logits z and the loss is computed
    as max(z, 0) - z y + log(1 + exp(-|z|)), finite for any finite z; `eps` is then unused, since
    nothing is clipped. Labels may be soft (any value in [0, 1]).
    """
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    values = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if labels.shape != values.shape:
        raise ValueError(f"labels has {labels.size} entries, {'logits' if from_logits else 'probabilities'} "
                         f"has {values.size}")
    if labels.size == 0:
        raise ValueError("log loss needs at least one example")
    if not np.all((labels >= 0) & (labels <= 1)):
        raise ValueError("labels must lie in [0, 1]")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{'logits' if from_logits else 'probabilities'} must be finite")
    if from_logits:
        losses = np.maximum(values, 0.0) - values * labels + np.log1p(np.exp(-np.abs(values)))
        return float(losses.mean())
    if not 0 < eps < 0.5:
        raise ValueError(f"eps must lie in (0, 0.5), got {eps}")
    if not np.all((values >= 0) & (values <= 1)):
        raise ValueError("probabilities must lie in [0, 1]; pass from_logits=True for logits")
    clipped = np.clip(values, eps, 1.0 - eps)
    return float(-np.mean(labels * np.log(clipped) + (1.0 - labels) * np.log1p(-clipped)))
