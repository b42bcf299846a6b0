"""The stages of `llmrec run`, each reading the previous stage's outputs from the run directory.

Layout of a run directory (runs/<name>/):
    config.yaml, training-config.sha256   resolved config; hash of what identifies the training
    checkpoints/<n>-<stage>/latest|best/step-<step>/   checkpoint + state.json (one per stage)
    train_result.json     loss and monitor per epoch     metrics.json   overall/head/tail
    export/               query/, index_*/, export.json  report.html, timings.json
Stages are idempotent: ingestion reuses a complete prepared dataset, training resumes from its
checkpoints, and evaluation/export/report rewrite their outputs atomically.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tfrs_llmrec.atomic_files import write_json_atomically
from tfrs_llmrec.config import ConfigError, ExperimentConfig, config_hash, load_experiment, to_dict
from tfrs_llmrec.data.dataset import EvalTargets, PreparedDataset, load_eval_targets, prepared_dataset_dir, select_rows
from tfrs_llmrec.data.spec import HISTORY, USER_INDEX
from tfrs_llmrec.evaluation import evaluate_retrieval, mean_by_popularity_bucket
from tfrs_llmrec.evaluation.report import write_html_report, write_metrics_json
from tfrs_llmrec.models import ModelInputs, build_model, is_trainable, model_spec
from tfrs_llmrec.models.alpharec import restore_semantic_mlp
from tfrs_llmrec.serving import (IndexSettings, build_index, check_in_fresh_process, save_index_model,
                                 save_query_model, top_k_recall)
from tfrs_llmrec.training import (Distribution, TerminationRequest, best_checkpoint, final_stage_dir, fit_stages,
                                  global_batch_size, set_global_determinism, set_precision, stage_dir)

log = logging.getLogger("llmrec.stages")

TRAIN_RESULT_FILE = "train_result.json"
METRICS_FILE = "metrics.json"
TIMINGS_FILE = "timings.json"
REPORT_FILE = "report.html"


class StageError(RuntimeError):
    """A stage cannot run because an earlier stage's output is missing or inconsistent."""


def _record_time(run_dir: Path, stage: str, seconds: float) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / TIMINGS_FILE
    timings = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    timings[stage] = round(seconds, 2)
    write_json_atomically(path, timings)


def prepared_dataset(config: ExperimentConfig, beam_options: Sequence[str] = (),
                     distribution: Optional[Distribution] = None) -> PreparedDataset:
    """Runs the ingestion job, or reuses its complete output for this data config. Under several
    processes only the chief runs it; the others wait for it to be published."""
    from beam_jobs.ingest import run_ingestion

    if distribution is not None and not distribution.is_chief:
        root = prepared_dataset_dir(config.data, Path(config.output_dir))
        _wait_for(root / "manifest.json", "the prepared dataset")
        return PreparedDataset.open(root)
    root = run_ingestion(config.data, Path(config.output_dir), seed=config.seed, pipeline_args=beam_options)
    return PreparedDataset.open(root)


def _wait_for(path: Path, what: str, timeout_s: float = 4 * 3600.0, poll_s: float = 2.0) -> None:
    """Waits until the chief has published `path` (files appear by rename, complete)."""
    started = time.monotonic()
    last_report = started
    while not path.exists():
        now = time.monotonic()
        if now - started > timeout_s:
            raise StageError(f"{path}: {what} did not appear within {timeout_s:.0f} s; did the chief fail?")
        if now - last_report > 60:
            log.info("waiting for the chief to publish %s (%s)", what, path)
            last_report = now
        time.sleep(poll_s)


def _model_names(config: ExperimentConfig) -> List[str]:
    return list(dict.fromkeys([config.model.name, *config.eval.baselines]))


def _train_pairs(dataset: PreparedDataset) -> Tuple[np.ndarray, np.ndarray]:
    train = dataset.split_items("train")
    return np.repeat(np.arange(len(train), dtype=np.int64), train.lengths()), train.indices.astype(np.int64)


