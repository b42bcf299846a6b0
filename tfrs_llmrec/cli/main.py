"""The `llmrec` command line. The CLI is the top layer: it may import anything; nothing imports it."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Tuple

from tfrs_llmrec._keras_env import use_legacy_keras

use_legacy_keras()

from tfrs_llmrec import __version__  # noqa: E402
from tfrs_llmrec.config import ConfigError, ExperimentConfig, dump_yaml, load_experiment  # noqa: E402
from tfrs_llmrec.serving.server_options import add_server_arguments  # noqa: E402

log = logging.getLogger("llmrec")


@dataclass(frozen=True)
class StageOptions:
    """Command-line settings that are not part of the experiment (they do not change results)."""

    beam_options: Tuple[str, ...] = ()
    # The process's place in a distributed job (tfrs_llmrec.training.Distribution); None: one process.
    distribution: Any = None

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True)
class Stage:
    """One step of the main job. `function` names a callable in tfrs_llmrec.workflow.run, imported
    only when a stage runs, so `--help` and `doctor` stay fast."""

    name: str
    summary: str
    function: str
    # Every process of a distributed job runs it (training); otherwise only the chief does.
    all_processes: bool = False

    def runner(self) -> Callable[[ExperimentConfig, Path, "StageOptions"], None]:
        from tfrs_llmrec.workflow import run as stages

        return getattr(stages, self.function)


STAGES: Sequence[Stage] = (
    Stage("data", "Beam ingestion: raw logs -> k-core, splits, vocabularies, TFRecords, stats", "run_data"),
    Stage("features", "Beam job: language-model vectors, LLM texts, RQ-VAE semantic IDs", "run_features"),
    Stage("ctr", "Beam job: the rankers' CTR samples (labels, behaviour sequences, attributes, activity)",
          "run_ctr"),
    Stage("train", "fit the configured model with checkpoints and early stopping", "run_train", all_processes=True),
    Stage("evaluate", "metrics.json: full-ranking metrics (retrievers) or AUC/GAUC/log loss (rankers), overall "
          "and head/tail", "run_evaluate"),
    Stage("export", "retrieval SavedModels (BruteForce, ScaNN) and item towers, or a ranker's scoring model, "
          "reloaded and checked", "run_export"),
    Stage("report", "HTML report with tables and plots", "run_report"),
)
STAGE_BY_NAME = {stage.name: stage for stage in STAGES}

DESCRIPTION = """\
tfrs_llmrec: train TensorFlow Recommenders models enriched with language-model semantics.

