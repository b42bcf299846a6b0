"""The stages of an experiment as library functions with explicit inputs and outputs.

Each stage reads directories and writes directories (or files), so `llmrec` (tfrs_llmrec.workflow.run,
which maps them onto a run directory) and the TFX components (pipelines/) call the same code:

    ingest(config, output_dir)                                   -> prepared dataset directory
    semantic_features(config, dataset_dir, output_dir)           -> features directory
    train(config, dataset_dir, features_dir, model_dir)          -> model_dir/{checkpoints/, train_result.json}
    evaluate(config, dataset_dir, features_dir, model_dir)       -> metrics (dict; written where asked)
    export(config, dataset_dir, features_dir, model_dir, export_dir) -> servable SavedModels + export.json

Ingestion and features reuse a complete output for the same config; training resumes from the
checkpoints in model_dir; everything else rewrites its output atomically.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from tfrs_llmrec.atomic_files import write_json_atomically
from tfrs_llmrec.config import ConfigError, ExperimentConfig, config_hash, load_experiment, to_dict
from tfrs_llmrec.data.dataset import EvalTargets, PreparedDataset, load_eval_targets, select_rows
from tfrs_llmrec.evaluation import evaluate_retrieval, mean_by_popularity_bucket
from tfrs_llmrec.evaluation.report import write_metrics_json
from tfrs_llmrec.models import ModelInputs, build_model, is_ranker, is_trainable, model_spec
from tfrs_llmrec.models.alpharec import restore_semantic_mlp
from tfrs_llmrec.models.base import all_items
from tfrs_llmrec.serving.export import calls_in_fresh_process, check_in_fresh_process
from tfrs_llmrec.serving.indexes import IndexSettings, build_index, top_k_recall
from tfrs_llmrec.training import (Distribution, TerminationRequest, best_checkpoint, final_stage_dir, fit_stages,
                                  global_batch_size, set_global_determinism, set_precision, stage_dir)
from tfrs_llmrec.training.run_dir import TRAIN_RESULT_FILE

log = logging.getLogger("tfrs_llmrec.workflow")

PathLike = Union[str, Path]
CHECKPOINTS_DIR = "checkpoints"


class StageError(RuntimeError):
    """A stage cannot run because an earlier stage's output is missing or inconsistent."""


def wait_for(path: Path, what: str, timeout_s: float = 4 * 3600.0, poll_s: float = 2.0) -> None:
    """Waits until the chief of a distributed job has published `path` (outputs appear by rename)."""
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


def ingest(config: ExperimentConfig, output_dir: PathLike, beam_options: Sequence[str] = (),
           distribution: Optional[Distribution] = None) -> Path:
    """Runs the Beam ingestion job into `output_dir` (or reuses its complete output for this data
    config); returns the prepared dataset's directory. Under several processes only the chief
    runs it; the others wait for it to be published."""
    from beam_jobs.ingest import run_ingestion
    from tfrs_llmrec.data.dataset import prepared_dataset_dir

    if distribution is not None and not distribution.is_chief:
        root = prepared_dataset_dir(config.data, Path(output_dir))
        wait_for(root / "manifest.json", "the prepared dataset")
        return root
    root = run_ingestion(config.data, Path(output_dir), seed=config.seed, pipeline_args=beam_options)
    stats = PreparedDataset.open(root).stats
    log.info("dataset %s: %d users, %d items, %s", root, stats["num_users"], stats["num_items"],
             ", ".join(f"{split} {count}" for split, count in stats["interactions"].items()))
    return root


def semantic_features(config: ExperimentConfig, dataset_dir: PathLike, output_dir: Optional[PathLike] = None,
                      beam_options: Sequence[str] = (), distribution: Optional[Distribution] = None) -> Path:
    """Runs the Beam features job (language-model vectors, LLM texts, RQ-VAE semantic IDs) for the
    dataset in `dataset_dir` into `output_dir` (default: beside the dataset), or reuses them;
    returns the features directory."""
    from beam_jobs.features import features_dir, run_features

    dataset = PreparedDataset.open(Path(dataset_dir))
    out = Path(output_dir) if output_dir is not None else None
    if distribution is not None and not distribution.is_chief:
        root = features_dir(dataset, config.features, out)
        wait_for(root / "manifest.json", "the semantic features")
        return root
    return run_features(config.features, dataset, seed=config.seed, pipeline_args=beam_options, output_dir=out)


