"""The issue's user path with the real commands: `llmrec pipeline run` pushes a blessed version,
`llmrec serve` answers it in TF Serving's format and stops cleanly on SIGTERM; `llmrec pipeline
compile` writes a PipelineJob."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tfrs_llmrec.cli.launch import free_loopback_ports
from tfrs_llmrec.config import load_experiment
from tfrs_llmrec.data.dataset import PreparedDataset, prepared_dataset_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO = REPO_ROOT / "configs" / "demo.yaml"
LLMREC = [str(Path(sys.executable).with_name("llmrec"))]
NAME = "demo-ml100k-two-tower"
OVERRIDES = ["train.epochs=1", "export.top_k=10", "export.recall_sample_users=200"]


def sets(output_dir):
    return [argument for override in [f"output_dir={output_dir}", *OVERRIDES] for argument in ("--set", override)]


def environment():
    env = {key: value for key, value in os.environ.items() if key != "TF_USE_LEGACY_KERAS"}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    output = tmp_path_factory.mktemp("pipeline-cli")
    result = subprocess.run(LLMREC + ["pipeline", "run", str(DEMO), *sets(output)], capture_output=True, text=True,
                            env=environment(), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return output, result.stdout


def call(port, path, body=None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_pipeline_run_pushes_version_1(pushed):
    output, stdout = pushed
    # The run's summary names whichever gate refused the push.
    assert f"pushed version 1 to {output / 'serving' / NAME / '1'}" in stdout, stdout[-2000:]
    for model in (NAME, f"{NAME}-scann", f"{NAME}-item-tower"):
        assert sorted(path.name for path in (output / "serving" / model).iterdir()) == ["1"]
        assert (output / "serving" / model / "1" / "saved_model.pb").is_file()


def test_serve_answers_the_pushed_version_in_tf_serving_format(pushed):
    output, _ = pushed
    config = load_experiment(DEMO)
    # The pipeline's Ingest wrote the prepared dataset inside its output artefact.
    name = prepared_dataset_dir(config.data, output).name
    dataset = PreparedDataset.open(next(path.parent for path in output.rglob(f"{name}/manifest.json")))
    histories, _ = dataset.query_histories("valid")
    item_ids, user_ids = dataset.item_ids(), dataset.user_ids()
    history = [item_ids[item] for item in histories[0] if item >= 0]
    (port,) = free_loopback_ports(1)
    server = subprocess.Popen(LLMREC + ["serve", "--model_base_path", str(output / "serving" / NAME),
                                            "--port", str(port), "--host", "127.0.0.1"],
                              env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(120):
            try:
                status, body = call(port, f"/v1/models/{NAME}")
                if status == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None, server.stdout.read()
            time.sleep(1)
        assert body == {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                                  "status": {"error_code": "OK", "error_message": ""}}]}
        status, rows = call(port, f"/v1/models/{NAME}:predict",
                            {"instances": [{"user_id": user_ids[0], "history": history}]})
        assert status == 200
        returned = rows["predictions"][0]["item_ids"]
        assert len(returned) == 10 and set(returned) <= set(item_ids) and not set(returned) & set(history)
        status, columns = call(port, f"/v1/models/{NAME}/versions/1:predict",
                               {"inputs": {"user_id": [user_ids[0]], "history": [history]}})
        assert status == 200 and columns["outputs"]["item_ids"][0] == returned
        status, error = call(port, f"/v1/models/{NAME}/versions/2:predict", {"instances": [{"user_id": "x"}]})
        assert status == 404 and "error" in error
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0


def test_pipeline_compile_writes_a_pipeline_job(tmp_path):
    target = tmp_path / "pipeline.json"
    result = subprocess.run(LLMREC + ["pipeline", "compile", str(DEMO), "--output", str(target),
                                      "--image", "registry.example/llmrec:1.2.3", *sets(tmp_path)],
                            capture_output=True, text=True, env=environment(), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    job = json.loads(target.read_text())
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
    images = {spec["container"]["image"] for spec in executors.values() if "container" in spec}  # resolvers have none
    assert len(images) == 1 and images == {"registry.example/llmrec:1.2.3"}
