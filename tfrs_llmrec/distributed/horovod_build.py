"""Reports whether the optional Horovod extra is installed and what it was built with."""

from __future__ import annotations

import importlib.metadata
import importlib.util


def horovod_installed() -> bool:
    return importlib.util.find_spec("horovod") is not None


def describe_horovod_build() -> str:
    """One line: version and the controllers/tensor ops compiled in. Raises if unusable."""
    import horovod.tensorflow as hvd

    version = importlib.metadata.version("horovod")
    # Importing horovod.tensorflow already proved the TensorFlow ops load.
    features = {"gloo": hvd.gloo_built, "mpi": hvd.mpi_built, "nccl": hvd.nccl_built}
    built = ["tensorflow"] + [name for name, probe in features.items() if probe()]
    return f"{version} (built with: {', '.join(built)})"
