"""The import rules of docs/architecture.md, enforced on the source tree."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("tfrs_llmrec", "beam_jobs", "pipelines", "benchmarks")
# Lower layers must not import these higher ones.
FORBIDDEN = {
    "tfrs_llmrec": ("tfrs_llmrec.cli", "tfrs_llmrec.workflow", "beam_jobs", "pipelines", "benchmarks"),
    # The orchestration layer: it runs the Beam jobs and everything below; the CLI and the TFX
    # components call it.
    "tfrs_llmrec/workflow": ("tfrs_llmrec.cli", "pipelines", "benchmarks"),
    "beam_jobs": ("tfrs_llmrec.cli", "pipelines", "benchmarks"),
    "pipelines": ("tfrs_llmrec.cli", "benchmarks"),
}


def imported_modules(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def python_files():
    for directory in SOURCE_DIRS:
        yield from sorted((ROOT / directory).rglob("*.py"))


def test_only_the_distributed_package_imports_horovod():
    offenders = []
    for path in python_files():
        relative = path.relative_to(ROOT)
        if relative.parts[:2] == ("tfrs_llmrec", "distributed"):
            continue
        if any(name == "horovod" or name.startswith("horovod.") for name in imported_modules(path)):
            offenders.append(str(relative))
    assert offenders == []


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_higher_ones(layer):
    offenders = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        relative = path.relative_to(ROOT)
        if layer == "tfrs_llmrec" and relative.parts[:2] in (("tfrs_llmrec", "cli"), ("tfrs_llmrec", "workflow")):
            continue
        for name in imported_modules(path):
            if any(name == banned or name.startswith(banned + ".") for banned in FORBIDDEN[layer]):
                offenders.append(f"{relative} imports {name}")
    assert offenders == []


def test_every_entry_package_sets_legacy_keras_before_tensorflow():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    code = ("import tfrs_llmrec, os, tensorflow as tf; "
            "print(os.environ['TF_USE_LEGACY_KERAS'], tf.keras.Model.__module__.split('.')[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.split() == ["1", "tf_keras"], out.stderr
