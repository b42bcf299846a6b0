"""Real horovodrun with 2 Gloo ranks. Needs `make setup-horovod`; run with `make test-horovod`."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.horovod


def test_two_gloo_ranks_end_with_identical_weights(subprocess_env):
    horovodrun = Path(sys.executable).with_name("horovodrun")
    worker = Path(__file__).with_name("horovod_two_ranks_worker.py")
    result = subprocess.run([str(horovodrun), "-np", "2", "--gloo", "-H", "localhost:2", sys.executable, str(worker)],
                            capture_output=True, text=True, env=subprocess_env, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = dict((int(rank), (same, drift)) for rank, same, drift in
                re.findall(r"RESULT rank=(\d) minimize=(\w+) apply_gradients=(\w+)", result.stdout))
    assert sorted(rows) == [0, 1]
    assert rows[0][0] == rows[1][0]  # allreduced gradients: bit-identical weights
    assert rows[0][1] != rows[1][1]  # the negative control shows the test can fail