def _semantic_item_vectors(config: ExperimentConfig, dataset: PreparedDataset,
                           distribution: Optional[Distribution] = None) -> np.ndarray:
    """The items' vectors of the configured semantic source, from the features job."""
    from beam_jobs.features import features_dir, run_features as build_features
    from tfrs_llmrec.data.features import SemanticFeatures

    if distribution is not None and not distribution.is_chief:
        root = features_dir(dataset, config.features)
        _wait_for(root / "manifest.json", "the semantic features")
    else:
        root = build_features(config.features, dataset, seed=config.seed)
    features = SemanticFeatures.open(root)
    source = config.model.semantic.source
    if source == "motivation" and not features.has_motivation.any():
        raise StageError("model.semantic.source: 'motivation' needs LLM motivations; set features.llm.backend")
    return features.item_vectors[source]


def _build(config: ExperimentConfig, dataset: PreparedDataset, name: str,
           distribution: Optional[Distribution] = None):
    spec = model_spec(name)
    inputs = ModelInputs(
        num_users=dataset.num_users, item_train_counts=dataset.item_popularity(),
        train_pairs=_train_pairs(dataset) if spec.needs_graph else None,
        item_vectors=_semantic_item_vectors(config, dataset, distribution) if spec.needs_item_vectors else None,
        seed=config.seed)
    return build_model(name, config.model, inputs)


def _query_function(model, histories: np.ndarray):
    return lambda users: model.query_embeddings(users, histories[users])


def _evaluate_queries(config: ExperimentConfig, dataset: PreparedDataset, targets: EvalTargets, query_fn,
                      item_embeddings: np.ndarray, rows=None, progress=True) -> dict:
    """The evaluator's summary for `query_fn` on `targets`, or on its rows `rows` only."""
    users, targets_indptr, targets_indices = targets.users, targets.targets_indptr, targets.targets_indices
    exclude_indptr, exclude_indices = targets.exclude_indptr, targets.exclude_indices
    if rows is not None:
        chosen_targets = select_rows(targets.targets, rows, sort_within=False)
        chosen_exclude = select_rows(targets.exclude, rows, sort_within=False)
        users, targets_indptr, targets_indices = users[rows], chosen_targets.indptr, chosen_targets.indices
        exclude_indptr, exclude_indices = chosen_exclude.indptr, chosen_exclude.indices
    stats = dataset.stats
    evaluation = evaluate_retrieval(
        query_fn, item_embeddings, users, targets_indptr, targets_indices, exclude_indptr, exclude_indices,
        ks=config.eval.ks, item_is_head=np.asarray(stats["item_is_head"], bool),
        user_is_active=np.asarray(stats["user_is_active"], bool),
        item_popularity=np.asarray(stats["item_train_counts"]), batch_size=config.eval.batch_size,
        item_chunk=config.eval.item_chunk, progress=progress)
    return evaluation.summary


def _evaluate(config: ExperimentConfig, dataset: PreparedDataset, model, split: str, max_users=None,
              progress=True) -> dict:
    targets = load_eval_targets(dataset, split)
    histories, _ = dataset.query_histories(split)
    rows = None
    if max_users is not None and len(targets.users) > max_users:
        # A fixed, seeded sample of users so the monitor is comparable across epochs.
        rows = np.sort(np.random.default_rng(config.seed).choice(len(targets.users), max_users, replace=False))
    return _evaluate_queries(config, dataset, targets, _query_function(model, histories), model.item_embeddings(),
                             rows, progress)


def _zero_shot_checkpoint(config: ExperimentConfig) -> str:
    """The trained AlphaRec checkpoint a zero-shot config borrows, after checking it is compatible."""
    source_dir = Path(config.model.alpharec.zero_shot_from)
    key = "model.alpharec.zero_shot_from"
    try:
        source = load_experiment(source_dir / "config.yaml")
    except (ConfigError, OSError) as error:
        raise StageError(f"{key}: {source_dir} is not a finished run directory ({error})") from None
    if source.model.name != "alpharec":
        raise StageError(f"{key}: {source_dir} trained {source.model.name}, not alpharec")
    for what, mine, theirs in (("features.encoder", config.features.encoder, source.features.encoder),
                               ("model.semantic", config.model.semantic, source.model.semantic)):
        if to_dict(mine) != to_dict(theirs):
            raise StageError(f"{key}: {source_dir} used another {what} ({to_dict(theirs)}); "
                             "zero-shot needs the same language space")
    checkpoint = best_checkpoint(stage_dir(source_dir / "checkpoints", 1, "train"))
    if checkpoint is None:
        raise StageError(f"{key}: {source_dir} has no trained checkpoint; train it first")
    return checkpoint


