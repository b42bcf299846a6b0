"""publish_directory: readers see the old or the new directory, never a partial or a missing one."""

import os
import threading
from pathlib import Path

import pytest

from tfrs_llmrec.atomic_files import building_directory, publish_directory


def _write_version(directory: Path, value: str, files: int = 20) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(files):
        (directory / f"part-{index}").write_text(value)


def test_publish_into_an_empty_place_and_over_an_old_directory(tmp_path):
    target = tmp_path / "model"
    staging = tmp_path / "staging-1"
    _write_version(staging, "one")
    publish_directory(staging, target)
    assert not staging.exists() and (target / "part-0").read_text() == "one"

    staging = tmp_path / "staging-2"
    _write_version(staging, "two", files=3)
    publish_directory(staging, target)
    assert sorted(path.name for path in target.iterdir()) == ["part-0", "part-1", "part-2"]
    assert {path.read_text() for path in target.iterdir()} == {"two"}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]  # nothing old left behind


def test_a_reader_never_sees_a_missing_or_mixed_directory(tmp_path):
    target = tmp_path / "model"
    _write_version(target, "v0")
    seen, stop = [], threading.Event()

    def read():
        while not stop.is_set():
            try:
                values = {(target / f"part-{index}").read_text() for index in range(20)}
            except FileNotFoundError as error:
                # A file vanishing between two reads of the same version is a torn read, not a miss,
                # only if the directory itself is missing: that is what publish_directory must avoid.
                seen.append("missing" if not target.exists() else f"moved:{error.filename}")
                continue
            seen.append(values.pop() if len(values) == 1 else "mixed")

    reader = threading.Thread(target=read)
    reader.start()
    for version in range(1, 60):
        staging = tmp_path / f".staging-{version}"
        _write_version(staging, f"v{version}")
        publish_directory(staging, target)
    stop.set()
    reader.join()
    assert "missing" not in seen
    assert (target / "part-0").read_text() == "v59"


def test_building_directory_removes_the_staging_copy_on_failure(tmp_path):
    target = tmp_path / "model"
    _write_version(target, "old")
    with pytest.raises(RuntimeError):
        with building_directory(target) as staging:
            _write_version(staging, "new")
            raise RuntimeError("export failed half way")
    assert (target / "part-0").read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["model"]

    with building_directory(target) as staging:
        _write_version(staging, "new")
    assert (target / "part-0").read_text() == "new" and len(os.listdir(tmp_path)) == 1
