"""A real SIGKILL in the middle of `llmrec data` leaves nothing that looks complete."""

import os
import signal
import subprocess
import textwrap
import time

from tfrs_llmrec.data import DataError, PreparedDataset


def test_sigkill_mid_ingestion_then_rerun(tmp_path, llmrec_cmd, subprocess_env):
    config = tmp_path / "exp.yaml"
    config.write_text(textwrap.dedent(f"""
        name: killed
        output_dir: {tmp_path / 'runs'}
        data: {{dataset: ml-100k, k_core: 5}}
    """), encoding="utf-8")
    datasets = tmp_path / "runs" / "datasets"
    process = subprocess.Popen(llmrec_cmd + ["data", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=subprocess_env, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (datasets.exists() and any(datasets.iterdir())):
        time.sleep(0.05)
    time.sleep(1.0)  # let the Beam pipeline get going inside the partial directory
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)

    leftovers = sorted(datasets.iterdir())
    assert leftovers and all(".partial-" in path.name for path in leftovers), leftovers
    for partial in leftovers:
        try:
            PreparedDataset.open(partial)
        except DataError as error:
            assert str(partial) in str(error)
        else:
            raise AssertionError(f"{partial} opened as a complete dataset")

    rerun = subprocess.run(llmrec_cmd + ["data", str(config)], capture_output=True, text=True,
                           env=subprocess_env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    complete = [path for path in datasets.iterdir() if ".partial-" not in path.name]
    assert len(complete) == 1
    assert PreparedDataset.open(complete[0]).num_users == 943
    assert not [path for path in datasets.iterdir() if ".partial-" in path.name]  # the stale build was removed
