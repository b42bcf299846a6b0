"""Examples/s of 1 process vs 2 Horovod ranks (sparse embedding gradients all-gathered, or
`sparse_as_dense`) vs 2 MultiWorkerMirrored workers on this host, and the share of each step
spent reducing gradients, for the ID two-tower at Amazon Games sizes (global batch 1,024); and
the same for LightGCN, whose full-graph propagation every replica repeats every step.

Run with `make bench`. Each configuration runs benchmarks/distributed_step_worker.py, which times
60 steps with the reduction and 60 without it (every process applying its own gradient); the
share is 1 - unreduced / reduced. The global batch is fixed, so a second process halves each
one's work: speed-up = examples/s ratio. On a 2-core machine the two processes share the cores,
so a speed-up above 1 is not expected here; the printed numbers say what the reduction costs.
Nothing is asserted about times.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tfrs_llmrec.cli.launch import local_tf_configs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(7200)]

WORKER = Path(__file__).with_name("distributed_step_worker.py")
BIN = Path(sys.executable).parent


def measure(engine, sparse_as_dense, env, model="two_tower"):
    flag = ["1" if sparse_as_dense else "0", model]
    if engine == "single":
        output = subprocess.run([sys.executable, str(WORKER), "single", *flag], env=env, capture_output=True,
                                text=True, timeout=1800).stdout
    elif engine == "horovod":
        output = subprocess.run([str(BIN / "horovodrun"), "-np", "2", "-H", "localhost:2", "--gloo", sys.executable,
                                 str(WORKER), "horovod", *flag], env=env, capture_output=True, text=True,
                                timeout=1800).stdout
    else:
        workers = [subprocess.Popen([sys.executable, str(WORKER), "multi_worker", *flag], stdout=subprocess.PIPE,
                                    text=True, env={**env, "TF_CONFIG": tf_config})
                   for tf_config in local_tf_configs(2)]
        output = "".join(worker.communicate(timeout=1800)[0] for worker in workers)
    found = re.findall(r"RESULT (\{.*\})", output)
    assert found, output[-3000:]
    return json.loads(found[0])


def reduction_share(result) -> str:
    """1 - unreduced / reduced step time; a single process reduces nothing."""
    if result["processes"] == 1:
        return "-"
    return f"{1.0 - result['ms_per_step_unreduced'] / result['ms_per_step']:.1%}"


def test_examples_per_second_and_reduction_share():
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", TF_CPP_MIN_LOG_LEVEL="2")
    runs = [("1 process", measure("single", False, env)),
            ("2 Horovod ranks, sparse gradients", measure("horovod", False, env)),
            ("2 Horovod ranks, sparse_as_dense", measure("horovod", True, env)),
            ("2 MWMS workers", measure("multi_worker", False, env))]
    base = runs[0][1]["examples_per_second"]
    print("\ntwo-tower at Amazon Games sizes, global batch 1,024, d = 64")
    print(f"{'run':<36} {'ms/step':>8} {'examples/s':>11} {'vs 1 process':>13} {'reduction share':>16}")
    for label, result in runs:
        print(f"{label:<36} {result['ms_per_step']:8.1f} {result['examples_per_second']:11.0f} "
              f"{result['examples_per_second'] / base:13.2f} {reduction_share(result):>16}")
    sparse, dense = runs[1][1]["ms_per_step"], runs[2][1]["ms_per_step"]
    print(f"sparse_as_dense on / off step time: {dense / sparse:.2f}")

    graph = [("1 process", measure("single", False, env, "lightgcn")),
             ("2 Horovod ranks", measure("horovod", False, env, "lightgcn"))]
    print("\nLightGCN at Amazon Games sizes (67,402 nodes, 288,626 edges, 3 layers), global batch 1,024")
    for label, result in graph:
        print(f"{label:<36} {result['ms_per_step']:8.1f} ms/step {result['examples_per_second']:9.0f} examples/s, "
              f"reduction share {reduction_share(result)}")
    print(f"2 ranks / 1 process step time: {graph[1][1]['ms_per_step'] / graph[0][1]['ms_per_step']:.2f} "
          "(each rank still propagates the whole graph)")
