"""Evaluation of click-through-rate (ranking) models such as DIN, MMoE and AKT-Rec.

Every impression (user, item, label, logit) counts; groups restrict the impressions, with the
names of the retrieval evaluator:

- "overall": every impression.
- "head_items" / "tail_items": the impressions whose item is head (resp. tail). GAUC is then
  computed per user over those impressions only.
- "active_users" / "inactive_users": the impressions of active (resp. inactive) users.

Each group reports {"auc", "gauc", "logloss", "num_examples", "num_positives", "gauc_users"};
"gauc_users" is the number of users with both labels in the group, the only ones GAUC counts
(see `tfrs_llmrec.metrics.auc`). A metric that cannot be computed is NaN: AUC when the group has
one class only, GAUC when no user has both labels, log loss when the group is empty.
`write_metrics_json` writes NaN as null.

AUC and GAUC are computed on the logits: they order examples exactly like the probabilities, but
large logits stay distinct where their sigmoids would round to the same 1.0 and turn into ties.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, Mapping

import numpy as np
from tqdm.auto import tqdm

from tfrs_llmrec.data.spec import ITEM_INDEX, LABEL, USER_INDEX
from tfrs_llmrec.evaluation.evaluator import ACTIVE_USERS, HEAD_ITEMS, INACTIVE_USERS, OVERALL, TAIL_ITEMS
from tfrs_llmrec.metrics.auc import auc, per_user_auc
from tfrs_llmrec.metrics.log_loss import log_loss


def evaluate_ctr(labels, logits, user_indices, item_indices, item_is_head, user_is_active) -> Dict[str, dict]:
    """AUC, GAUC and log loss per group (see module docstring).

    Args:
      labels: [N] 0/1 click labels.
      logits: [N] model logits (pre-sigmoid scores).
      user_indices, item_indices: [N] user and item index of each impression.
      item_is_head: bool indexed by item index.
      user_is_active: bool indexed by user index.
    Returns:
      {group: {"auc", "gauc", "logloss", "num_examples", "num_positives", "gauc_users"}} for the
      groups "overall", "head_items", "tail_items", "active_users", "inactive_users".
    """
    labels = np.asarray(labels).reshape(-1)
    logits = np.asarray(logits, dtype=np.float64).reshape(-1)
    user_indices = np.asarray(user_indices).reshape(-1)
    item_indices = np.asarray(item_indices).reshape(-1)
    if not labels.size == logits.size == user_indices.size == item_indices.size:
        raise ValueError(f"labels, logits, user_indices and item_indices have {labels.size}, {logits.size}, "
                         f"{user_indices.size} and {item_indices.size} entries; they must be equal")
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError("labels must be 0 or 1")
    if not np.all(np.isfinite(logits)):
        raise ValueError("logits must be finite")
    labels = labels.astype(np.int64)
    head = _flags_of(item_is_head, item_indices, "item_is_head", "item_indices")
    active = _flags_of(user_is_active, user_indices, "user_is_active", "user_indices")
    groups = ((OVERALL, np.ones(labels.size, dtype=bool)), (HEAD_ITEMS, head), (TAIL_ITEMS, ~head),
              (ACTIVE_USERS, active), (INACTIVE_USERS, ~active))
    return {name: _group_metrics(labels[keep], logits[keep], user_indices[keep]) for name, keep in groups}


def predict_and_evaluate(predict_fn: Callable[[Mapping], object], batches: Iterable[Mapping], item_is_head,
                         user_is_active, progress: bool = True) -> Dict[str, dict]:
    """Runs `predict_fn` over `batches` and returns `evaluate_ctr` of all of them together.

    Args:
      predict_fn: a batch -> logits [B] (tensor or array).
      batches: dicts of tensors or arrays holding at least USER_INDEX, ITEM_INDEX and LABEL, [B]
        each (a tf.data.Dataset of such dicts works).
      item_is_head, user_is_active: as for `evaluate_ctr`.
      progress: show a tqdm bar over batches.
    """
    collected = {USER_INDEX: [], ITEM_INDEX: [], LABEL: []}
    logits = []
    for batch in tqdm(batches, desc="evaluating", unit="batch", disable=not progress):
        columns = {key: np.asarray(batch[key]).reshape(-1) for key in collected}
        batch_logits = np.asarray(predict_fn(batch), dtype=np.float64).reshape(-1)
        sizes = {key: column.size for key, column in columns.items()}
        sizes["logits"] = batch_logits.size
        # Checked per batch: mismatches in two batches could cancel out in the totals.
        if len(set(sizes.values())) != 1:
            raise ValueError(f"batch {len(logits)} has mismatched sizes {sizes}")
        for key, column in columns.items():
            collected[key].append(column)
        logits.append(batch_logits)
    if not logits:
        raise ValueError("batches yielded no batch")
    return evaluate_ctr(np.concatenate(collected[LABEL]), np.concatenate(logits),
                        np.concatenate(collected[USER_INDEX]), np.concatenate(collected[ITEM_INDEX]),
                        item_is_head, user_is_active)


def _group_metrics(labels: np.ndarray, logits: np.ndarray, users: np.ndarray) -> dict:
    num_examples = labels.size
    num_positives = int(labels.sum())
    _, user_auc, user_examples = per_user_auc(users, labels, logits)
    counted = ~np.isnan(user_auc)
    return {
        "auc": auc(labels, logits) if 0 < num_positives < num_examples else float("nan"),
        # The weighting of `gauc`, taken from the per-user values already computed.
        "gauc": float(np.average(user_auc[counted], weights=user_examples[counted])) if counted.any()
        else float("nan"),
        "logloss": log_loss(labels, logits, from_logits=True) if num_examples else float("nan"),
        "num_examples": int(num_examples),
        "num_positives": num_positives,
        "gauc_users": int(counted.sum()),
    }


def _flags_of(flags, indices: np.ndarray, flags_name: str, indices_name: str) -> np.ndarray:
    """flags[indices] as bool, after checking that every index has a 0/1 flag."""
    flags = np.asarray(flags).reshape(-1)
    if flags.size and not np.all((flags == 0) | (flags == 1)):
        raise ValueError(f"{flags_name} must be boolean")
    if indices.size and not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"{indices_name} must hold integer indices, got dtype {indices.dtype}")
    if indices.size and (indices.min() < 0 or indices.max() >= flags.size):
        raise ValueError(f"{indices_name} range over [{int(indices.min())}, {int(indices.max())}] but "
                         f"{flags_name} has {flags.size} entries")
    return flags.astype(bool)[indices.astype(np.int64)]
