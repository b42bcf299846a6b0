"""Runs AKT-Rec's ablations (the paper's table) on one config and prints their table:

    python scripts/akt_rec_ablations.py configs/ml100k_akt_rec.yaml

Each variant is one `llmrec run CONFIG --set name=<config name>-<variant> --set <switch>` (the
commands are printed first, so any one can be rerun alone); finished runs are reused."""

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


def main(argv) -> int:
    config = Path(argv[0])
    llmrec = str(Path(sys.executable).with_name("llmrec"))
    from tfrs_llmrec.config import load_experiment

    base = load_experiment(config)
    runs = []
    for variant, switches in VARIANTS.items():
        name = f"{base.name}-{variant}"
        command = [llmrec, "run", str(config), "--set", f"name={name}", "--set", "export.enabled=false"]
        for switch in switches:
            command += ["--set", switch]
        print(" ".join(command), flush=True)
        if subprocess.run(command, stdout=subprocess.DEVNULL).returncode != 0:
            print(f"{variant}: failed", file=sys.stderr)
            return 1
        runs.append(str(Path(base.output_dir) / name))
    subprocess.run([sys.executable, str(Path(__file__).with_name("ctr_results_table.py")), *runs], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
