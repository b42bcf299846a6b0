import pytest
import tensorflow as tf


@pytest.fixture(params=["grappler-on", "grappler-off"])
def grappler(request):
    """Runs a test with TF's graph optimiser on and off, restoring the setting after: the trainer
    turns it off for determinism, so a layer's graph must behave the same both ways."""
    before = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": request.param == "grappler-off"})
    yield request.param
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": before})