def _restore(config: ExperimentConfig, dataset: PreparedDataset, run_dir: Path, name: str):
    model = _build(config, dataset, name)
    if name == "alpharec" and config.model.alpharec.zero_shot_from is not None:
        restore_semantic_mlp(model, _zero_shot_checkpoint(config))
        return model
    if not is_trainable(name, config.model):
        return model
    plans = model.stage_plans(config.train)
    best = best_checkpoint(final_stage_dir(run_dir / "checkpoints", plans))
    if best is None:
        raise StageError(f"{run_dir / 'checkpoints'}: no trained {name} checkpoint; run `llmrec train` first")
    model.set_stage(plans[-1].name)
    tf.train.Checkpoint(model=model).read(best).expect_partial()
    return model


def run_data(config: ExperimentConfig, run_dir: Path, options=None) -> None:
    started = time.perf_counter()
    dataset = prepared_dataset(config, options.beam_options if options is not None else ())
    stats = dataset.stats
    log.info("dataset %s: %d users, %d items, %s", dataset.root, stats["num_users"], stats["num_items"],
             ", ".join(f"{split} {count}" for split, count in stats["interactions"].items()))
    _record_time(run_dir, "data", time.perf_counter() - started)


def run_features(config: ExperimentConfig, run_dir: Path, options=None) -> None:
    from beam_jobs.features import run_features as build_features
    from tfrs_llmrec.data.features import SemanticFeatures

    started = time.perf_counter()
    dataset = prepared_dataset(config)
    root = build_features(config.features, dataset, seed=config.seed,
                          pipeline_args=options.beam_options if options is not None else ())
    features = SemanticFeatures.open(root)
    manifest = features.manifest
    items = manifest["item_semantic_ids"]
    log.info("features %s: encoder %s; item semantic IDs: usage %s, collision rate %.4f, reconstruction MSE %.5f",
             root, manifest["encoder"], items.get("usage_per_level"), items.get("collision_rate", float("nan")),
             items.get("reconstruction_mse", float("nan")))
    print(nearest_neighbour_report(dataset, features.item_vectors["metadata"]))
    _record_time(run_dir, "features", time.perf_counter() - started)


def nearest_neighbour_report(dataset: PreparedDataset, item_vectors: np.ndarray, num_items: int = 5,
                             neighbours: int = 5) -> str:
    """The nearest items (cosine) of the most popular items: a quick look at whether vectors make sense."""
    titles = dataset.item_table().titles
    popular = np.argsort(-np.asarray(dataset.stats["item_train_counts"]), kind="stable")[:num_items]
    lines = ["nearest neighbours by semantic vector (title + metadata):"]
    for item in popular:
        similarity = item_vectors @ item_vectors[item]
        similarity[item] = -np.inf
        closest = np.argsort(-similarity, kind="stable")[:neighbours]
        lines.append(f"  {titles[item]!r} -> " + "; ".join(f"{titles[j]!r} ({similarity[j]:.2f})" for j in closest))
    return "\n".join(lines)


def _ranking_monitor(config: ExperimentConfig, dataset: PreparedDataset):
    """Validation ranking metrics on a fixed sample of users: what checkpoints and early stopping follow."""
    def ranking_metrics(model) -> Dict[str, float]:
        return _evaluate(config, dataset, model, "valid", max_users=config.train.monitor_max_users,
                         progress=False)["overall"]
    return ranking_metrics


def _training_summary(plans, results: dict) -> dict:
    """train_result.json: per-stage results, and the last stage's as the model's."""
    last = list(results.values())[-1]
    summary = {"history": {f"{stage}/{key}" if len(results) > 1 else key: values
                           for stage, result in results.items() for key, values in result.history.items()},
               "stages": {stage: asdict(result) for stage, result in results.items()},
               "epochs_completed": sum(result.epochs_completed for result in results.values()),
               "best_value": last.best_value, "best_epoch": last.best_epoch,
               "seconds": sum(result.seconds for result in results.values())}
    for plan in plans:
        if plan.stop_at is not None:  # a stage that trains until a target (MotiR's alignment)
            result = results[plan.name]
            summary["alignment"] = {"threshold": plan.stop_at, "reached": result.best_value >= plan.stop_at,
                                    **{key[len("val_"):] + "_per_epoch": values
                                       for key, values in result.history.items() if key.startswith("val_")}}
    return summary


