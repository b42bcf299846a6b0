"""Files and directories that are either complete or absent: written beside the target, then
renamed over it; on any failure the temporary copy is removed. `publish_directory` is the one way
this package replaces a directory (datasets, features, checkpoints, SavedModels, pushed versions)."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import math
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Callable, Iterator

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


_RENAME_EXCHANGE = 2  # linux/fs.h


def _exchange(first: Path, second: Path) -> bool:
    """Swaps two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EINVAL, errno.ENOSYS, errno.EXDEV, errno.ENOTSUP):
        return False
    raise OSError(error, os.strerror(error), str(second))


def publish_directory(staging, target) -> Path:
    """Moves the complete directory `staging` to `target`, replacing any previous `target`.

    A reader sees either the old directory or the new one, never a partial one and, where the
    filesystem can exchange two paths atomically (Linux), never a missing one: the old content is
    swapped out in one step and removed afterwards. Elsewhere the old directory is renamed aside
    just before the new one is renamed in."""
    staging, target = Path(staging), Path(target)
    if not target.exists():
        os.rename(staging, target)
        return target
    if _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)
        return target
    retired = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(target, retired)
    os.rename(staging, target)
    shutil.rmtree(retired, ignore_errors=True)
    return target


def staging_directory_for(target) -> Path:
    """A new empty hidden sibling of `target` to build it in (same filesystem, so renames are atomic)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))


@contextlib.contextmanager
def building_directory(target) -> Iterator[Path]:
    """`with building_directory(target) as staging:` fill `staging`; on success it replaces
    `target` (publish_directory), on any failure it is removed and `target` is untouched."""
    staging = staging_directory_for(target)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    publish_directory(staging, target)
