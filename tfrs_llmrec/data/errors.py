"""The one error type for bad input data, located by file (and line or row when known)."""

from __future__ import annotations

import re
from typing import Optional, Union
from os import PathLike

# Beam re-raises a worker's exception with the step appended; this strips it again.
_STEP_SUFFIX = re.compile(r"(?: \[while running '[^']*'\])+$")
_DATA_ERROR_LINE = re.compile(r"\bDataError: (.+)$", re.MULTILINE)


class DataError(ValueError):
    """Bad input data. The message starts with the file: `/x/ratings.csv:17: expected 4 fields, got 2`.

    `DataError(path, message, line=...)` formats the location; `DataError(text)` with one
    argument takes a message that is already formatted (how Beam and pickle rebuild it).
    """

    def __init__(self, path: Union[str, PathLike], message: Optional[str] = None, line: Optional[int] = None):
        if message is None:
            text = str(path)
        else:
            location = f"{path}:{line}" if line is not None else str(path)
            text = f"{location}: {message}"
        super().__init__(text)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


def find_data_error(error: BaseException) -> Optional[DataError]:
    """The DataError behind `error`, however a pipeline runner wrapped it, with its original text."""
    seen = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, DataError):
            return DataError(_STEP_SUFFIX.sub("", current.message.splitlines()[0] if current.message else ""))
        # Portable runners send the worker's traceback as text inside another exception.
        for argument in (str(current), *(a for a in getattr(current, "args", ()) if isinstance(a, str))):
            match = _DATA_ERROR_LINE.search(argument)
            if match:
                return DataError(_STEP_SUFFIX.sub("", match.group(1).strip()))
        pending.extend([current.__cause__, current.__context__])
    return None
