"""`llmrec doctor`: verifies that the installed stack is the one this project was tested on."""

from __future__ import annotations

import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Sequence

EXPECTED_PYTHON = (3, 11)
EXPECTED_TENSORFLOW = "2.20.0"
EXPECTED_TF_KERAS = "2.20.1"
LOCAL_BEAM_RUNNER = "FnApiRunner"
REPO_ROOT = Path(__file__).resolve().parents[2]
EXPECTED_PIP_CHECK = REPO_ROOT / "requirements" / "expected-pip-check.txt"


class CheckFailed(Exception):
    """A check ran but found the environment wrong."""


@dataclass(frozen=True)
class Check:
    name: str
    probe: Callable[[], str]  # returns a one-line detail; raises on failure
    required: bool = True


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    required: bool
    detail: str

    @property
    def status(self) -> str:
        if self.passed:
            return "ok"
        return "FAIL" if self.required else "absent"


def check_python() -> str:
    version = sys.version_info
    if version[:2] != EXPECTED_PYTHON:
        raise CheckFailed(f"Python {version.major}.{version.minor}; expected 3.11")
    return f"{version.major}.{version.minor}.{version.micro} ({sys.executable})"


def check_tensorflow() -> str:
    import tensorflow as tf

    if tf.__version__ != EXPECTED_TENSORFLOW:
        raise CheckFailed(f"TensorFlow {tf.__version__}; expected {EXPECTED_TENSORFLOW}")
    return tf.__version__


def check_keras2() -> str:
    import tensorflow as tf
    import tf_keras

    module = tf.keras.Model.__module__
    if not module.startswith("tf_keras"):
        raise CheckFailed(f"tf.keras.Model comes from {module!r}, not tf_keras (Keras 3 is bound)")
    if tf_keras.__version__ != EXPECTED_TF_KERAS:
        raise CheckFailed(f"tf-keras {tf_keras.__version__}; expected {EXPECTED_TF_KERAS}")
    return f"tf.keras is tf_keras {tf_keras.__version__}"


def check_tfrs() -> str:
    import tensorflow_recommenders as tfrs

    return tfrs.__version__.lstrip("v")


def check_scann_ops() -> str:
    import numpy as np
    from scann.scann_ops.py import scann_ops

    database = np.eye(4, 8, dtype=np.float32)
    searcher = scann_ops.builder(database, 2, "dot_product").score_brute_force().build()
    neighbors, _ = searcher.search_batched(database[:2])
    found = neighbors.numpy()[:, 0].tolist()
    if found != [0, 1]:
        raise CheckFailed(f"brute-force ScaNN search returned {found}, expected [0, 1]")
    return "TF ops loaded; a 4-vector search returned the right neighbours"


def check_tfx() -> str:
    import tfx
    from tfx import v1  # noqa: F401  (imports the components and orchestrators eagerly)

    return tfx.__version__


def check_beam() -> str:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.util import assert_that, equal_to

    # Beam's DirectRunner first tries to download the Prism binary from the internet; offline we
    # run the batch engine it falls back to, FnApiRunner, directly.
    with beam.Pipeline(LOCAL_BEAM_RUNNER, options=PipelineOptions([])) as pipeline:
        doubled = pipeline | beam.Create([1, 2, 3]) | beam.Map(lambda value: value * 2)
        assert_that(doubled, equal_to([2, 4, 6]))
    return f"{beam.__version__}; {LOCAL_BEAM_RUNNER} (DirectRunner's batch engine) ran a 3-element pipeline"


def read_expected_conflicts(path: Path = EXPECTED_PIP_CHECK) -> set:
    lines = path.read_text(encoding="utf-8").splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def check_pip_conflicts() -> str:
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    reported = {line.strip() for line in result.stdout.splitlines() if line.strip()}
    unexpected = sorted(reported - read_expected_conflicts())
    if unexpected:
        raise CheckFailed(f"{len(unexpected)} conflicts not in {EXPECTED_PIP_CHECK.name}: {unexpected[0]}"
                          + (f" (+{len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
    return f"{len(reported)} conflicts, all listed as expected"


def check_movielens() -> str:
    from tfrs_llmrec.assets import movielens_100k_dir

    return str(movielens_100k_dir())


def check_minilm() -> str:
    from tfrs_llmrec.assets import minilm_dir

    return str(minilm_dir())


def check_horovod() -> str:
    from tfrs_llmrec.distributed.horovod_build import describe_horovod_build, horovod_installed

    if not horovod_installed():
        raise CheckFailed("not installed (run make setup, which builds it)")
    return describe_horovod_build()


DEFAULT_CHECKS: Sequence[Check] = (
    Check("Python", check_python),
    Check("TensorFlow", check_tensorflow),
    Check("Keras 2 (tf.keras)", check_keras2),
    Check("TensorFlow Recommenders", check_tfrs),
    Check("ScaNN TF ops", check_scann_ops),
    Check("TFX", check_tfx),
    Check("Apache Beam DirectRunner", check_beam),
    Check("pip check", check_pip_conflicts),
    Check("MovieLens-100K (embedded)", check_movielens),
    Check("all-MiniLM-L6-v2 weights", check_minilm),
    Check("Horovod", check_horovod),
)


def run_checks(checks: Sequence[Check]) -> List[CheckResult]:
    results = []
    for check in checks:
        try:
            results.append(CheckResult(check.name, True, check.required, check.probe()))
        except CheckFailed as failure:
            results.append(CheckResult(check.name, False, check.required, str(failure)))
        except Exception as error:  # an import error or crash inside a probe is a failed check
            last = traceback.extract_tb(error.__traceback__)[-1]
            where = f" [{Path(last.filename).name}:{last.lineno}]"
            results.append(CheckResult(check.name, False, check.required,
                                       f"{type(error).__name__}: {error}{where}"))
    return results


def render_table(results: Sequence[CheckResult]) -> str:
    name_width = max(len("check"), *(len(result.name) for result in results))
    lines = [f"{'check':<{name_width}}  status  detail", f"{'-' * name_width}  ------  ------"]
    for result in results:
        detail = " ".join(result.detail.split())
        lines.append(f"{result.name:<{name_width}}  {result.status:<6}  {detail}")
    return "\n".join(lines)


def failed_required(results: Sequence[CheckResult]) -> List[str]:
    return [result.name for result in results if result.required and not result.passed]


def doctor(checks: Sequence[Check] = DEFAULT_CHECKS, out=sys.stdout) -> int:
    """Runs the checks, prints the table, and returns the process exit code."""
    results = run_checks(checks)
    print(render_table(results), file=out)
    failures = failed_required(results)
    if failures:
        print(f"\ndoctor: {len(failures)} required check(s) failed: {', '.join(failures)}", file=out)
        return 1
    print("\ndoctor: all required checks passed", file=out)
    return 0