def run_train(config: ExperimentConfig, run_dir: Path, options=None) -> None:
    """Trains the configured model under train.strategy; only the chief writes."""
    from tfrs_llmrec.distributed import make_distribution

    started = time.perf_counter()
    distribution = (options.distribution if options is not None and options.distribution is not None
                    else make_distribution(config.train))
    dataset = prepared_dataset(config, distribution=distribution)
    name = config.model.name
    if not is_trainable(name, config.model):
        log.info("model %s has nothing to train", name)
        if distribution.is_chief:
            write_json_atomically(run_dir / TRAIN_RESULT_FILE, {"model": name, "history": {}, "epochs_completed": 0})
        return
    global_batch = global_batch_size(config.train, distribution.num_replicas)
    if global_batch % distribution.num_replicas:
        raise StageError(f"train.batch_size: a global batch of {global_batch} does not split evenly over "
                         f"{distribution.num_replicas} replicas; use a multiple of {distribution.num_replicas}")
    set_global_determinism(config.seed)
    set_precision(config.train.mixed_precision)
    try:
        with distribution.scope():
            model = _build(config, dataset, name, distribution)
        model.replicas = distribution.replicas(config.train.sparse_as_dense)
        model.jit_compile = config.train.jit_compile
        epochs = dataset.training_epochs("train", global_batch, config.seed, config.train.shuffle_buffer)
        if distribution.is_chief:
            log.info("training %s with strategy %s: %d replica(s), global batch %d, %d steps per epoch", name,
                     distribution.name, distribution.num_replicas, epochs.global_batch_size, epochs.steps_per_epoch)
        plans = model.stage_plans(config.train)
        with TerminationRequest() as termination:
            results = fit_stages(model, plans, epochs, run_dir / "checkpoints", distribution,
                                 _ranking_monitor(config, dataset), termination)
    except tf.errors.DataLossError as error:
        # tf.data does not say which shard is corrupt; the dataset finds and names it.
        raise dataset.explain_data_loss(error, "train") from None
    finally:
        set_precision(False)
    if not distribution.is_chief:
        return
    result = _training_summary(plans, results)
    result.update(strategy=distribution.name, num_replicas=distribution.num_replicas,
                  global_batch_size=epochs.global_batch_size)
    write_json_atomically(run_dir / TRAIN_RESULT_FILE, {"model": name, **result})
    log.info("trained %s: %d epochs, best %s %.4f at epoch %d (%.1fs)", name, result["epochs_completed"],
             config.train.monitor, result["best_value"], result["best_epoch"], result["seconds"])
    _record_time(run_dir, "train", time.perf_counter() - started)


def run_evaluate(config: ExperimentConfig, run_dir: Path, options=None) -> None:
    dataset = prepared_dataset(config)
    split = config.eval.split
    results: Dict[str, dict] = {}
    for name in _model_names(config):
        started = time.perf_counter()
        model = _restore(config, dataset, run_dir, name)
        summary = _evaluate(config, dataset, model, split)
        results[name] = {"summary": summary, "seconds": round(time.perf_counter() - started, 2)}
        diagnostics = model.item_diagnostics() if hasattr(model, "item_diagnostics") else {}
        for key, values in diagnostics.items():
            buckets = mean_by_popularity_bucket(values, dataset.stats["item_train_counts"], f"mean_{key}")
            results[name][f"{key}_by_popularity_bucket"] = buckets
            log.info("%s mean %s per item-popularity bucket, least to most popular: %s", name, key,
                     " ".join(f"{bucket[f'mean_{key}']:.3f}" for bucket in buckets))
        overall = summary["overall"]
        log.info("%s on %s: %s", name, split,
                 ", ".join(f"{key} {overall[key]:.4f}" for key in ("recall@20", "ndcg@20") if key in overall))
    payload = {"experiment": config.name, "config_hash": config_hash(config), "split": split,
               "dataset": str(dataset.root), "models": results}
    write_metrics_json(run_dir / METRICS_FILE, payload)
    _record_time(run_dir, "evaluate", sum(result["seconds"] for result in results.values()))


