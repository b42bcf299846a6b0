"""Runs the sequential / multi-interest family on one dataset and prints its results table:

    python scripts/sequence_results.py configs/ml100k_sequence.yaml --protocol both
    python scripts/sequence_results.py configs/ml100k_sequence.yaml --ablations --sweeps

The family is the base config (the ID two-tower on the history), SASRec, MIND, ComiRec-SA, REMI
and EIMF on each backbone: configs/<prefix>_{sasrec,mind,comirec_sa,remi,eimf}.yaml beside the
base <prefix>_sequence.yaml. `--protocol users` adds `--set data.split=users` (EIMF's protocol).
`--ablations` runs EIMF without alignment, without prediction and without target attention;
`--sweeps` runs gamma and (alpha, beta); `--variants-only` skips the family's own runs (their table
rows appear once they exist); `--table-only` runs nothing and prints the table of what exists. Each run is one `llmrec run CONFIG --set ...` command,
printed first so any one can be rerun alone; finished runs are reused. `--dry-run` only prints.
The table reads each run's metrics.json (the split is the config's eval.split); a missing run is a row
of nan, and runs of different splits in one table are refused."""

import argparse
import subprocess
import sys
from pathlib import Path

MODELS = ("sasrec", "mind", "comirec_sa", "remi")
ABLATIONS = {"no-alignment": ["model.eimf.use_alignment=false"],
             "no-prediction": ["model.eimf.use_prediction=false"],
             "no-target-attention": ["model.eimf.use_target_attention=false"]}
SWEEPS = {**{f"gamma-{gamma}": [f"model.eimf.gamma={gamma}"] for gamma in (0.0, 0.01, 0.05, 0.5, 1.0)},
          **{f"alpha-{alpha}-beta-{beta}": [f"model.eimf.alpha={alpha}", f"model.eimf.beta={beta}"]
             for alpha, beta in ((0.5, 0.0), (0.375, 0.125), (0.125, 0.375), (0.0, 0.5))}}
COLUMNS = ("recall@20", "ndcg@20", "hr@20", "recall@50", "ndcg@50", "hr@50")


def backbone_settings(config: Path, eimf: Path) -> list:
    """--set switches giving EIMF a backbone's own sequence settings (readout, REMI's terms)."""
    from tfrs_llmrec.config import load_experiment
    from tfrs_llmrec.config.loader import to_dict

    own, current = (to_dict(load_experiment(path).model.sequence) for path in (config, eimf))
    return [f"model.sequence.{key}={value}" for key, value in own.items() if current[key] != value]


def family(base: Path, protocol: str, ablations: bool, sweeps: bool, variants_only: bool = False):
    """(run name, config, switches, whether to run it) of every run."""
    from tfrs_llmrec.config import load_experiment

    prefix = base.name[:-len("_sequence.yaml")]
    suffix = "-users" if protocol == "users" else ""
    protocol_switches = ["data.split=users"] if protocol == "users" else []
    base_name = load_experiment(base).name
    runs = [(base_name + suffix, base, protocol_switches, not variants_only)]
    stem = base_name[:-len("-sequence-two-tower")]
    for model in MODELS:
        config = base.with_name(f"{prefix}_{model}.yaml")
        runs.append((f"{load_experiment(config).name}{suffix}", config, protocol_switches, not variants_only))
    eimf = base.with_name(f"{prefix}_eimf.yaml")
    default_backbone = load_experiment(eimf).model.eimf.backbone
    for backbone in ("mind", "comirec_sa", "remi"):
        switches = [f"model.eimf.backbone={backbone}", *backbone_settings(base.with_name(f"{prefix}_{backbone}.yaml"), eimf)]
        runs.append((f"{stem}-eimf-{backbone.replace('_', '-')}{suffix}", eimf, protocol_switches + switches,
                     not variants_only))
    default = [f"model.eimf.backbone={default_backbone}",
               *backbone_settings(base.with_name(f"{prefix}_{default_backbone}.yaml"), eimf)]
    variants = {**(ABLATIONS if ablations else {}), **(SWEEPS if sweeps else {})}
    for variant, switches in variants.items():
        runs.append((f"{stem}-eimf-{variant}{suffix}", eimf, protocol_switches + default + switches, True))
    return runs


def row(metrics: dict, model: str) -> list:
    """One model's cells from a run's metrics.json."""
    summary = metrics["models"][model]["summary"]
    values = [summary["overall"][column] for column in COLUMNS]
    return values + [summary["head_items"]["recall@20"], summary["tail_items"]["recall@20"]]


def main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("--protocol", choices=["leave_one_out", "users", "both"], default="leave_one_out")
    parser.add_argument("--ablations", action="store_true")
    parser.add_argument("--sweeps", action="store_true")
    parser.add_argument("--variants-only", action="store_true")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--table-only", action="store_true", help="print the table of the runs that exist")
    args = parser.parse_args(argv)
    from tfrs_llmrec.config import load_experiment
    from tfrs_llmrec.training.run_dir import METRICS_FILE
    from tfrs_llmrec.workflow.seeds import load_run_metrics

    output_dir = Path(load_experiment(args.base).output_dir)
    llmrec = str(Path(sys.executable).with_name("llmrec"))
    protocols = ["leave_one_out", "users"] if args.protocol == "both" else [args.protocol]
    tables = []
    for protocol in protocols:
        runs = family(args.base, protocol, args.ablations, args.sweeps, args.variants_only)
        for name, config, switches, launch in runs:
            if not launch:
                continue
            command = [llmrec, "run", str(config), "--set", f"name={name}", "--set", "export.enabled=false"]
            for switch in switches:
                command += ["--set", switch]
            if args.table_only:
                continue
            print(" ".join(command), flush=True)
            if not args.dry_run and subprocess.run(command, stdout=subprocess.DEVNULL).returncode != 0:
                print(f"{name}: failed", file=sys.stderr)
                return 1
        tables.append((protocol, runs))
    if args.dry_run:
        return 0
    header = ("run", *COLUMNS, "recall@20 head", "recall@20 tail")
    for protocol, runs in tables:
        finished = [name for name, *_ in runs if (output_dir / name / METRICS_FILE).is_file()]
        metrics_of = dict(zip(finished, load_run_metrics([output_dir / name for name in finished])))
        splits = sorted({metrics["split"] for metrics in metrics_of.values()})
        if len(splits) > 1:
            print(f"sequence_results: the {protocol} protocol's runs report different splits "
                  f"({', '.join(splits)}); rerun them on one split", file=sys.stderr)
            return 2
        lines = []
        for index, (name, config, _, _) in enumerate(runs):
            if name not in metrics_of:
                lines.append([name] + [float("nan")] * (len(header) - 1))
                continue
            if index == 0:
                lines.append(["pop", *row(metrics_of[name], "pop")])
            lines.append([name, *row(metrics_of[name], load_experiment(config).model.name)])
        print(f"\n{protocol} protocol, {splits[0] if splits else '-'} split")
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for line in lines:
            print("| " + " | ".join([line[0]] + [f"{value:.4f}" for value in line[1:]]) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