def _required(path: Optional[PathLike], what: str) -> PathLike:
    if path is None:
        raise StageError(f"{what} are missing: run the stage that writes them first")
    return path


def needs_features(config: ExperimentConfig) -> bool:
    """Whether the configured model or one of its baselines reads the items' semantic vectors (the
    CTR rankers read them and the semantic IDs)."""
    if is_ranker(config.model.name):
        return True
    return any(model_spec(name).needs_item_vectors for name in model_names(config))


def model_names(config: ExperimentConfig) -> List[str]:
    """The configured model, then its baselines."""
    return list(dict.fromkeys([config.model.name, *config.eval.baselines]))


def _train_pairs(dataset: PreparedDataset) -> Tuple[np.ndarray, np.ndarray]:
    train = dataset.split_items("train")
    return np.repeat(np.arange(len(train), dtype=np.int64), train.lengths()), train.indices.astype(np.int64)


def _semantic_features(config: ExperimentConfig, features_dir: Optional[PathLike], what: str):
    """The features job's output (`SemanticFeatures`), which the model reads `what` from."""
    from tfrs_llmrec.data.features import SemanticFeatures

    if features_dir is None:
        raise StageError(f"model {config.model.name} reads {what}: run the features stage first")
    return SemanticFeatures.open(Path(features_dir))


def _semantic_item_vectors(config: ExperimentConfig, features) -> np.ndarray:
    """The items' vectors of the configured semantic source, from `features` (`SemanticFeatures`)."""
    source = config.model.semantic.source
    if source == "motivation" and not features.has_motivation.any():
        raise StageError("model.semantic.source: 'motivation' needs LLM motivations; set features.llm.backend")
    return features.item_vectors[source]


def _explicit_interests(config: ExperimentConfig, features) -> Tuple[np.ndarray, np.ndarray]:
    """EIMF's explicit interests per user from `features` (`SemanticFeatures`); none at all is an error."""
    if not features.user_num_interests.any():
        raise StageError(f"{features.root}: no user has explicit interests, which model {config.model.name} needs; "
                         "set features.llm.interests_source to 'item_centroids' (no LLM) or 'llm' with "
                         "features.llm.backend set")
    return features.user_interests, features.user_num_interests


def build(config: ExperimentConfig, dataset: PreparedDataset, name: str, features_dir: Optional[PathLike]):
    """The untrained model `name` for this dataset (semantic vectors from `features_dir` if it needs them)."""
    spec = model_spec(name)
    features = None
    if spec.needs_item_vectors or spec.needs_interests:  # read once, whatever the model takes from it
        features = _semantic_features(config, features_dir,
                                      "semantic item vectors" if spec.needs_item_vectors else "explicit interests")
    inputs = ModelInputs(
        num_users=dataset.num_users, item_train_counts=dataset.item_popularity(),
        train_pairs=_train_pairs(dataset) if spec.needs_train_pairs else None,
        item_vectors=_semantic_item_vectors(config, features) if spec.needs_item_vectors else None,
        seed=config.seed, max_history=dataset.max_history,
        user_interests=_explicit_interests(config, features) if spec.needs_interests else None)
    return build_model(name, config.model, inputs)


def _query_function(model, histories: np.ndarray):
    return lambda users: model.query_embeddings(users, histories[users])


