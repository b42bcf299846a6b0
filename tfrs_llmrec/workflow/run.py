"""`llmrec run`'s layout: the stages of tfrs_llmrec.workflow.stages on one run directory.

    <output_dir>/datasets/<dataset>-<hash>/       prepared dataset (shared by runs with the same data config)
    <output_dir>/features/<dataset>-<hash>-<hash>/ semantic features (shared likewise)
    <output_dir>/ctr/<dataset>-<hash>-<hash>/      CTR samples of the rankers (shared likewise)
    <output_dir>/<name>/                          the run directory:
        config.yaml, training-config.sha256       resolved config; hash of what identifies the training
        checkpoints/<n>-<stage>/latest|best/step-<step>/   checkpoint + state.json (one per stage)
        train_result.json   metrics.json   export/   report.html   timings.json
Each function takes (config, run_dir, options), where options carries the Beam options and the
process's place in a distributed job; the CLI only parses arguments and calls them.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Optional, Sequence

from tfrs_llmrec.atomic_files import write_json_atomically
from tfrs_llmrec.config import ExperimentConfig, to_dict
from tfrs_llmrec.data.dataset import PreparedDataset
from tfrs_llmrec.workflow import stages
from tfrs_llmrec.training.run_dir import METRICS_FILE, TIMINGS_FILE, read_train_result
from tfrs_llmrec.workflow.stages import StageError

log = logging.getLogger("tfrs_llmrec.workflow")

REPORT_FILE = "report.html"
EXPORT_DIR = "export"


def _beam_options(options) -> tuple:
    return tuple(options.beam_options) if options is not None else ()


def _distribution(options):
    return options.distribution if options is not None else None


def _record_time(run_dir: Path, stage: str, seconds: float) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / TIMINGS_FILE
    timings = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    timings[stage] = round(seconds, 2)
    write_json_atomically(path, timings)


def dataset_dir(config: ExperimentConfig, beam_options: Sequence[str] = (), distribution=None) -> Path:
    """The prepared dataset of this config (ingested now if it is missing)."""
    return stages.ingest(config, Path(config.output_dir), beam_options, distribution)


def features_dir(config: ExperimentConfig, dataset: Path, beam_options: Sequence[str] = (),
                 distribution=None) -> Optional[Path]:
    """The semantic features when the model or a baseline reads them (built now if missing), else None."""
    if not stages.needs_features(config):
        return None
    return stages.semantic_features(config, dataset, Path(config.output_dir), beam_options, distribution)


def ctr_dir(config: ExperimentConfig, dataset: Path, features: Optional[Path], beam_options: Sequence[str] = (),
            distribution=None) -> Optional[Path]:
    """The CTR samples when the model is a ranker (built now if missing), else None."""
    if not stages.is_ranker(config.model.name):
        return None
    return stages.ctr_samples(config, dataset, features, Path(config.output_dir), beam_options, distribution)


def _ranker_inputs(config: ExperimentConfig, distribution=None):
    """(dataset, features, CTR samples) directories, each built if missing."""
    dataset = dataset_dir(config, distribution=distribution)
    features = features_dir(config, dataset, distribution=distribution)
    return dataset, features, ctr_dir(config, dataset, features, distribution=distribution)


def run_data(config: ExperimentConfig, run_dir: Path, options=None) -> None:
    started = time.perf_counter()
    dataset_dir(config, _beam_options(options))
    _record_time(run_dir, "data", time.perf_counter() - started)


def run_features(config: ExperimentConfig, run_dir: Path, options=None) -> None:
    from tfrs_llmrec.data.features import SemanticFeatures

    started = time.perf_counter()
    dataset = dataset_dir(config)
    root = stages.semantic_features(config, dataset, Path(config.output_dir), _beam_options(options))
    features = SemanticFeatures.open(root)
    manifest = features.manifest
    items = manifest["item_semantic_ids"]
    log.info("features %s: encoder %s; item semantic IDs: usage %s, collision rate %.4f, reconstruction MSE %.5f",
             root, manifest["encoder"], items.get("usage_per_level"), items.get("collision_rate", float("nan")),
             items.get("reconstruction_mse", float("nan")))
    print(stages.nearest_neighbour_report(PreparedDataset.open(dataset), features.item_vectors["metadata"]))
    _record_time(run_dir, "features", time.perf_counter() - started)


def run_ctr(config: ExperimentConfig, run_dir: Path, options=None) -> None:
    if not stages.is_ranker(config.model.name):
        log.info("CTR samples skipped: %s is a retriever", config.model.name)
        return
    started = time.perf_counter()
    dataset = dataset_dir(config)
    root = ctr_dir(config, dataset, features_dir(config, dataset), _beam_options(options))
    log.info("CTR samples in %s", root)
    _record_time(run_dir, "ctr", time.perf_counter() - started)


def run_train(config: ExperimentConfig, run_dir: Path, options=None) -> None:
    """Trains the configured model under train.strategy; every process calls it, the chief writes."""
    started = time.perf_counter()
    distribution = _distribution(options)
    if distribution is None:
        from tfrs_llmrec.distributed import make_distribution

        distribution = make_distribution(config.train)
    dataset, features, ctr = _ranker_inputs(config, distribution)
    stages.train(config, dataset, features, run_dir, distribution, ctr_dir=ctr)
    if distribution.is_chief:
        _record_time(run_dir, "train", time.perf_counter() - started)


def run_evaluate(config: ExperimentConfig, run_dir: Path, options=None) -> None:
    dataset, features, ctr = _ranker_inputs(config)
    payload = stages.evaluate(config, dataset, features, run_dir, run_dir / METRICS_FILE, ctr_dir=ctr)
    _record_time(run_dir, "evaluate", sum(result["seconds"] for result in payload["models"].values()))


def run_export(config: ExperimentConfig, run_dir: Path, options=None) -> None:
    if not config.export.enabled:
        log.info("export skipped (disabled)")
        return
    started = time.perf_counter()
    if stages.is_ranker(config.model.name):
        dataset, features, ctr = _ranker_inputs(config)
        stages.export_ranker(config, dataset, ctr, features, run_dir, run_dir / EXPORT_DIR)
        _record_time(run_dir, "export", time.perf_counter() - started)
        return
    dataset = dataset_dir(config)
    stages.export(config, dataset, features_dir(config, dataset), run_dir, run_dir / EXPORT_DIR)
    _record_time(run_dir, "export", time.perf_counter() - started)


def run_report(config: ExperimentConfig, run_dir: Path, options=None) -> None:
    from tfrs_llmrec.evaluation.report import write_html_report

    metrics_path = run_dir / METRICS_FILE
    if not metrics_path.is_file():
        raise StageError(f"{metrics_path}: missing; run `llmrec evaluate` first")
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    training = read_train_result(run_dir)
    timings_path = run_dir / TIMINGS_FILE
    timings = json.loads(timings_path.read_text(encoding="utf-8")) if timings_path.is_file() else {}
    dataset = PreparedDataset.open(dataset_dir(config))
    runs = []
    for name, result in metrics["models"].items():
        trained_here = training.get("model") == name
        runs.append({"model": name, "summary": result["summary"], "config": to_dict(config),
                     "timings": {**(timings if trained_here else {}), "evaluate": result["seconds"]},
                     "history": training.get("history", {}) if trained_here else {}})
    stats = {key: value for key, value in dataset.stats.items() if not isinstance(value, list)}
    write_html_report(run_dir / REPORT_FILE, f"{config.name} ({metrics['split']} split)", runs, stats)
    print(f"report: {run_dir / REPORT_FILE}")