def run_export(config: ExperimentConfig, run_dir: Path, options=None) -> None:
    name = config.model.name
    if not config.export.enabled:
        log.info("export skipped (disabled)")
        return
    started = time.perf_counter()
    dataset = prepared_dataset(config)
    model = _restore(config, dataset, run_dir, name)
    tower = model.serving_query_tower() if hasattr(model, "serving_query_tower") else None
    if tower is None:
        log.info("export skipped: %s has no query tower to serve (it only scores its training users)", name)
        return
    export_dir = run_dir / "export"
    max_history = dataset.stats["max_history"]
    histories, _ = dataset.query_histories(config.eval.split)
    sample = np.arange(min(config.export.recall_sample_users, dataset.stats["num_users"]), dtype=np.int64)
    inputs = {"user_index": sample, "history": histories[sample].astype(np.int64)}

    item_ids = dataset.item_ids()
    item_embeddings = model.item_embeddings()
    query_path = save_query_model(tower, max_history, export_dir / "query")
    reloaded = check_in_fresh_process(query_path, inputs)["query_embedding"]
    in_memory = tower({USER_INDEX: tf.constant(inputs["user_index"]), HISTORY: tf.constant(inputs["history"])}).numpy()
    manifest = {"model": name, "query_model": str(query_path),
                "query_max_abs_diff": float(np.max(np.abs(reloaded - in_memory))),
                "indexes": {}, "config_hash": config_hash(config), "config": to_dict(config)}

    exact = np.argsort(-(in_memory @ item_embeddings.T), axis=1, kind="stable")[:, :config.export.top_k]
    id_to_index = {item_id: index for index, item_id in enumerate(item_ids)}
    for kind in config.export.indexes:
        settings = IndexSettings(kind, config.export.top_k, config.export.scann_num_leaves,
                                 config.export.scann_num_leaves_to_search)
        index = build_index(settings, item_embeddings, item_ids)
        path = save_index_model(tower, index, max_history, export_dir / f"index_{kind}", scann=kind == "scann")
        returned = check_in_fresh_process(path, inputs)["item_ids"]
        found = np.vectorize(id_to_index.__getitem__)(returned)
        recall = top_k_recall(found, exact[:, :found.shape[1]])
        entry = {"path": str(path), "k": int(found.shape[1]), f"recall@{found.shape[1]}_vs_exact": recall}
        if kind == "scann":
            entry["num_leaves"], entry["num_leaves_to_search"] = settings.resolved_leaves(len(item_ids))
        manifest["indexes"][kind] = entry
        print(f"export: {kind} index reloaded in a fresh process; recall@{found.shape[1]} against exact "
              f"brute force on {len(sample)} users: {recall:.4f}")
    if model.serves_text_intentions:
        manifest["intention"] = _export_intention(config, dataset, tower, item_embeddings, sample, inputs["history"],
                                                  id_to_index, export_dir)
    write_json_atomically(export_dir / "export.json", manifest)
    _record_time(run_dir, "export", time.perf_counter() - started)


