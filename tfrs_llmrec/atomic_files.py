"""Files that are either complete or absent: written to a temporary file beside the target,
synced, then renamed over it; on any failure the temporary file is removed."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np


def write_atomically(path, write: Callable) -> Path:
    """Calls `write(handle)` on a temporary text file, then renames it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path


def write_json_atomically(path, payload) -> Path:
    """Indented JSON; NumPy values become Python ones, NaN/inf become null."""
    ready = json_ready(payload)
    return write_atomically(path, lambda handle: json.dump(ready, handle, indent=2, allow_nan=False))


def json_ready(value):
    """Plain JSON types from NumPy scalars/arrays, tuples and non-finite floats (-> None).

    Anything else is left for `json` to reject, so an unserialisable payload fails loudly.
    """
    if isinstance(value, dict):
        return {(key if isinstance(key, str) else str(json_ready(key))): json_ready(item)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        return json_ready(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
