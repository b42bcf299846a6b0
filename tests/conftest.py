"""Imports the package first so TF_USE_LEGACY_KERAS=1 is set before any test imports TensorFlow."""

import os
import sys
from pathlib import Path

import pytest

import tfrs_llmrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def llmrec_cmd():
    """The installed console script, run as a separate process like a user would."""
    return [str(Path(sys.executable).with_name("llmrec"))]


@pytest.fixture
def subprocess_env():
    env = dict(os.environ)
    env.pop("TF_USE_LEGACY_KERAS", None)  # entry points must set it themselves
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


@pytest.fixture(params=["grappler-on", "grappler-off"])
def grappler(request):
    """Runs a test with TF's graph optimiser on and off, restoring the setting after: the trainer
    turns it off for determinism, so a graph must behave the same both ways."""
    import tensorflow as tf

    before = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": request.param == "grappler-off"})
    yield request.param
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": before})
