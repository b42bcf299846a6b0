"""Launching real 2-process jobs: horovodrun with Gloo, and MultiWorkerMirroredStrategy workers."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tfrs_llmrec.cli.launch import local_tf_configs

WORKER = Path(__file__).with_name("equivalence_worker.py")


def horovodrun():
    return str(Path(sys.executable).with_name("horovodrun"))


def results(text):
    return sorted((json.loads(line) for line in re.findall(r"RESULT (\{.*\})", text)), key=lambda r: r["process"])


def base_env():
    """The test's environment for child processes, with the venv's horovodrun on PATH."""
    environment = dict(os.environ)
    environment.pop("TF_USE_LEGACY_KERAS", None)  # entry points must set it themselves
    environment["TF_CPP_MIN_LOG_LEVEL"] = "2"
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
    return environment


def run_horovod(command, env, processes=2, timeout=600):
    return subprocess.run([horovodrun(), "-np", str(processes), "-H", f"localhost:{processes}", "--gloo", *command],
                          capture_output=True, text=True, env=env, timeout=timeout)


def run_workers(command, env, processes=2, timeout=600):
    """`command` once per TF_CONFIG worker; returns (return codes, combined output)."""
    running = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**env, "TF_CONFIG": config}) for config in local_tf_configs(processes)]
    outputs = [process.communicate(timeout=timeout)[0] for process in running]
    return [process.returncode for process in running], "\n".join(outputs)
