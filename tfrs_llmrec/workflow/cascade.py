"""Retrieval, then ranking: a finished retrieval run proposes each user's top_k items of the
prepared dataset's eval split (training items excluded, as the evaluator does), a CTR ranker
reorders them, and recall/NDCG of the reordered list are set beside the retriever's own order on
the same users and candidates.

The ranker sees each user's history as its CTR samples do: the clicks strictly before the held-out
item, taken from the CTR impression of that (user, item); the ranker never trained on it (the
retrieval targets are the latest interactions, which the CTR split puts in valid or test)."""

from __future__ import annotations

import logging
from pathlib import Path
import numpy as np
import tensorflow as tf

from tfrs_llmrec.config import ExperimentConfig, load_experiment
from tfrs_llmrec.data.ctr import CtrDataset
from tfrs_llmrec.data.dataset import PreparedDataset, load_eval_targets
from tfrs_llmrec.data.spec import HISTORY, ITEM_INDEX, PAD_ITEM, SPLITS, USER_INDEX
from tfrs_llmrec.metrics.ranking import metrics_from_csr_ranks
from tfrs_llmrec.serving.export import interest_scores
from tfrs_llmrec.serving.ranking_export import ImpressionTables, candidate_logits

log = logging.getLogger("tfrs_llmrec.workflow")

USER_BATCH = 256


def _retriever(config: ExperimentConfig, dataset_dir: Path):
    """The retrieval run's config and restored model; it must use the ranker's prepared dataset."""
    from tfrs_llmrec.workflow import stages

    run_dir = Path(config.cascade.retriever_run)
    key = "cascade.retriever_run"
    try:
        retriever_config = load_experiment(run_dir / "config.yaml")
    except Exception as error:  # a missing or broken config.yaml, said once with the key
        raise stages.StageError(f"{key}: {run_dir} is not a finished run directory ({error})") from None
    if stages.is_ranker(retriever_config.model.name):
        raise stages.StageError(f"{key}: {run_dir} trained {retriever_config.model.name}, a ranker, not a retriever")
    from tfrs_llmrec.data.dataset import prepared_dataset_dir

    if prepared_dataset_dir(retriever_config.data, Path(retriever_config.output_dir)).name != Path(dataset_dir).name:
        raise stages.StageError(f"{key}: {run_dir} was trained on another prepared dataset than this ranker's")
    features = (stages.semantic_features(retriever_config, dataset_dir, retriever_config.output_dir)
                if stages.needs_features(retriever_config) else None)
    model = stages.restore(retriever_config, PreparedDataset.open(dataset_dir), features, run_dir,
                           retriever_config.model.name)
    return retriever_config, model


def _ranker_histories(split_arrays, num_items: int, max_history: int, users: np.ndarray,
                      items: np.ndarray) -> np.ndarray:
    """[len(users), max_history] the history of the CTR impression of each (user, item) in
    `split_arrays` ({split: CtrDataset.arrays(split)}): the clicks strictly before it; PAD_ITEM rows
    where there is none."""
    wanted = users.astype(np.int64) * num_items + items.astype(np.int64)
    histories = np.full((len(users), max_history), PAD_ITEM, np.int64)
    for arrays in split_arrays.values():
        keys = arrays[USER_INDEX] * num_items + arrays[ITEM_INDEX]
        found = np.isin(wanted, keys)
        if found.any():
            row_of_key = dict(zip(keys.tolist(), range(len(keys))))
            rows = np.array([row_of_key[key] for key in wanted[found].tolist()], np.int64)
            histories[found] = arrays[HISTORY][rows]
    return histories


def evaluate_cascade(config: ExperimentConfig, dataset_dir, ctr_dir, ranker) -> dict:
    """{"retrieval": metrics, "reranked": metrics, ...} on config.eval.split, overall means."""
    dataset = PreparedDataset.open(Path(dataset_dir))
    ctr = CtrDataset.open(Path(ctr_dir))
    retriever_config, retriever = _retriever(config, Path(dataset_dir))
    split, top_k, ks = config.eval.split, config.cascade.top_k, sorted(set(config.cascade.ks))
    if max(ks) > top_k:
        raise ValueError(f"cascade.ks: {max(ks)} is more than cascade.top_k ({top_k})")
    targets = load_eval_targets(dataset, split)
    query_histories, _ = dataset.query_histories(split)
    items = retriever.item_embeddings()
    split_arrays = {split: ctr.arrays(split) for split in SPLITS}
    tables = ImpressionTables.from_samples(ctr, split_arrays)
    first_targets = targets.targets_indices[targets.targets_indptr[:-1]]
    ranker_histories = _ranker_histories(split_arrays, ctr.num_items, ctr.max_history, targets.users, first_targets)
    score = tf.function(lambda users, history, candidates: candidate_logits(ranker, tables, users, history,
                                                                            candidates), reduce_retracing=True)
    ranks = {"retrieval": [], "reranked": []}
    for start in range(0, len(targets.users), USER_BATCH):
        rows = np.arange(start, min(start + USER_BATCH, len(targets.users)))
        users = targets.users[rows]
        queries = retriever.query_embeddings(users, query_histories[users])
        scores = interest_scores(queries, items)
        for position, row in enumerate(rows):
            scores[position, targets.exclude_indices[targets.exclude_indptr[row]:targets.exclude_indptr[row + 1]]] = \
                -np.inf
        candidates = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
        logits = score(tf.constant(users, tf.int64), tf.constant(ranker_histories[rows]),
                       tf.constant(candidates)).numpy()
        reranked = np.take_along_axis(candidates, np.argsort(-logits, axis=1, kind="stable"), axis=1)
        for order, lists in (("retrieval", candidates), ("reranked", reranked)):
            for position, row in enumerate(rows):
                wanted = targets.targets_indices[targets.targets_indptr[row]:targets.targets_indptr[row + 1]]
                where = {item: rank for rank, item in enumerate(lists[position].tolist(), start=1)}
                # A target outside the candidates is a miss at every cutoff.
                ranks[order].append([where.get(int(item), top_k + 1) for item in wanted])
    report = {"retriever_run": str(config.cascade.retriever_run), "retriever": retriever_config.model.name,
              "top_k": top_k, "split": split, "num_users": len(targets.users)}
    for order, per_user in ranks.items():
        indptr = np.concatenate([[0], np.cumsum([len(user_ranks) for user_ranks in per_user])])
        metrics = metrics_from_csr_ranks(np.concatenate(per_user), indptr, ks + [top_k])
        report[order] = {name: float(np.nanmean(values)) for name, values in metrics.items()
                         if name.split("@")[0] in ("recall", "ndcg") and int(name.split("@")[1]) in ks + [top_k]}
    log.info("cascade on %s: %s top %d reordered by %s: %s", split, retriever_config.model.name, top_k,
             config.model.name, ", ".join(f"{name} {report['retrieval'][name]:.4f} -> {report['reranked'][name]:.4f}"
                                          for name in report["retrieval"] if not name.endswith(f"@{top_k}")))
    return report