def evaluate_queries(config: ExperimentConfig, dataset: PreparedDataset, targets: EvalTargets, query_fn,
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


def evaluate_model(config: ExperimentConfig, dataset: PreparedDataset, model, split: str, max_users=None,
                   progress=True) -> dict:
    """The evaluator's summary of `model` on `split`, on a fixed sample of `max_users` users if given."""
    targets = load_eval_targets(dataset, split)
    histories, _ = dataset.query_histories(split)
    rows = sampled_rows(len(targets.users), max_users, config.seed)
    return evaluate_queries(config, dataset, targets, _query_function(model, histories), model.item_embeddings(),
                            rows, progress)


def sampled_rows(num_users: int, max_users: Optional[int], seed: int) -> Optional[np.ndarray]:
    """None (every user) unless `max_users` is below `num_users`: then a fixed, seeded, sorted
    sample, so a monitor computed on it is comparable across epochs."""
    if max_users is None or num_users <= max_users:
        return None
    return np.sort(np.random.default_rng(seed).choice(num_users, max_users, replace=False))


def restore_ranker(config: ExperimentConfig, ctr_dir: PathLike, features_dir: PathLike, model_dir: PathLike):
    """The configured CTR ranker with its best checkpoint's weights."""
    from tfrs_llmrec.data.ctr import CtrDataset
    from tfrs_llmrec.workflow import ranking

    ctr = CtrDataset.open(Path(ctr_dir))
    model = ranking.build(config, ctr, features_dir)
    # Variables exist only after a first call; a restore into an unbuilt model would be deferred.
    model.compute_loss(next(iter(ctr.batches("valid", 8))))
    return _load_best(config, model, model_dir, config.model.name)


def export_ranker(config: ExperimentConfig, dataset_dir: PathLike, ctr_dir: PathLike, features_dir: PathLike,
                  model_dir: PathLike, export_dir: PathLike) -> dict:
    """The trained ranker's scoring SavedModel, checked in a fresh process (`ranking.export`)."""
    from tfrs_llmrec.workflow import ranking

    model = restore_ranker(config, ctr_dir, features_dir, model_dir)
    return ranking.export(config, dataset_dir, ctr_dir, model, export_dir)


def _evaluate_ranker(config: ExperimentConfig, dataset_dir: PathLike, ctr_dir: PathLike,
                     features_dir: Optional[PathLike],
                     model_dir: PathLike, metrics_path: Optional[PathLike]) -> dict:
    from tfrs_llmrec.workflow import ranking

    model = restore_ranker(config, ctr_dir, _required(features_dir, "the semantic features"), model_dir)
    return ranking.evaluate(config, ctr_dir, model, metrics_path, dataset_dir)


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
    checkpoint = best_checkpoint(stage_dir(source_dir / CHECKPOINTS_DIR, 1, "train"))
    if checkpoint is None:
        raise StageError(f"{key}: {source_dir} has no trained checkpoint; train it first")
    return checkpoint


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
        return evaluate_model(config, dataset, model, "valid", max_users=config.train.monitor_max_users,
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


def restore(config: ExperimentConfig, dataset: PreparedDataset, features_dir: Optional[PathLike],
            model_dir: PathLike, name: str):
    """Model `name` with the weights of its best checkpoint in `model_dir` (untrained models as built)."""
    model = build(config, dataset, name, features_dir)
    if name == "alpharec" and config.model.alpharec.zero_shot_from is not None:
        restore_semantic_mlp(model, _zero_shot_checkpoint(config))
        return model
    if not is_trainable(name, config.model):
        return model
    return _load_best(config, model, model_dir, name)


def _load_best(config: ExperimentConfig, model, model_dir: PathLike, name: str):
    """`model` with the weights of its final stage's best checkpoint in `model_dir`."""
    plans = model.stage_plans(config.train)
    checkpoints = Path(model_dir) / CHECKPOINTS_DIR
    best = best_checkpoint(final_stage_dir(checkpoints, plans))
    if best is None:
        raise StageError(f"{checkpoints}: no trained {name} checkpoint; run the train stage first")
    model.set_stage(plans[-1].name)
    tf.train.Checkpoint(model=model).read(best).expect_partial()
    return model


def train(config: ExperimentConfig, dataset_dir: PathLike, features_dir: Optional[PathLike], model_dir: PathLike,
          distribution: Optional[Distribution] = None, ctr_dir: Optional[PathLike] = None) -> dict:
    """Trains the configured model under train.strategy into `model_dir` (checkpoints/, resumed if
    present; train_result.json). Every process of a distributed job calls it; only the chief writes.
    A CTR ranker trains on the CTR samples in `ctr_dir`. Returns the training summary."""
    from tfrs_llmrec.distributed import make_distribution

    distribution = distribution if distribution is not None else make_distribution(config.train)
    ranker = is_ranker(config.model.name)
    if ranker:
        from tfrs_llmrec.data.ctr import CtrDataset
        from tfrs_llmrec.workflow import ranking

        dataset = CtrDataset.open(Path(_required(ctr_dir, "the CTR samples")))
        for split in ("train", "valid"):
            dataset.check_labels(split)
    else:
        dataset = PreparedDataset.open(Path(dataset_dir))
    model_dir = Path(model_dir)
    name = config.model.name
    if not is_trainable(name, config.model):
        log.info("model %s has nothing to train", name)
        summary = {"model": name, "history": {}, "epochs_completed": 0}
        if distribution.is_chief:
            write_json_atomically(model_dir / TRAIN_RESULT_FILE, summary)
        return summary
    global_batch = global_batch_size(config.train, distribution.num_replicas)
    if global_batch % distribution.num_replicas:
        raise StageError(f"train.batch_size: a global batch of {global_batch} does not split evenly over "
                         f"{distribution.num_replicas} replicas; use a multiple of {distribution.num_replicas}")
    set_global_determinism(config.seed)
    set_precision(config.train.mixed_precision)
    try:
        with distribution.scope():
            model = (ranking.build(config, dataset, _required(features_dir, "the semantic features")) if ranker
                     else build(config, dataset, name, features_dir))
        model.replicas = distribution.replicas(config.train.sparse_as_dense)
        model.jit_compile = config.train.jit_compile
        epochs = dataset.training_epochs("train", global_batch, config.seed, config.train.shuffle_buffer)
        monitor = ranking.validation_metrics(dataset) if ranker else _ranking_monitor(config, dataset)
        if distribution.is_chief:
            log.info("training %s with strategy %s: %d replica(s), global batch %d, %d steps per epoch", name,
                     distribution.name, distribution.num_replicas, epochs.global_batch_size, epochs.steps_per_epoch)
        plans = model.stage_plans(config.train)
        with TerminationRequest() as termination:
            results = fit_stages(model, plans, epochs, model_dir / CHECKPOINTS_DIR, distribution, monitor, termination)
    except tf.errors.DataLossError as error:
        # tf.data does not say which shard is corrupt; the dataset finds and names it.
        raise dataset.explain_data_loss(error, "train") from None
    finally:
        set_precision(False)
    summary = {"model": name, **_training_summary(plans, results), "strategy": distribution.name,
               "num_replicas": distribution.num_replicas, "global_batch_size": epochs.global_batch_size}
    if distribution.is_chief:
        write_json_atomically(model_dir / TRAIN_RESULT_FILE, summary)
        log.info("trained %s: %d epochs, best %s %.4f at epoch %d (%.1fs)", name, summary["epochs_completed"],
                 config.train.monitor, summary["best_value"], summary["best_epoch"], summary["seconds"])
    return summary


def evaluate(config: ExperimentConfig, dataset_dir: PathLike, features_dir: Optional[PathLike], model_dir: PathLike,
             metrics_path: Optional[PathLike] = None, models: Optional[Sequence[str]] = None,
             ctr_dir: Optional[PathLike] = None) -> dict:
    """Full-ranking metrics (overall, head/tail, active/inactive) on config.eval.split of the trained
    model in `model_dir` and of its untrained baselines (or of `models`); written to `metrics_path`
    if given. Returns {"experiment", "config_hash", "split", "dataset", "models": {name: ...}}.
    A CTR ranker is evaluated on the CTR samples in `ctr_dir` instead (AUC, GAUC, log loss)."""
    if is_ranker(config.model.name):
        return _evaluate_ranker(config, dataset_dir, _required(ctr_dir, "the CTR samples"), features_dir, model_dir,
                                metrics_path)
    dataset = PreparedDataset.open(Path(dataset_dir))
    split = config.eval.split
    results: Dict[str, dict] = {}
    for name in (models if models is not None else model_names(config)):
        started = time.perf_counter()
        model = restore(config, dataset, features_dir, model_dir, name)
        summary = evaluate_model(config, dataset, model, split)
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
    if metrics_path is not None:
        write_metrics_json(Path(metrics_path), payload)
    return payload


EXPORT_MANIFEST = "export.json"
RETRIEVAL_DIRS = {"brute_force": "retrieval", "scann": "retrieval_scann"}
ITEM_TOWER_DIR = "item_tower"
TEXT_ITEM_TOWER_DIR = "item_tower_text"
UNKNOWN_ID = "\u2205unknown"  # an ID no vocabulary holds: exports must ignore it


def _exact_top_k_excluding(scores: np.ndarray, histories: np.ndarray, k: int) -> np.ndarray:
    """Indices of the `k` best items per row of `scores`, leaving out that row's history items
    (PAD_ITEM-padded `histories`): what a retrieval model must return, found by exact search."""
    masked = scores.copy()
    for row, items in enumerate(histories):
        masked[row, items[items >= 0]] = -np.inf
    return np.argsort(-masked, axis=1, kind="stable")[:, :k]


def _history_ids(histories: np.ndarray, item_ids: Sequence[str]) -> np.ndarray:
    """PAD_ITEM-padded index histories as a request sends them: raw IDs padded with ""."""
    id_array = np.asarray(item_ids, dtype=object)
    return np.where(histories >= 0, id_array[np.maximum(histories, 0)], "").astype(str)


def export(config: ExperimentConfig, dataset_dir: PathLike, features_dir: Optional[PathLike], model_dir: PathLike,
           export_dir: PathLike) -> dict:
    """Writes the servable SavedModels of the trained model (tfrs_llmrec.serving.export) to
    `export_dir`, published as one directory: retrieval/ (BruteForce, core TF ops only),
    retrieval_scann/ (if configured), item_tower/, item_tower_text/ (semantic models),
    intention_brute_force/ (AlphaRec), export.json.
    Each model is reloaded in a fresh process and checked against the in-memory model: the
    query embeddings, the score signature, recall@K against exact search with the history
    excluded, and that no history item is ever returned. Returns the manifest."""
    from tfrs_llmrec.atomic_files import building_directory
    from tfrs_llmrec.data.spec import HISTORY, USER_INDEX
    from tfrs_llmrec.serving.export import (CANDIDATE_IDS, HISTORY_IDS, ITEM_IDS, QUERY_EMBEDDING, QUERY_SIGNATURE,
                                            SCORE_SIGNATURE, SCORES, USER_ID, RetrievalModule, interest_scores,
                                            save_retrieval_model, serving_query_tower)

    dataset = PreparedDataset.open(Path(dataset_dir))
    name = config.model.name
    model = restore(config, dataset, features_dir, model_dir, name)
    max_history = int(dataset.stats["max_history"])
    item_ids, user_ids = dataset.item_ids(), dataset.user_ids()
    item_embeddings = model.item_embeddings()
    tower = serving_query_tower(model, dataset.num_users, max_history)
    k = min(config.export.top_k, len(item_ids) - max_history)
    if k < 1:
        raise StageError(f"export.top_k: {len(item_ids)} items cannot give a top-K beside a history of "
                         f"{max_history}")

    histories, _ = dataset.query_histories(config.eval.split)
    users = np.arange(min(config.export.recall_sample_users, dataset.num_users), dtype=np.int64)
    history = histories[users]
    # An unknown ID in every history (ignored by the graph), and an unknown user in the first row
    # (served from the history alone; compared with the in-memory tower at user index -1).
    history_ids = np.concatenate([np.full((len(users), 1), UNKNOWN_ID), _history_ids(history, item_ids)], axis=1)
    request_users = np.asarray(user_ids, dtype=object)[users].astype(str)
    request_users[0], user_indices = UNKNOWN_ID, users.copy()
    user_indices[0] = -1
    inputs = {USER_ID: request_users, HISTORY_IDS: history_ids}
    queries = np.asarray(tower({USER_INDEX: tf.constant(user_indices), HISTORY: tf.constant(history)}))
    scores = interest_scores(queries, item_embeddings)
    exact = _exact_top_k_excluding(scores, history, k)
    index_of = {item_id: index for index, item_id in enumerate(item_ids)}

    manifest: dict = {"model": name, "k": k, "max_history": max_history, "num_items": len(item_ids),
                      "num_users": len(user_ids), "check_users": len(users), "models": {},
                      "config_hash": config_hash(config), "config": to_dict(config)}
    export_dir = Path(export_dir)
    with building_directory(export_dir) as staging:
        for kind in dict.fromkeys(["brute_force", *config.export.indexes]):
            settings = IndexSettings(kind, k + max_history, config.export.scann_num_leaves,
                                     config.export.scann_num_leaves_to_search, seed=config.seed)
            index = build_index(settings, item_embeddings, item_ids)
            module = RetrievalModule(tower, item_ids, user_ids, item_embeddings, max_history, index, k)
            path = save_retrieval_model(module, staging / RETRIEVAL_DIRS[kind], scann=kind == "scann")
            core_only = kind == "brute_force"
            calls = [("serving_default", inputs)]
            if core_only:
                candidates = np.concatenate([np.asarray(item_ids, dtype=object)[exact[:, :4]].astype(str),
                                             np.full((len(users), 1), UNKNOWN_ID)], axis=1)
                calls += [(QUERY_SIGNATURE, inputs), (SCORE_SIGNATURE, {**inputs, CANDIDATE_IDS: candidates})]
            returned, *signature_outputs = calls_in_fresh_process(path, calls, core_only=core_only)
            found = np.vectorize(index_of.__getitem__, otypes=[np.int64])(returned[ITEM_IDS])
            history_returned = sum(len(set(row[row >= 0].tolist()) & set(hit.tolist()))
                                   for row, hit in zip(history, found))
            if history_returned:
                raise StageError(f"{path}: returned {history_returned} history items; exclusion is broken")
            entry = {"directory": RETRIEVAL_DIRS[kind], "k": k, f"recall@{k}_vs_exact": top_k_recall(found, exact),
                     "core_ops_only": core_only, "history_items_returned": 0}
            if kind == "scann":
                entry.update(asdict(settings.resolved_scann(len(item_ids))))
            if core_only:
                reloaded, scored = signature_outputs[0][QUERY_EMBEDDING], signature_outputs[1][SCORES]
                entry["query_max_abs_diff"] = float(np.max(np.abs(reloaded - queries)))
                # What a request must send, and the query's shape per user ([K, d] for K interests).
                entry["query_signature_inputs"] = sorted(spec.name for spec in module.query.input_signature)
                entry["query_shape"] = list(reloaded.shape[1:])
                expected = np.take_along_axis(scores, exact[:, :4], axis=1)  # best interest per candidate
                entry["score_max_abs_diff"] = float(np.max(np.abs(scored[:, :4] - expected)))
                entry["unknown_candidate_scores_lowest"] = bool(np.all(scored[:, 4] < scored[:, :4].min()))
            manifest["models"][kind] = entry
            print(f"export: {kind} retrieval model reloaded in a fresh process"
                  f"{' with core TF ops only' if core_only else ''}; recall@{k} against exact search "
                  f"(history excluded) on {len(users)} users: {entry[f'recall@{k}_vs_exact']:.4f}")
        manifest["models"].update(_export_item_towers(config, dataset, features_dir, model, item_embeddings,
                                                       histories, staging))
        if model.serves_text_intentions:
            manifest["intention"] = _export_intention(config, dataset, tower, item_embeddings, users[1:],
                                                      history[1:], index_of, staging)
        write_json_atomically(staging / EXPORT_MANIFEST, manifest)
    return manifest


def _export_item_towers(config: ExperimentConfig, dataset: PreparedDataset, features_dir: Optional[PathLike], model,
                        item_embeddings: np.ndarray, histories: np.ndarray, export_dir: Path) -> dict:
    """Saves item_tower/ (and, for a semantic model whose encoder runs in TensorFlow, item_tower_text/),
    reloads each in a fresh process and checks it: known IDs give the trained embeddings; unknown IDs
    with the language-model vectors (or the texts) of catalogue items give what the in-memory model
    embeds from those vectors alone; a blank row gives zeros. For semantic models it also measures,
    with the evaluator, the retrieval of a catalogue embedded from text alone: the cold-start case."""
    from beam_jobs.features import MOTIVATION, item_texts
    from tfrs_llmrec.encoders import build_encoder
    from tfrs_llmrec.serving.export import (EMBEDDING, FROM_SEMANTICS, ITEM_ID, ITEM_TEXT, KNOWN, SEMANTIC_VECTOR,
                                            VECTOR_SIGNATURE, save_item_tower)

    item_ids = dataset.item_ids()
    sample = np.arange(min(256, len(item_ids)))
    sample_ids = np.asarray(item_ids, dtype=object)[sample].astype(str)
    text_only_tower = model.text_only_item_tower()
    vectors = (None if text_only_tower is None else
               _semantic_item_vectors(config, _semantic_features(config, features_dir, "semantic item vectors")))
    path = save_item_tower(item_ids, item_embeddings, export_dir / ITEM_TOWER_DIR, text_only_tower,
                           None if vectors is None else vectors.shape[1])
    calls = [("serving_default", {ITEM_ID: sample_ids})]
    if text_only_tower is not None:
        # Catalogue items presented as new ones (IDs no vocabulary holds), plus one blank row.
        new_ids = np.append(np.char.add("new:", sample_ids), UNKNOWN_ID)
        new_vectors = np.concatenate([vectors[sample], np.zeros((1, vectors.shape[1]), np.float32)])
        calls.append((VECTOR_SIGNATURE, {ITEM_ID: new_ids, SEMANTIC_VECTOR: new_vectors}))
    by_id, *from_vectors = calls_in_fresh_process(path, calls, core_only=True)
    entry = {"directory": ITEM_TOWER_DIR, "core_ops_only": True,
             "max_abs_diff": float(np.max(np.abs(by_id[EMBEDDING] - item_embeddings[sample])))}
    entries = {"item_tower": entry}
    if text_only_tower is None:
        return entries
    expected = np.asarray(text_only_tower(vectors[sample]))

    def check(path: Path, outputs: dict, expected: np.ndarray) -> float:
        """`path`'s outputs for rows of new items whose embeddings should be `expected`, then a blank row."""
        if outputs[KNOWN].any() or not outputs[FROM_SEMANTICS][:-1].all() or outputs[FROM_SEMANTICS][-1]:
            raise StageError(f"{path}: new items were not embedded from their semantics alone")
        if np.any(outputs[EMBEDDING][-1] != 0):
            raise StageError(f"{path}: a new item without semantics did not get a zero embedding")
        return float(np.max(np.abs(outputs[EMBEDDING][:-1] - expected)))

    entry["semantic_source"] = source = config.model.semantic.source
    entry["new_items_from_vector_max_abs_diff"] = check(path, from_vectors[0], expected)

    text_only_embeddings = all_items(lambda items: text_only_tower(tf.gather(vectors, items)), len(item_ids))
    targets = load_eval_targets(dataset, config.eval.split)
    query_fn = _query_function(model, histories)
    cold = {}
    for label, embeddings in (("trained", item_embeddings), ("text_only", text_only_embeddings)):
        summary = evaluate_queries(config, dataset, targets, query_fn, embeddings, progress=False)
        for k in config.eval.ks:
            cold.update({f"recall@{k}_{label}": summary["overall"][f"recall@{k}"],
                         f"recall@{k}_tail_{label}": summary["tail_items"][f"recall@{k}"]})
    entry["catalogue_as_new_items"] = cold
    cutoff = f"recall@{20 if 20 in config.eval.ks else max(config.eval.ks)}"
    print(f"export: {model.__class__.__name__} item tower; every catalogue item embedded from its text alone, as a "
          f"new item would be: {cutoff} {cold[f'{cutoff}_text_only']:.4f} (trained {cold[f'{cutoff}_trained']:.4f}), "
          f"tail {cold[f'{cutoff}_tail_text_only']:.4f} (trained {cold[f'{cutoff}_tail_trained']:.4f})")

    text_encoder = getattr(build_encoder(config.features.encoder), "module", None)
    if text_encoder is None or source == MOTIVATION:
        entries["item_tower_text"] = {"skipped": "motivation texts come from an LLM at features time" if text_encoder
                                      else f"encoder kind {config.features.encoder.kind} has no in-graph module"}
        return entries
    table = dataset.item_table()
    all_texts = [item_texts(title, genres, description)[source]
                 for title, genres, description in zip(table.titles, table.genres, table.descriptions)]
    # Items with text: a blank text is served as no text at all.
    sample = np.flatnonzero([bool(text.strip()) for text in all_texts])[:256]
    if not len(sample):
        entries["item_tower_text"] = {"skipped": "no catalogue item has text to check it with"}
        return entries
    new_ids = np.append(np.char.add("new:", np.asarray(item_ids, dtype=object)[sample].astype(str)), UNKNOWN_ID)
    expected = np.asarray(text_only_tower(vectors[sample]))
    path = save_item_tower(item_ids, item_embeddings, export_dir / TEXT_ITEM_TOWER_DIR, text_only_tower,
                           vectors.shape[1], text_encoder)
    outputs = check_in_fresh_process(path, {ITEM_ID: new_ids, ITEM_TEXT: np.array([all_texts[item] for item in sample]
                                                                                + [" "])})
    entries["item_tower_text"] = {"directory": TEXT_ITEM_TOWER_DIR, "semantic_source": source, "core_ops_only": False,
                                  "new_items_vs_features_job_max_abs_diff": check(path, outputs, expected)}
    return entries


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
    max_history = int(dataset.stats["max_history"])
    k = min(config.export.top_k, len(item_embeddings) - max_history)

    queries = intention_queries(tower, text_encoder, histories, texts, alpha).numpy()
    exact = _exact_top_k_excluding(queries @ item_embeddings.T, histories, k)
    item_ids = dataset.item_ids()
    index = build_index(IndexSettings("brute_force", k + max_history), item_embeddings, item_ids)
    path = save_intention_index_model(tower, text_encoder, index, item_ids, max_history, k,
                                      export_dir / "intention_brute_force")
    returned = check_in_fresh_process(path, {"history": _history_ids(histories, item_ids), "query_text": texts,
                                             "alpha": alpha})
    found = np.vectorize(id_to_index.__getitem__)(returned["item_ids"])
    recall = top_k_recall(found, exact)

    with_text = slice(None, None, 2)
    history_only = intention_queries(tower, text_encoder, histories[with_text], np.full(len(rows[with_text]), ""),
                                     alpha).numpy()
    position_of_user = np.full(dataset.num_users, -1, np.int64)
    position_of_user[users[with_text]] = np.arange(len(rows[with_text]))
    hit_rates = {}
    for label, query in (("history_only", history_only), ("with_target_title", queries[with_text])):
        overall = evaluate_queries(config, dataset, targets, lambda batch, query=query: query[position_of_user[batch]],
                                   item_embeddings, rows[with_text], progress=False)["overall"]
        hit_rates.update({f"hr@{cutoff}_{label}": overall[f"hr@{cutoff}"] for cutoff in config.eval.ks})
    print(f"export: intention model (text encoder in the graph) reloaded in a fresh process; recall@{k} against "
          f"in-memory exact search: {recall:.4f}; oracle hit rates with the held-out title as the query at alpha "
          f"{alpha:g}: " + ", ".join(f"hr@{cutoff} {hit_rates[f'hr@{cutoff}_with_target_title']:.4f} (history only "
                                     f"{hit_rates[f'hr@{cutoff}_history_only']:.4f})" for cutoff in config.eval.ks))
    return {"directory": path.name, f"recall@{k}_vs_exact": recall, "alpha": float(alpha), "num_users": len(users),
            **hit_rates}


def ctr_samples(config: ExperimentConfig, dataset_dir: PathLike, features_dir: PathLike, output_dir: PathLike,
                beam_options: Sequence[str] = (), distribution: Optional[Distribution] = None) -> Path:
    """Runs the Beam CTR samples job (labelled impressions for the ranking models) on the prepared
    dataset and its semantic features into `<output_dir>/ctr/`, or reuses them; returns their
    directory. Under several processes only the chief runs it; the others wait for it."""
    from beam_jobs.ctr import run_ctr_samples
    from tfrs_llmrec.data.ctr import CtrDataset, ctr_samples_dir

    if distribution is not None and not distribution.is_chief:
        root = ctr_samples_dir(config, dataset_dir, features_dir, output_dir)
        wait_for(root / "manifest.json", "the CTR samples")
        return root
    root = run_ctr_samples(config, dataset_dir, features_dir, output_dir, pipeline_args=beam_options)
    stats = CtrDataset.open(root).stats
    log.info("CTR samples %s: %s", root, ", ".join(f"{split} {count} ({stats['positive_rate'][split]:.1%} positive)"
                                                   for split, count in stats["impressions"].items()))
    return root
