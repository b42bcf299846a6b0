"""`llmrec launch --workers N CONFIG`: N local MultiWorkerMirroredStrategy workers on loopback ports.

Each worker is `llmrec train CONFIG --set train.strategy=multi_worker` with its own TF_CONFIG.
The launcher watches them: when one fails, the others are stopped (SIGTERM, which makes them
checkpoint, then SIGKILL after a grace period) and the launch fails naming the worker, instead of
the survivors waiting in a collective forever. SIGTERM/SIGINT to the launcher reaches every worker.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

GRACE_S = 20.0


def free_loopback_ports(count: int) -> List[int]:
    sockets = []
    try:
        for _ in range(count):
            handle = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            handle.bind(("127.0.0.1", 0))
            sockets.append(handle)
        return [handle.getsockname()[1] for handle in sockets]
    finally:
        for handle in sockets:
            handle.close()


def local_tf_configs(count: int) -> List[str]:
    """TF_CONFIG values for `count` workers of one cluster on free loopback ports, by worker index."""
    addresses = [f"127.0.0.1:{port}" for port in free_loopback_ports(count)]
    return [json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})
            for index in range(count)]


def worker_command(config: Path, overrides: Sequence[str], beam_options: Sequence[str], restart: bool) -> List[str]:
    command = [sys.executable, "-m", "tfrs_llmrec.cli.main", "train", str(config)]
    for override in [*overrides, "train.strategy=multi_worker"]:
        command += ["--set", override]
    command += [f"--beam-option={option}" for option in beam_options]
    return command + (["--restart"] if restart else [])


def _stop(processes: Sequence[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def launch_workers(workers: int, config: Path, overrides: Sequence[str], beam_options: Sequence[str] = (),
                   restart: bool = False, timeout_s: Optional[float] = None) -> int:
    if workers < 1:
        print("llmrec launch: --workers must be at least 1", file=sys.stderr)
        return 2
    configs = local_tf_configs(workers)
    command = worker_command(config, overrides, beam_options, restart)
    processes = [subprocess.Popen(command, env=dict(os.environ, TF_CONFIG=tf_config)) for tf_config in configs]
    addresses = json.loads(configs[0])["cluster"]["worker"]
    print(f"llmrec launch: {workers} workers on {', '.join(addresses)}", file=sys.stderr, flush=True)

    interrupted = []
    handlers = {sig: signal.signal(sig, lambda signum, frame: interrupted.append(signum))
                for sig in (signal.SIGTERM, signal.SIGINT)}
    started = time.monotonic()
    try:
        while True:
            codes = [process.poll() for process in processes]
            failed = [(index, code) for index, code in enumerate(codes) if code not in (None, 0)]
            if failed:
                index, code = failed[0]
                _stop(processes)
                print(f"llmrec launch: worker {index} exited with code {code}; stopped the other workers",
                      file=sys.stderr)
                return 1
            if all(code == 0 for code in codes):
                return 0
            if interrupted:
                _stop(processes)
                print("llmrec launch: interrupted; the workers were asked to checkpoint and stop", file=sys.stderr)
                return 128 + interrupted[0]
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                _stop(processes)
                print(f"llmrec launch: timed out after {timeout_s:.0f} s; stopped every worker", file=sys.stderr)
                return 1
            time.sleep(0.2)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
