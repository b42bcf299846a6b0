"""Validation recall@20 of one process against 2 Horovod ranks and 2 MultiWorkerMirrored workers, all
with the same global batch, for the ID two-tower and MotiR on MovieLens-100K.

Run with `make bench` or `.venv/bin/python -m pytest -m slow -s benchmarks/test_distributed_equivalence.py`.
Every run is the real CLI (`llmrec train` / `horovodrun ... llmrec train` / `llmrec launch`), then
`llmrec evaluate` on the full validation split. Printed: recall@20 and NDCG@20 per run and the
relative gap to the single process; the issue's target (within 2%) is reported, not asserted.
Runs go to $LLMREC_BENCH_OUTPUT (default: a temporary directory) so a table can be kept.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(7200)]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIGS = {"two_tower": "configs/demo.yaml", "motir": "configs/ml100k_motir.yaml"}
TARGET = 0.02


def run(command, env):
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]


def train_and_evaluate(model, engine, output, env):
    name = f"equivalence-{model}-{engine}"
    common = [CONFIGS[model], "--set", f"output_dir={output}", "--set", f"name={name}"]
    if engine == "single":
        run([str(BIN / "llmrec"), "train", *common], env)
    elif engine == "horovod":
        run([str(BIN / "horovodrun"), "-np", "2", "-H", "localhost:2", "--gloo", str(BIN / "llmrec"), "train",
             *common, "--set", "train.strategy=horovod"], env)
    else:
        run([str(BIN / "llmrec"), "launch", "--workers", "2", *common], env)
    run([str(BIN / "llmrec"), "evaluate", *common, "--set", f"train.strategy={engine}"], env)
    metrics = json.loads((Path(output) / name / "metrics.json").read_text())["models"][model]["summary"]["overall"]
    train = json.loads((Path(output) / name / "train_result.json").read_text())
    return {"recall@20": metrics["recall@20"], "ndcg@20": metrics["ndcg@20"], "seconds": train["seconds"],
            "epochs": train["epochs_completed"]}


def test_two_replicas_reach_the_single_process_recall():
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", TF_CPP_MIN_LOG_LEVEL="2")
    output = os.environ.get("LLMREC_BENCH_OUTPUT") or tempfile.mkdtemp(prefix="llmrec-equivalence-")
    rows = []
    for model in CONFIGS:
        single = train_and_evaluate(model, "single", output, env)
        for engine in ("single", "horovod", "multi_worker"):
            result = single if engine == "single" else train_and_evaluate(model, engine, output, env)
            gap = result["recall@20"] / single["recall@20"] - 1.0
            rows.append((model, engine, result, gap))
    print(f"\nML-100K validation, global batch 512 everywhere; target: |gap| <= {TARGET:.0%}")
    print(f"{'model':<10} {'engine':<13} {'recall@20':>9} {'ndcg@20':>8} {'gap':>7} {'epochs':>6} {'train s':>8}")
    for model, engine, result, gap in rows:
        print(f"{model:<10} {engine:<13} {result['recall@20']:9.4f} {result['ndcg@20']:8.4f} {gap:+7.2%} "
              f"{result['epochs']:6d} {result['seconds']:8.1f}")
