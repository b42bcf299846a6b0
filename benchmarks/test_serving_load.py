"""`llmrec serve` under load: p50/p99 latency and QPS of top-100 retrieval on Amazon Games, the ScaNN
model next to the BruteForce one, at concurrency 1, 8 and 32, measured side by side in one run.

Run with `make bench` or `.venv/bin/python -m pytest -m slow -s benchmarks/test_serving_load.py`.
The models come from `llmrec run configs/amazon_games_two_tower.yaml` (trained once, then reused
from runs/), pushed to a temporary serving base as version 1 of `amazon` (BruteForce) and
`amazon-scann`; each is served by its own `python -m tfrs_llmrec.serving.server` process, one at a
time, so the two never share the 2 cores. Requests are real: one user per request, with the
user's validation-time history (up to 50 items) in raw IDs, cycling over 2,000 users.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from serving_load import measure_latency  # benchmarks/ is on sys.path under pytest (rootdir-less import)
from tfrs_llmrec.cli.launch import free_loopback_ports

pytestmark = [pytest.mark.slow, pytest.mark.timeout(7200)]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIG = "configs/amazon_games_two_tower.yaml"
CONCURRENCY = (1, 8, 32)
SECONDS_PER_POINT = 20.0


def exported_run(env) -> Path:
    """The run directory with a fresh export: `llmrec export` when the model is trained, else `llmrec run`."""
    run_dir = REPO / "runs" / "amazon-games-two-tower"
    command = "export" if (run_dir / "train_result.json").is_file() else "run"
    done = subprocess.run([str(BIN / "llmrec"), command, CONFIG], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=7200)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return run_dir


def requests(run_dir: Path, count: int = 2000):
    from tfrs_llmrec.config import load_experiment
    from tfrs_llmrec.data.dataset import PreparedDataset, prepared_dataset_dir

    config = load_experiment(REPO / CONFIG)
    dataset = PreparedDataset.open(prepared_dataset_dir(config.data, REPO / config.output_dir))
    histories, _ = dataset.query_histories("valid")
    item_ids, user_ids = np.asarray(dataset.item_ids(), object), dataset.user_ids()
    users = np.random.default_rng(0).choice(len(user_ids), count, replace=False)
    return [{"instances": [{"user_id": user_ids[user],
                            "history": [str(item_ids[item]) for item in histories[user] if item >= 0]}]}
            for user in users]


def wait_until_available(url: str, process, timeout_s: float = 300.0) -> None:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        assert process.poll() is None, "the server exited"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if json.load(response)["model_version_status"][0]["state"] == "AVAILABLE":
                    return
        except OSError:
            pass
        time.sleep(1.0)
    raise TimeoutError(url)


def serve_and_measure(base: Path, name: str, payloads, env) -> list:
    (port,) = free_loopback_ports(1)
    process = subprocess.Popen([sys.executable, "-m", "tfrs_llmrec.serving.server", "--model_base_path",
                                str(base / name), "--port", str(port), "--host", "127.0.0.1", "--threads", "32"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_available(f"http://127.0.0.1:{port}/v1/models/{name}", process)
        url = f"http://127.0.0.1:{port}/v1/models/{name}:predict"
        measure_latency(url, payloads[:50], concurrency=1, num_requests=50)  # warm-up
        return [measure_latency(url, payloads, concurrency=concurrency, duration_s=SECONDS_PER_POINT)
                for concurrency in CONCURRENCY]
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_scann_and_brute_force_latency_and_qps_under_load():
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", TF_CPP_MIN_LOG_LEVEL="2",
               GLOG_minloglevel="2")
    run_dir = exported_run(env)
    export = json.loads((run_dir / "export" / "export.json").read_text())
    payloads = requests(run_dir)
    base = Path(tempfile.mkdtemp(prefix="llmrec-serving-"))
    try:
        for name, directory in (("amazon", "retrieval"), ("amazon-scann", "retrieval_scann")):
            shutil.copytree(run_dir / "export" / directory, base / name / "1")
        results = {name: serve_and_measure(base, name, payloads, env) for name in ("amazon", "amazon-scann")}
    finally:
        shutil.rmtree(base, ignore_errors=True)

    scann, k = export["models"]["scann"], export["k"]
    print(f"\nAmazon Games, two-tower, top-{k} over {export['num_items']} items, one user per request, "
          f"{SECONDS_PER_POINT:.0f} s per point; ScaNN {scann['num_leaves']} leaves, {scann['num_leaves_to_search']} "
          f"searched, recall@{k} vs exact {scann[f'recall@{k}_vs_exact']:.4f}")
    print("| concurrency | BruteForce p50 / p99 ms | BruteForce QPS | ScaNN p50 / p99 ms | ScaNN QPS | ScaNN/BF QPS |")
    print("|---|---|---|---|---|---|")
    for position, concurrency in enumerate(CONCURRENCY):
        brute, approximate = results["amazon"][position], results["amazon-scann"][position]
        print(f"| {concurrency} | {brute['p50_ms']:.1f} / {brute['p99_ms']:.1f} | {brute['qps']:.0f} | "
              f"{approximate['p50_ms']:.1f} / {approximate['p99_ms']:.1f} | {approximate['qps']:.0f} | "
              f"{approximate['qps'] / brute['qps']:.2f} |")
    for name, points in results.items():
        assert all(point["errors"] == 0 for point in points), (name, points)
