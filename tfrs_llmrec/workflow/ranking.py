"""The CTR rankers' train and evaluate stages: the same training core as the retrievers, over the
CTR samples (beam_jobs/ctr.py) instead of the interactions, monitored by validation AUC or GAUC.

`stages.train` and `stages.evaluate` call these when the configured model is a ranker."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from tfrs_llmrec.config import ExperimentConfig, config_hash
from tfrs_llmrec.data import ctr_spec
from tfrs_llmrec.data.ctr import CtrDataset
from tfrs_llmrec.evaluation import mean_by_popularity_bucket
from tfrs_llmrec.evaluation.ctr import predict_and_evaluate
from tfrs_llmrec.evaluation.report import write_metrics_json
from tfrs_llmrec.models.rankers import CtrInputs
from tfrs_llmrec.models.registry import build_ranker

log = logging.getLogger("tfrs_llmrec.workflow")

EVAL_BATCH_SIZE = 4096


def ctr_inputs(config: ExperimentConfig, ctr: CtrDataset, features_dir) -> CtrInputs:
    """What the ranker is built from: the CTR dataset's attributes and statistics, the features job's
    vectors (of model.semantic.source) and semantic IDs."""
    from tfrs_llmrec.data.features import SemanticFeatures

    features = SemanticFeatures.open(Path(features_dir))
    stats = ctr.stats
    buckets = int(ctr.manifest["activity_buckets"])
    return CtrInputs(
        num_users=len(stats[ctr_spec.USER_TRAIN_IMPRESSIONS]), num_items=len(stats[ctr_spec.ITEM_TRAIN_IMPRESSIONS]),
        attribute_sizes=ctr.attributes, activity_buckets=buckets, has_ratings=bool(ctr.manifest["has_ratings"]),
        item_is_head=np.asarray(stats[ctr_spec.ITEM_IS_HEAD], bool),
        user_is_active=np.asarray(stats[ctr_spec.USER_IS_ACTIVE], bool),
        item_activity=ctr_spec.activity_bucket(stats[ctr_spec.ITEM_TRAIN_IMPRESSIONS], buckets),
        user_activity=ctr_spec.activity_bucket(stats[ctr_spec.USER_TRAIN_IMPRESSIONS], buckets),
        item_vectors=features.item_vectors[config.model.semantic.source],
        item_semantic_ids=features.item_semantic_ids, user_semantic_ids=features.user_semantic_ids)


def build(config: ExperimentConfig, ctr: CtrDataset, features_dir):
    return build_ranker(config.model.name, config.model, ctr_inputs(config, ctr, features_dir), seed=config.seed)


def evaluate_split(model, ctr: CtrDataset, split: str, progress: bool = True) -> dict:
    """AUC, GAUC and log loss of `model` on `split`: overall, head/tail items, active/inactive users."""
    stats = ctr.stats
    return predict_and_evaluate(model.scoring_function(), ctr.batches(split, EVAL_BATCH_SIZE),
                                np.asarray(stats[ctr_spec.ITEM_IS_HEAD], bool),
                                np.asarray(stats[ctr_spec.USER_IS_ACTIVE], bool), progress=progress)


def validation_metrics(ctr: CtrDataset):
    """The monitor: overall validation metrics on the whole validation split (a CTR split is small
    next to the full-ranking evaluation, so no sampling)."""
    def metrics(model) -> Dict[str, float]:
        return evaluate_split(model, ctr, "valid", progress=False)["overall"]
    return metrics


def diagnostics_by_bucket(model, ctr: CtrDataset, split: str) -> dict:
    """The model's per-impression diagnostics (AKT-Rec's gates) averaged per item-popularity bucket
    (by the item of each impression) and per user-activity group."""
    values: Dict[str, list] = {}
    items, users = [], []
    for batch in ctr.batches(split, EVAL_BATCH_SIZE):
        for name, value in model.example_diagnostics(batch).items():
            values.setdefault(name, []).append(np.asarray(value, np.float64))
        items.append(batch[ctr_spec.ITEM_INDEX].numpy())
        users.append(batch[ctr_spec.USER_INDEX].numpy())
    if not values:
        return {}
    items, users = np.concatenate(items), np.concatenate(users)
    popularity = np.asarray(ctr.stats[ctr_spec.ITEM_TRAIN_IMPRESSIONS], np.float64)
    active = np.asarray(ctr.stats[ctr_spec.USER_IS_ACTIVE], bool)[users]
    report = {}
    for name, parts in values.items():
        per_example = np.concatenate(parts)
        # An item's mean value over its impressions, then the bucket mean over items.
        sums = np.bincount(items, weights=per_example, minlength=len(popularity))
        counts = np.bincount(items, minlength=len(popularity))
        seen = counts > 0
        buckets = mean_by_popularity_bucket(sums[seen] / counts[seen], popularity[seen], f"mean_{name}")
        report[f"{name}_by_popularity_bucket"] = buckets
        report[f"{name}_by_user_activity"] = {"active": float(per_example[active].mean()) if active.any() else None,
                                              "inactive": float(per_example[~active].mean()) if (~active).any()
                                              else None}
        log.info("%s mean %s per item-popularity bucket, least to most popular: %s", model.name, name,
                 " ".join(f"{bucket[f'mean_{name}']:.3f}" for bucket in buckets if bucket[f"mean_{name}"] is not None))
    return report


def evaluate(config: ExperimentConfig, ctr_dir, model, metrics_path: Optional[Path] = None, dataset_dir=None) -> dict:
    """metrics.json of a trained ranker on eval.split (the same layout as the retrievers': models ->
    name -> summary), with its gate diagnostics, and the cascade's metrics when cascade.retriever_run
    is set (then `dataset_dir` is the prepared dataset)."""
    ctr = CtrDataset.open(Path(ctr_dir))
    started = time.perf_counter()
    split = config.eval.split
    ctr.check_labels(split)
    summary = evaluate_split(model, ctr, split)
    result = {"summary": summary, **diagnostics_by_bucket(model, ctr, split),
              "seconds": round(time.perf_counter() - started, 2)}
    overall = summary["overall"]
    log.info("%s on %s: AUC %.4f, GAUC %.4f, log loss %.4f; tail items GAUC %.4f, head items GAUC %.4f",
             config.model.name, split, overall["auc"], overall["gauc"], overall["logloss"],
             summary["tail_items"]["gauc"], summary["head_items"]["gauc"])
    if config.cascade.retriever_run is not None:
        from tfrs_llmrec.workflow.cascade import evaluate_cascade

        result["cascade"] = evaluate_cascade(config, dataset_dir, ctr_dir, model)
    payload = {"experiment": config.name, "config_hash": config_hash(config), "split": split, "task": "ctr",
               "dataset": str(ctr.root), "models": {config.model.name: result}}
    if metrics_path is not None:
        write_metrics_json(Path(metrics_path), payload)
    return payload



RANKING_DIR = "ranking"
UNKNOWN_ID = "\u2205unknown"  # an ID no vocabulary holds


def export(config: ExperimentConfig, dataset_dir, ctr_dir, model, export_dir, check_impressions: int = 256) -> dict:
    """Writes the ranker's scoring SavedModel (`serving.ranking_export`) to `export_dir`/ranking/ with
    export.json, published as one directory. The model is reloaded in a fresh process with core TF
    ops only and must give, for test impressions sent as raw IDs, the probabilities the in-memory
    model gives for the same impressions read from the CTR samples (so the tables in the graph
    rebuild what the samples carry), and for an unknown candidate beside each the learned default's.
    Returns the manifest."""
    from tfrs_llmrec.atomic_files import building_directory, write_json_atomically
    from tfrs_llmrec.data.dataset import PreparedDataset
    from tfrs_llmrec.data.spec import HISTORY, ITEM_INDEX, USER_INDEX
    from tfrs_llmrec.serving.export import CANDIDATE_IDS, HISTORY_IDS, USER_ID, check_in_fresh_process
    from tfrs_llmrec.serving.ranking_export import (PROBABILITIES, ImpressionTables, candidate_logits,
                                                    save_ranking_model)

    ctr = CtrDataset.open(Path(ctr_dir))
    dataset = PreparedDataset.open(Path(dataset_dir))
    item_ids, user_ids = np.asarray(dataset.item_ids(), dtype=object), np.asarray(dataset.user_ids(), dtype=object)
    tables = ImpressionTables.from_samples(ctr)
    test = next(iter(ctr.batches("test", check_impressions)))
    users, items, history = (test[USER_INDEX].numpy(), test[ITEM_INDEX].numpy(), test[HISTORY].numpy())
    request = {USER_ID: user_ids[users].astype(str),
               HISTORY_IDS: np.where(history >= 0, item_ids[np.maximum(history, 0)], "").astype(str),
               CANDIDATE_IDS: np.stack([item_ids[items], np.full(len(items), UNKNOWN_ID, dtype=object)],
                                       axis=1).astype(str)}
    expected_known = tf.sigmoid(model.predict_logits(test)).numpy()
    expected_unknown = tf.sigmoid(candidate_logits(model, tables, users, history, np.stack(
        [items, np.full(len(items), -1)], axis=1))).numpy()[:, 1]
    export_dir = Path(export_dir)
    with building_directory(export_dir) as staging:
        path = save_ranking_model(model, tables, item_ids.tolist(), user_ids.tolist(), ctr.max_history,
                                  staging / RANKING_DIR)
        served = check_in_fresh_process(path, request, core_only=True)[PROBABILITIES]
        manifest = {"model": config.model.name, "task": "ctr", "check_impressions": len(items),
                    "models": {"ranking": {
                        "directory": RANKING_DIR, "core_ops_only": True,
                        "max_abs_diff_vs_samples": float(np.max(np.abs(served[:, 0] - expected_known))),
                        "unknown_candidate_max_abs_diff": float(np.max(np.abs(served[:, 1] - expected_unknown)))}}}
        write_json_atomically(staging / "export.json", manifest)
    entry = manifest["models"]["ranking"]
    print(f"export: ranking model reloaded in a fresh process with core TF ops only; on {len(items)} test "
          f"impressions sent as raw IDs, max |p - p(samples)| {entry['max_abs_diff_vs_samples']:.2e}, unknown "
          f"candidates {entry['unknown_candidate_max_abs_diff']:.2e}")
    return manifest
