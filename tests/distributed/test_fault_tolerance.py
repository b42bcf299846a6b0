"""Real kills of real training processes on MovieLens-100K (shuffled data, 32 sampled negatives per
batch, step checkpoints): a rerun of the same command must end bit-identical to an uninterrupted
run, and a dead worker must fail the job quickly instead of hanging it."""

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import tensorflow as tf

from tests.distributed.conftest import base_env, horovodrun

SETTINGS = ["train.epochs=2", "train.early_stopping_patience=5", "model.num_sampled_negatives=32",
            "train.checkpoint_every_steps=20", "train.batch_size=512"]


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fault-tolerance")


def llmrec():
    return str(Path(sys.executable).with_name("llmrec"))


def train_command(repo, output, name, *extra):
    command = [llmrec(), "train", str(repo / "configs" / "demo.yaml"), "--set", f"output_dir={output}",
               "--set", f"name={name}"]
    for setting in [*SETTINGS, *extra]:
        command += ["--set", setting]
    return command


def final_weights(output, name):
    """Every tensor of the run's final (best) checkpoint."""
    best = sorted((Path(output) / name / "checkpoints" / "1-train" / "best").glob("step-*"))[-1]
    reader = tf.train.load_checkpoint(str(best / "ckpt"))
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map() if "OBJECT_GRAPH" not in key}


def assert_same_weights(first, second):
    assert sorted(first) == sorted(second)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)


def checkpoint_steps(output, name):
    latest = Path(output) / name / "checkpoints" / "1-train" / "latest"
    return sorted(int(path.name.split("-")[1]) for path in latest.glob("step-*")) if latest.is_dir() else []


def wait_for_checkpoint(process, output, name, timeout=300):
    started = time.monotonic()
    while not checkpoint_steps(output, name):
        assert process.poll() is None, "training ended before its first checkpoint"
        assert time.monotonic() - started < timeout
        time.sleep(0.1)


def resumed_step(stderr):
    for line in stderr.splitlines():
        if "resuming" in line and "from step" in line:
            return int(line.split("from step")[1].split()[0])
    return None


@pytest.fixture(scope="module")
def uninterrupted(repo_root_path, output_dir):
    done = subprocess.run(train_command(repo_root_path, output_dir, "straight"), capture_output=True, text=True,
                          env=base_env(), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return final_weights(output_dir, "straight")


@pytest.fixture(scope="module")
def repo_root_path():
    return Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kill_signal", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_resumes_bit_identical(repo_root_path, output_dir, uninterrupted, kill_signal):
    name = f"killed-{kill_signal.name}"
    command = train_command(repo_root_path, output_dir, name)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=base_env())
    wait_for_checkpoint(process, output_dir, name)
    time.sleep(random.Random(kill_signal).uniform(0.2, 1.5))  # a seeded "random" step
    process.send_signal(kill_signal)
    _, stderr = process.communicate(timeout=300)
    if kill_signal == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
    else:  # checkpoints the finished step, says how to resume, exits 143
        assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
        assert "SIGTERM: stopped after step" in stderr and "rerun the same command to resume" in stderr
    stopped_at = checkpoint_steps(output_dir, name)[-1]
    assert 0 < stopped_at < 380  # 2 epochs of 190 steps: it really stopped mid-run

    again = subprocess.run(command, capture_output=True, text=True, env=base_env(), timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert resumed_step(again.stderr) == stopped_at
    assert_same_weights(final_weights(output_dir, name), uninterrupted)


def test_changed_config_is_refused_and_restart_starts_fresh(repo_root_path, output_dir, uninterrupted):
    command = train_command(repo_root_path, output_dir, "straight", "train.learning_rate=0.002")
    refused = subprocess.run(command, capture_output=True, text=True, env=base_env(), timeout=300)
    assert refused.returncode == 2
    message = refused.stderr.strip().splitlines()[-1]
    assert "holds a run of another config" in message and "train.learning_rate: 0.001 -> 0.002" in message
    assert "--restart" in message and "Traceback" not in refused.stderr
    assert_same_weights(final_weights(output_dir, "straight"), uninterrupted)  # untouched

    restarted = subprocess.run(command[:1] + ["train"] + command[2:] + ["--restart", "--set", "train.epochs=1"],
                               capture_output=True, text=True, env=base_env(), timeout=600)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert resumed_step(restarted.stderr) is None
    assert checkpoint_steps(output_dir, "straight")[-1] == 190


def test_multi_worker_without_tf_config_is_one_clear_error(repo_root_path, output_dir):
    env = base_env()
    env.pop("TF_CONFIG", None)
    done = subprocess.run(train_command(repo_root_path, output_dir, "no-cluster", "train.strategy=multi_worker"),
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "llmrec train: train.strategy: 'multi_worker' needs TF_CONFIG (a cluster spec and this task); start the "
        "workers with `llmrec launch --workers N CONFIG` or a TFJob")


def horovod_children(runner: subprocess.Popen, rank: int):
    for child in psutil.Process(runner.pid).children(recursive=True):
        try:
            if child.environ().get("HOROVOD_RANK") == str(rank) and "train" in child.cmdline():
                return child
        except psutil.Error:
            continue
    return None


def test_horovod_rank_killed_mid_epoch_fails_fast_and_resumes_identically(repo_root_path, output_dir):
    def horovod(name):
        return [horovodrun(), "-np", "2", "-H", "localhost:2", "--gloo",
                *train_command(repo_root_path, output_dir, name, "train.strategy=horovod")]

    straight = subprocess.run(horovod("hvd-straight"), capture_output=True, text=True, env=base_env(), timeout=900)
    assert straight.returncode == 0, straight.stdout[-3000:]

    runner = subprocess.Popen(horovod("hvd-killed"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=base_env())
    wait_for_checkpoint(runner, output_dir, "hvd-killed")
    time.sleep(1.5)
    rank = horovod_children(runner, 1)
    assert rank is not None
    killed_at = time.monotonic()
    rank.send_signal(signal.SIGKILL)
    output, _ = runner.communicate(timeout=180)  # bounded: the job fails, it does not hang
    assert runner.returncode != 0
    assert time.monotonic() - killed_at < 180
    stopped_at = checkpoint_steps(output_dir, "hvd-killed")[-1]
    assert stopped_at < 380

    again = subprocess.run(horovod("hvd-killed"), capture_output=True, text=True, env=base_env(), timeout=900)
    assert again.returncode == 0, again.stdout[-3000:]
    # Both ranks resumed from the chief's checkpoint.
    assert (again.stdout + again.stderr).count(f"from step {stopped_at}") == 2
    assert_same_weights(final_weights(output_dir, "hvd-killed"), final_weights(output_dir, "hvd-straight"))


def test_launch_stops_every_worker_when_one_dies(repo_root_path, output_dir):
    command = [llmrec(), "launch", "--workers", "2", *train_command(repo_root_path, output_dir, "mwms-killed")[2:]]
    launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=base_env())
    wait_for_checkpoint(launcher, output_dir, "mwms-killed")
    workers = [child for child in psutil.Process(launcher.pid).children() if "train" in child.cmdline()]
    assert len(workers) == 2
    killed_at = time.monotonic()
    workers[1].send_signal(signal.SIGKILL)
    _, stderr = launcher.communicate(timeout=120)
    assert launcher.returncode == 1 and time.monotonic() - killed_at < 120
    assert "llmrec launch: worker 1 exited with code -9; stopped the other workers" in stderr
    assert not workers[0].is_running() or workers[0].status() == psutil.STATUS_ZOMBIE
