"""Aggregates finished runs into one metrics.json, as `llmrec run --seeds N` does:

    python scripts/aggregate_runs.py runs/<name>-3seeds runs/<name>-seed42 runs/<name>-seed43 runs/<name>-seed44

For runs that `--seeds` cannot start itself: seeds launched one by one under Horovod or
`llmrec launch`, zero-shot runs whose source run differs per seed, or cascades whose retriever run
does (each seed's ranker evaluated again with `cascade.retriever_run` set to that seed's
retriever). Each run's seed is read from its config.yaml; the runs must have evaluated the same
split.
"""

import sys
from pathlib import Path

from tfrs_llmrec.config import ConfigError, load_experiment
from tfrs_llmrec.workflow.seeds import MissingRunMetricsError, aggregate_runs, write_aggregate


def main(argv) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out_dir, run_dirs = Path(argv[0]), [Path(run) for run in argv[1:]]
    try:
        seeds = [load_experiment(run / "config.yaml").seed for run in run_dirs]
        path = write_aggregate(aggregate_runs(run_dirs, seeds, out_dir.name), out_dir)
    except (ConfigError, MissingRunMetricsError) as error:
        print(f"aggregate_runs: {error}", file=sys.stderr)
        return 1
    print(f"aggregate_runs: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