def _export_intention(config: ExperimentConfig, dataset: PreparedDataset, tower, item_embeddings: np.ndarray,
                      users: np.ndarray, histories: np.ndarray, id_to_index: Dict[str, int], export_dir: Path) -> dict:
    """Saves the (history, query text) -> top-K SavedModel with the text encoder inside, reloads it in
    a fresh process and compares it with the in-memory queries for `users` (with their `histories`).
    The query texts are the titles of the users' held-out items of the evaluated split (every other
    row blank, which must serve the history alone); the same texts measure with the evaluator, as an
    oracle, how far a stated intention moves the held-out item up."""
    from tfrs_llmrec.encoders import build_encoder
    from tfrs_llmrec.serving.intention import intention_queries, save_intention_index_model

    text_encoder = getattr(build_encoder(config.features.encoder), "module", None)
    if text_encoder is None:
        log.info("intention export skipped: encoder kind %s has no in-graph module", config.features.encoder.kind)
        return {"skipped": f"encoder kind {config.features.encoder.kind} has no in-graph module"}
    targets = load_eval_targets(dataset, config.eval.split)
    row_of_user = {user: row for row, user in enumerate(targets.users.tolist())}
    evaluated = np.array([position for position, user in enumerate(users.tolist()) if user in row_of_user],
                         dtype=np.int64)
    users, histories = users[evaluated], histories[evaluated]
    rows = np.array([row_of_user[user] for user in users.tolist()], dtype=np.int64)
    titles = dataset.item_table().titles
    texts = np.array([titles[targets.targets_indices[targets.targets_indptr[row]]] if position % 2 == 0 else ""
                      for position, row in enumerate(rows)])
    alpha = np.float32(config.model.alpharec.intention_alpha)
    k = min(config.export.top_k, len(item_embeddings))

    queries = intention_queries(tower, text_encoder, histories, texts, alpha).numpy()
    exact = np.argsort(-(queries @ item_embeddings.T), axis=1, kind="stable")[:, :k]
    index = build_index(IndexSettings("brute_force", k), item_embeddings, dataset.item_ids())
    path = save_intention_index_model(tower, text_encoder, index, dataset.stats["max_history"],
                                      export_dir / "intention_brute_force")
    returned = check_in_fresh_process(path, {"history": histories, "query_text": texts, "alpha": alpha})
    found = np.vectorize(id_to_index.__getitem__)(returned["item_ids"])
    recall = top_k_recall(found, exact)

    with_text = slice(None, None, 2)
    history_only = intention_queries(tower, text_encoder, histories[with_text], np.full(len(rows[with_text]), ""),
                                     alpha).numpy()
    position_of_user = np.full(dataset.num_users, -1, np.int64)
    position_of_user[users[with_text]] = np.arange(len(rows[with_text]))
    hit_rates = {}
    for label, query in (("history_only", history_only), ("with_target_title", queries[with_text])):
        overall = _evaluate_queries(config, dataset, targets, lambda batch, query=query: query[position_of_user[batch]],
                                    item_embeddings, rows[with_text], progress=False)["overall"]
        hit_rates.update({f"hr@{cutoff}_{label}": overall[f"hr@{cutoff}"] for cutoff in config.eval.ks})
    print(f"export: intention model (text encoder in the graph) reloaded in a fresh process; recall@{k} against "
          f"in-memory exact search: {recall:.4f}; oracle hit rates with the held-out title as the query at alpha "
          f"{alpha:g}: " + ", ".join(f"hr@{cutoff} {hit_rates[f'hr@{cutoff}_with_target_title']:.4f} (history only "
                                     f"{hit_rates[f'hr@{cutoff}_history_only']:.4f})" for cutoff in config.eval.ks))
    return {"path": str(path), f"recall@{k}_vs_exact": recall, "alpha": float(alpha), "num_users": len(users),
            **hit_rates}


def run_report(config: ExperimentConfig, run_dir: Path, options=None) -> None:
    metrics_path = run_dir / METRICS_FILE
    if not metrics_path.is_file():
        raise StageError(f"{metrics_path}: missing; run `llmrec evaluate` first")
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    train_path = run_dir / TRAIN_RESULT_FILE
    training = json.loads(train_path.read_text(encoding="utf-8")) if train_path.is_file() else {}
    timings_path = run_dir / TIMINGS_FILE
    timings = json.loads(timings_path.read_text(encoding="utf-8")) if timings_path.is_file() else {}
    dataset = prepared_dataset(config)
    runs = []
    for name, result in metrics["models"].items():
        trained_here = training.get("model") == name
        runs.append({"model": name, "summary": result["summary"], "config": to_dict(config),
                     "timings": {**(timings if trained_here else {}), "evaluate": result["seconds"]},
                     "history": training.get("history", {}) if trained_here else {}})
    stats = {key: value for key, value in dataset.stats.items() if not isinstance(value, list)}
    write_html_report(run_dir / REPORT_FILE, f"{config.name} ({metrics['split']} split)", runs, stats)
    print(f"report: {run_dir / REPORT_FILE}")
