"""Two replicas must train like one process with the global batch, and end bit-identical.

Each engine runs tests/distributed/equivalence_worker.py once as a real 2-replica job: 2 logical
CPUs in one process (MirroredStrategy), 2 processes under horovodrun (Gloo), 2 MultiWorkerMirrored
workers on loopback ports.
"""

import subprocess
import sys

import pytest

from tests.distributed.conftest import WORKER, base_env, results, run_horovod, run_workers

CHECKS = ("two_tower_matches", "alpharec_matches")
CONTROLS = ("two_tower_control_matches", "alpharec_control_matches")


def _run(engine, directory):
    env = base_env()
    if engine == "mirrored":
        done = subprocess.run([sys.executable, str(WORKER), "mirrored", str(directory)], capture_output=True,
                              text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return results(done.stdout)
    if engine == "horovod":
        done = run_horovod([sys.executable, str(WORKER), "horovod", str(directory)], env)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return results(done.stdout)
    codes, output = run_workers([sys.executable, str(WORKER), "multi_worker", str(directory)], env)
    assert codes == [0, 0], output[-3000:]
    return results(output)


@pytest.fixture(scope="module")
def engine_rows(tmp_path_factory):
    return {engine: _run(engine, tmp_path_factory.mktemp(engine)) for engine in ("mirrored", "horovod", "multi_worker")}


@pytest.mark.parametrize("engine,processes", [("mirrored", 1), ("horovod", 2), ("multi_worker", 2)])
def test_two_replicas_equal_one_process_with_the_global_batch(engine_rows, engine, processes):
    rows = engine_rows[engine]
    assert [row["process"] for row in rows] == list(range(processes)), rows
    for row in rows:
        assert row["replicas"] == 2
        # One step of 2 replicas with batch B = one process with batch 2B on the same examples ...
        assert all(row[check] for check in CHECKS), row
        # ... and the negative control (gradients not reduced) shows the comparison can fail.
        assert not any(row[control] for control in CONTROLS), row
    # Two epochs on shuffled data with sampled negatives: every process ends bit-identical, in
    # float32 and in mixed precision with dynamic loss scaling.
    assert len({row["trained_checksum"] for row in rows}) == 1, rows
    assert len({row["mixed_precision_checksum"] for row in rows}) == 1, rows
    assert rows[0]["mixed_precision_checksum"] != rows[0]["trained_checksum"]


def test_horovod_and_multi_worker_end_on_the_same_weights(engine_rows):
    """Both shard the global batch by record over two processes and average two gradients (an
    exact halving either way), so they must agree bit for bit: a cross-check of both reductions
    and of the input sharding. (Mirrored feeds each replica consecutive records instead, which
    changes the per-replica float sums, so it is only equivalent, not identical.)"""
    checksums = {engine: engine_rows[engine][0]["trained_checksum"] for engine in ("horovod", "multi_worker")}
    assert len(set(checksums.values())) == 1, checksums
