"""Checkpoints published as one unit with the training state that belongs to them.

Each checkpoint is a directory `step-<global step>/` holding the TF checkpoint (model, optimizer
with its step counter, and so the sampling RNG position) and `state.json` (epoch, position in
the epoch, monitor history, early-stopping state). It is written under a temporary name and
renamed into place, so a checkpoint directory either is complete or does not exist; a kill at
any moment leaves at worst a `.partial-*` directory that the next run removes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import tensorflow as tf

from tfrs_llmrec.atomic_files import publish_directory

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
PREFIX = "ckpt"
_STEP_DIR = re.compile(r"^step-(\d{9})$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read; the message names the file."""


@dataclass(frozen=True)
class SavedCheckpoint:
    directory: Path
    step: int
    state: dict

    @property
    def prefix(self) -> str:
        return str(self.directory / PREFIX)


class CheckpointStore:
    """The complete checkpoints under `root`, newest last; keeps the newest `keep`."""

    def __init__(self, root: Path, keep: int = 2):
        self.root = Path(root)
        self.keep = keep

    def _complete(self) -> List[Path]:
        if not self.root.is_dir():
            return []
        return sorted(path for path in self.root.iterdir() if path.is_dir() and _STEP_DIR.match(path.name))

    def remove_partials(self) -> None:
        if self.root.is_dir():
            for path in self.root.glob(".partial-*"):
                shutil.rmtree(path, ignore_errors=True)

    def latest(self) -> Optional[SavedCheckpoint]:
        complete = self._complete()
        if not complete:
            return None
        directory = complete[-1]
        state_path = directory / STATE_FILE
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise CheckpointError(f"{state_path}: unreadable training state ({error}); delete {directory} to "
                                  "resume from the checkpoint before it, or rerun with --restart") from None
        return SavedCheckpoint(directory, int(_STEP_DIR.match(directory.name).group(1)), state)

    def save(self, checkpoint: tf.train.Checkpoint, step: int, state: dict) -> Path:
        """Writes checkpoint + state for `step` and publishes them with one rename."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / f"step-{step:09d}"
        partial = self.root / f".partial-step-{step:09d}-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        checkpoint.write(str(partial / PREFIX))
        # Plain json.dump: a best value of -inf must survive the round trip.
        with open(partial / STATE_FILE, "w", encoding="utf-8") as handle:
            json.dump(state, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        publish_directory(partial, final)  # the same step may be saved again after a resume
        for old in self._complete()[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final


def restore(checkpoint: tf.train.Checkpoint, saved: SavedCheckpoint, partial: bool = False) -> None:
    """Restores `saved` into `checkpoint`; a damaged file gives one CheckpointError naming it."""
    try:
        status = checkpoint.read(saved.prefix)
        if partial:
            status.expect_partial()
        else:
            status.assert_existing_objects_matched()
    except (tf.errors.OpError, ValueError, AssertionError) as error:
        files = sorted(saved.directory.glob(f"{PREFIX}.*"))
        data = [path for path in files if ".data-" in path.name]
        named = data[0] if isinstance(error, tf.errors.DataLossError) and data else (
            saved.directory / f"{PREFIX}.index")
        message = getattr(error, "message", str(error)).strip().splitlines()[0]
        raise CheckpointError(f"{named}: corrupted or incompatible checkpoint ({message}); delete {saved.directory} "
                              "or rerun with --restart") from None


def best_checkpoint(stage_directory: Path) -> Optional[str]:
    """The checkpoint prefix of a stage's best weights (`<stage dir>/best/step-*/ckpt`), or None."""
    saved = CheckpointStore(Path(stage_directory) / "best").latest()
    return saved.prefix if saved is not None else None