Every command that takes CONFIG reads a YAML file from configs/ (see configs/base.yaml);
`--set KEY.PATH=VALUE` overrides any key, e.g. `--set train.epochs=3`.
"""


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="experiment config (YAML)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (repeatable), e.g. --set train.epochs=3")
    parser.add_argument("--beam-option", dest="beam_options", action="append", default=[], metavar="OPTION",
                        help="a Beam pipeline option for the data jobs (repeatable), e.g. "
                             "--beam-option=--runner=DataflowRunner --beam-option=--project=P; "
                             "default: the local FnApiRunner")


def _add_restart_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--restart", action="store_true",
                        help="discard the run directory's checkpoints and outputs and start fresh (needed when "
                             "the config changed under the same name)")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmrec", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", default=os.environ.get("LLMREC_LOG_LEVEL", "INFO"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="logging level (default INFO)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    for stage in STAGES:
        if stage.name == "report":
            continue
        sub = commands.add_parser(stage.name, help=stage.summary, description=stage.summary)
        _add_config_arguments(sub)
        if stage.name == "train":
            _add_restart_argument(sub)

    launch = commands.add_parser(
        "launch", help="train with N local MultiWorkerMirroredStrategy workers (loopback ports, TF_CONFIG)",
        description="Start N `llmrec train` workers on this host, each with its TF_CONFIG, with "
                    "train.strategy=multi_worker; if one fails, the others are stopped and the launch fails.")
    launch.add_argument("--workers", type=int, required=True, help="number of worker processes")
    launch.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="stop every worker and fail after this long")
    _add_config_arguments(launch)
    _add_restart_argument(launch)

    serve = commands.add_parser(
        "serve", help="serve pushed SavedModel versions over TF Serving's REST API",
        description="Serve the newest version under --model_base_path (TF Serving's layout: numeric version "
                    "directories) with TF Serving's REST API: GET /v1/models/NAME[/metadata], POST "
                    "/v1/models/NAME:predict. Swaps to a newly pushed version without failing a request; drains "
                    "on SIGTERM. Loads ScaNN index models too.")
    add_server_arguments(serve)

    pipeline = commands.add_parser(
        "pipeline", help="run the TFX pipeline locally or compile it for Kubeflow Pipelines / Vertex AI",
        description="The TFX pipeline Ingest -> SemanticFeatures -> Trainer -> Evaluator -> IndexBuilder -> Pusher. "
                    "`run` executes it with LocalDagRunner (ML Metadata in SQLite; cached steps are reused) and "
                    "pushes a blessed model to <pipeline.serving_base>/<model>/<version>/; `compile` writes a "
                    "Kubeflow V2 PipelineJob JSON offline.")
    pipeline.add_argument("action", choices=["run", "compile"])
    pipeline.add_argument("--output", type=Path, help="compile: where to write the PipelineJob JSON")
    pipeline.add_argument("--image", help="compile: container image of every step (default pipeline.image)")
    _add_config_arguments(pipeline)

    run = commands.add_parser("run", help="the whole job: data -> features -> train -> evaluate -> "
                                          "export -> report",
                              description="Run every stage of an experiment in order.")
    _add_config_arguments(run)
    _add_restart_argument(run)
    run.add_argument("--dry-run", action="store_true", help="print the resolved config and the plan")
    run.add_argument("--seeds", type=_positive_int, metavar="N",
                     help="run the config with seeds seed, seed+1, ... as <name>-seed<S> (each kept when it "
                          "is already a finished run of this config) and write their mean and standard "
                          "deviation to <output_dir>/<name>-<N>seeds/metrics.json")

    tune = commands.add_parser(
        "tune", help="search the config's tune.space on the validation split and write the best config",
        description="Draw tune.trials combinations of tune.space (seeded), train each as <name>-tune/trial-<i> "
                    "evaluated on the validation split (never the test split), select the best validation "
                    "train.monitor, and write a config that includes CONFIG with the chosen values. A rerun "
                    "keeps finished trials.")
    _add_config_arguments(tune)
    _add_restart_argument(tune)
    tune.add_argument("--output", type=Path, help="where to write the best config "
                                                  "(default <output_dir>/<name>-tune/best.yaml)")

    commands.add_parser("doctor", help="verify the installed stack and print a table of checks",
                        description="Verify TF/Keras/TFRS/ScaNN/TFX/Beam (and optional Horovod).")
    return parser


def _configure_logging(level: str) -> None:
    """Our loggers at `level`; third-party libraries (TF, Beam, absl) only from WARNING unless DEBUG."""
    logging.basicConfig(level=logging.DEBUG if level == "DEBUG" else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for name in ("llmrec", "tfrs_llmrec", "beam_jobs", "pipelines"):
        logging.getLogger(name).setLevel(level)
    if level != "DEBUG":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _run_dir(config: ExperimentConfig) -> Path:
    return Path(config.output_dir) / config.name


def _claim(config: ExperimentConfig, options: StageOptions, restart: bool) -> None:
    """The chief records the config in the run directory (refusing another config's run); the
    other processes wait until it has."""
    from tfrs_llmrec.training.run_dir import claim_run_dir

    distribution = options.distribution
    if distribution is None or distribution.is_chief:
        claim_run_dir(config, _run_dir(config), restart=restart)
    if distribution is not None:
        distribution.barrier()


def _run_stage(stage: Stage, config: ExperimentConfig, options: StageOptions) -> None:
    distribution = options.distribution
    if stage.all_processes or distribution is None or distribution.is_chief:
        stage.runner()(config, _run_dir(config), options)


def command_run(config: ExperimentConfig, dry_run: bool, options: StageOptions, restart: bool) -> int:
    run_dir = _run_dir(config)
    if dry_run:
        print(dump_yaml(config), end="")
        for stage in STAGES:
            print(f"  {stage.name:<9} {stage.summary}")
        return EXIT_OK
    _claim(config, options, restart)
    log.info("run %s: resolved config in %s", config.name, run_dir / "config.yaml")
    for stage in STAGES:
        log.info("stage %s: %s", stage.name, stage.summary)
        _run_stage(stage, config, options)
    if options.distribution is None or options.distribution.is_chief:
        print(f"llmrec run: stages {', '.join(stage.name for stage in STAGES)} completed; outputs in {run_dir}")
    return EXIT_OK


def command_stage(stage: Stage, config: ExperimentConfig, options: StageOptions, restart: bool = False) -> int:
    if stage.name == "train":
        _claim(config, options, restart)
    _run_stage(stage, config, options)
    return EXIT_OK


def command_pipeline(args: argparse.Namespace, config: ExperimentConfig) -> int:
    from pipelines.runner import compile_kubeflow, run_local

    if args.action == "compile":
        if args.output is None:
            print("llmrec pipeline compile: --output PATH is required", file=sys.stderr)
            return EXIT_USAGE
        path = compile_kubeflow(config, args.output, image=args.image, beam_pipeline_args=args.beam_options)
        print(f"llmrec pipeline compile: wrote {path}")
        return EXIT_OK
    if args.output is not None or args.image is not None:
        print("llmrec pipeline run: --output and --image apply to `compile` only", file=sys.stderr)
        return EXIT_USAGE
    print(run_local(config, beam_pipeline_args=args.beam_options))
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.log_level)
    try:
        if args.command == "doctor":
            from tfrs_llmrec.cli.doctor import doctor

            return doctor()
        if args.command == "serve":
            from tfrs_llmrec.serving.server import serve

            options = {key: value for key, value in vars(args).items() if key not in ("command", "log_level")}
            if not Path(options["model_base_path"]).is_dir():
                print(f"llmrec serve: --model_base_path {options['model_base_path']}: not a directory",
                      file=sys.stderr)
                return EXIT_USAGE
            return serve(**options)
        if args.command == "launch":
            from tfrs_llmrec.cli.launch import launch_workers

            load_experiment(args.config, args.overrides)  # a bad config fails here, not in N workers
            return launch_workers(args.workers, args.config, args.overrides, args.beam_options, args.restart,
                                  args.timeout)
        config = load_experiment(args.config, args.overrides)
        if args.command == "tune" or (args.command == "run" and args.seeds is not None and not args.dry_run):
            from tfrs_llmrec.cli import experiments

            common = dict(beam_options=args.beam_options, log_level=args.log_level, restart=args.restart)
            if args.command == "tune":
                experiments.tune(args.config, args.overrides, config, args.output, **common)
            else:
                experiments.run_seeds(args.config, args.overrides, config, args.seeds, **common)
            return EXIT_OK
        distribution = None
        if args.command in ("train", "run") and not getattr(args, "dry_run", False):
            from tfrs_llmrec.distributed import make_distribution

            # Before any other TensorFlow work: MultiWorkerMirroredStrategy must configure collectives first.
            distribution = make_distribution(config.train)
        options = StageOptions(beam_options=tuple(args.beam_options), distribution=distribution)
        if args.command == "run":
            return command_run(config, args.dry_run, options, args.restart)
        if args.command == "pipeline":
            return command_pipeline(args, config)
        return command_stage(STAGE_BY_NAME[args.command], config, options, getattr(args, "restart", False))
    except ConfigError as error:
        print(f"llmrec: config error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:
        # Data, stage, checkpoint and strategy errors already name their file or key: one line, not a traceback.
        from tfrs_llmrec.workflow import StageError
        from tfrs_llmrec.data.errors import DataError
        from tfrs_llmrec.distributed import StrategyError
        from tfrs_llmrec.training import CheckpointError, Preempted
        from tfrs_llmrec.training.run_dir import RunConfigMismatch
        from tfrs_llmrec.cli.experiments import ChildRunFailed

        if isinstance(error, Preempted):
            print(f"llmrec {args.command}: {error}", file=sys.stderr)
            return Preempted.exit_code
        if isinstance(error, ChildRunFailed):
            print(f"llmrec {args.command}: {error}", file=sys.stderr)
            return EXIT_FAILURE
        if isinstance(error, (RunConfigMismatch, StrategyError)):
            print(f"llmrec {args.command}: {error}", file=sys.stderr)
            return EXIT_USAGE
        if not isinstance(error, (DataError, StageError, CheckpointError)):
            raise
        print(f"llmrec {args.command}: {error}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
