"""The `llmrec` command line. The CLI is the top layer: it may import anything; nothing imports it."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from tfrs_llmrec._keras_env import use_legacy_keras

use_legacy_keras()

from tfrs_llmrec import __version__  # noqa: E402
from tfrs_llmrec.atomic_files import write_atomically  # noqa: E402
from tfrs_llmrec.config import ConfigError, ExperimentConfig, dump_yaml, load_experiment  # noqa: E402

log = logging.getLogger("llmrec")


@dataclass(frozen=True)
class StageOptions:
    """Command-line settings that are not part of the experiment (they do not change results)."""

    beam_options: Tuple[str, ...] = ()

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


@dataclass(frozen=True)
class Stage:
    """One step of the main job. `function` names a callable in tfrs_llmrec.cli.stages, imported
    only when a stage runs, so `--help` and `doctor` stay fast."""

    name: str
    summary: str
    function: str

    def runner(self) -> Callable[[ExperimentConfig, Path, "StageOptions"], None]:
        from tfrs_llmrec.cli import stages

        return getattr(stages, self.function)


STAGES: Sequence[Stage] = (
    Stage("data", "Beam ingestion: raw logs -> k-core, splits, vocabularies, TFRecords, stats", "run_data"),
    Stage("features", "Beam job: language-model vectors, LLM texts, RQ-VAE semantic IDs", "run_features"),
    Stage("train", "fit the configured model with checkpoints and early stopping", "run_train"),
    Stage("evaluate", "full-ranking metrics, overall and head/tail, metrics.json", "run_evaluate"),
    Stage("export", "query SavedModel plus BruteForce/ScaNN index SavedModels, reloaded and checked",
          "run_export"),
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

    serve = commands.add_parser("serve", help="serve an exported model's top-K signature over HTTP",
                                description="Serve an exported query+index SavedModel over HTTP.")
    serve.add_argument("export_dir", type=Path, help="directory written by `llmrec export`")
    serve.add_argument("--port", type=int, default=8501)

    pipeline = commands.add_parser("pipeline", help="build, run or compile the TFX pipeline",
                                   description="TFX pipeline: run locally (LocalDagRunner) or "
                                               "compile for Kubeflow.")
    pipeline.add_argument("action", choices=["run", "compile"])
    _add_config_arguments(pipeline)

    run = commands.add_parser("run", help="the whole job: data -> features -> train -> evaluate -> "
                                          "export -> report",
                              description="Run every stage of an experiment in order.")
    _add_config_arguments(run)
    run.add_argument("--dry-run", action="store_true", help="print the resolved config and the plan")

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


def _write_resolved_config(config: ExperimentConfig, run_dir: Path) -> Path:
    text = dump_yaml(config)
    return write_atomically(run_dir / "config.yaml", lambda handle: handle.write(text))


def command_run(config: ExperimentConfig, dry_run: bool, options: "StageOptions") -> int:
    run_dir = _run_dir(config)
    if dry_run:
        print(dump_yaml(config), end="")
        for stage in STAGES:
            print(f"  {stage.name:<9} {stage.summary}")
        return EXIT_OK
    written = _write_resolved_config(config, run_dir)
    log.info("run %s: resolved config written to %s", config.name, written)
    for stage in STAGES:
        log.info("stage %s: %s", stage.name, stage.summary)
        stage.runner()(config, run_dir, options)
    print(f"llmrec run: stages {', '.join(stage.name for stage in STAGES)} completed; outputs in {run_dir}")
    return EXIT_OK


def command_stage(stage: Stage, config: ExperimentConfig, options: "StageOptions") -> int:
    stage.runner()(config, _run_dir(config), options)
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.log_level)
    try:
        if args.command == "doctor":
            from tfrs_llmrec.cli.doctor import doctor

            return doctor()
        if args.command == "serve":
            print("llmrec serve: not available yet (lands with the serving/TFX issue)", file=sys.stderr)
            return EXIT_UNAVAILABLE
        config = load_experiment(args.config, args.overrides)
        options = StageOptions(beam_options=tuple(args.beam_options))
        if args.command == "run":
            return command_run(config, args.dry_run, options)
        if args.command == "pipeline":
            print("llmrec pipeline: not available yet (lands with the TFX pipeline issue)", file=sys.stderr)
            return EXIT_UNAVAILABLE
        return command_stage(STAGE_BY_NAME[args.command], config, options)
    except ConfigError as error:
        print(f"llmrec: config error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:
        # Data and stage errors already name their file: one line, not a traceback.
        from tfrs_llmrec.cli.stages import StageError
        from tfrs_llmrec.data.errors import DataError

        if not isinstance(error, (DataError, StageError)):
            raise
        print(f"llmrec {args.command}: {error}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
