"""Runs AKT-Rec's ablations (the paper's table) on one config and prints their table:

    python scripts/akt_rec_ablations.py configs/tuned/ml100k_akt_rec.yaml --seeds 3 --set eval.split=test

Each variant is one `llmrec run CONFIG --set name=<config name>-<variant> --set <switch>` (the
commands are printed first, so any one can be rerun alone); finished runs are reused. With
`--seeds N` each variant is `llmrec run --seeds N` and its row is the seed aggregate;
`--variants` runs a subset (a `full` row already run as the plain config can be left out and
its aggregate passed to `ctr_results_table.py` beside the others); every `--set` goes to every
variant."""

import argparse
import subprocess
import sys
from pathlib import Path


VARIANTS = {
    "full": [],
    "no-individual": ["model.akt_rec.use_individual_embedding=false"],
    "no-cluster": ["model.akt_rec.use_cluster_embedding=false"],
    "no-cgae-gate": ["model.akt_rec.use_cgae_gate=false"],
    "no-instance-view": ["model.akt_rec.use_instance_view=false"],
    "no-cluster-view": ["model.akt_rec.use_cluster_view=false"],
    "no-hfa-gate": ["model.akt_rec.use_hfa_gate=false"],
    "equal-lambdas": ["model.akt_rec.lambda1=0.2", "model.akt_rec.lambda2=0.2"],
    "no-orthogonality": ["model.akt_rec.orthogonality_weight=0"],
}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--seeds", type=int, default=None, metavar="N")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated subset of {', '.join(VARIANTS)}")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    args.variants = args.variants.split(",")
    unknown = [variant for variant in args.variants if variant not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    if args.seeds is not None and args.seeds < 1:
        parser.error("--seeds must be at least 1")
    return args


def variant_commands(llmrec, config, base_name, output_dir, variants, seeds, overrides):
    """(command, the run directory its table row reads) per variant."""
    from tfrs_llmrec.workflow.seeds import aggregate_dir_name

    planned = []
    for variant in variants:
        name = f"{base_name}-{variant}"
        command = [llmrec, "run", str(config), "--set", f"name={name}", "--set", "export.enabled=false"]
        for switch in [*overrides, *VARIANTS[variant]]:
            command += ["--set", switch]
        row_dir = Path(output_dir) / name
        if seeds is not None:
            command += ["--seeds", str(seeds)]
            row_dir = Path(output_dir) / aggregate_dir_name(name, seeds)
        planned.append((command, row_dir))
    return planned


def main(argv) -> int:
    args = parse_args(argv)
    llmrec = str(Path(sys.executable).with_name("llmrec"))
    from tfrs_llmrec.config import load_experiment

    base = load_experiment(args.config, args.overrides)
    planned = variant_commands(llmrec, args.config, base.name, base.output_dir, args.variants, args.seeds,
                               args.overrides)
    for command, _ in planned:
        print(" ".join(command), flush=True)
    for (command, _), variant in zip(planned, args.variants):
        if subprocess.run(command, stdout=subprocess.DEVNULL).returncode != 0:
            print(f"{variant}: failed", file=sys.stderr)
            return 1
    subprocess.run([sys.executable, str(Path(__file__).with_name("ctr_results_table.py")),
                    *(str(row_dir) for _, row_dir in planned)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
