"""Publishing an export to a TF Serving model base, one numbered version per push.

    <serving_base>/<model_name>/<version>/             retrieval/ (BruteForce, core TF ops)
    <serving_base>/<model_name>-scann/<version>/       retrieval_scann/ (needs ScaNN's ops)
    <serving_base>/<model_name>-item-tower/<version>/  item_tower/
    <serving_base>/<model_name>-item-tower-text/<version>/  item_tower_text/ (semantic models; TF Text ops)

Every part the export holds gets the same version: 1 + the largest numeric version in any of them. Each version
directory is built in a hidden staging directory beside it and renamed into place
(tfrs_llmrec.atomic_files), so TF Serving, which polls for numeric directories, never sees a
partial one; the main model is published last, and if any part fails the parts already
published for that version are removed again. A push of an export identical, file for file, to
the newest version is not repeated (a rerun whose Evaluator re-ran only because the last blessed
model changed)."""

from __future__ import annotations

import filecmp
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from tfrs_llmrec.atomic_files import building_directory

# (directory in the export, destination name pattern); the main model last.
DESTINATIONS = (("item_tower_text", "{name}-item-tower-text"), ("item_tower", "{name}-item-tower"),
                ("retrieval_scann", "{name}-scann"), ("retrieval", "{name}"))
MAIN = "retrieval"


class PushError(RuntimeError):
    pass


@dataclass
class PushResult:
    pushed: bool
    version: int
    destinations: Dict[str, str] = field(default_factory=dict)
    reason: str = ""


def numeric_versions(directory: Path) -> List[int]:
    """The numeric version subdirectories of a model directory (what TF Serving loads), sorted."""
    if not directory.is_dir():
        return []
    return sorted(int(child.name) for child in directory.iterdir() if child.is_dir() and child.name.isdigit())


def destination_dirs(serving_base: Path, model_name: str) -> Dict[str, Path]:
    return {source: serving_base / pattern.format(name=model_name) for source, pattern in DESTINATIONS}


def next_version(serving_base: Path, model_name: str) -> int:
    return 1 + max([0, *(version for directory in destination_dirs(serving_base, model_name).values()
                         for version in numeric_versions(directory))])


def same_tree(first: Path, second: Path) -> bool:
    """Whether two directories hold the same files with the same bytes."""
    comparison = filecmp.dircmp(first, second)
    if comparison.left_only or comparison.right_only or comparison.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(first, second, comparison.common_files, shallow=False)
    if mismatch or errors:
        return False
    return all(same_tree(first / name, second / name) for name in comparison.common_dirs)


def _sources(export_dir: Path) -> Dict[str, Path]:
    sources = {source: export_dir / source for source, _ in DESTINATIONS if (export_dir / source).is_dir()}
    if MAIN not in sources:
        raise PushError(f"{export_dir}: no {MAIN}/ SavedModel to push")
    return sources


def already_pushed(export_dir: Path, serving_base: Path, model_name: str) -> Optional[int]:
    """The newest version if it holds exactly this export (every part), else None."""
    sources = _sources(Path(export_dir))
    destinations = destination_dirs(Path(serving_base), model_name)
    versions = numeric_versions(destinations[MAIN])
    if not versions:
        return None
    latest = versions[-1]
    for source, path in sources.items():
        target = destinations[source] / str(latest)
        if not target.is_dir() or not same_tree(path, target):
            return None
    return latest


def push(export_dir, serving_base, model_name: str) -> PushResult:
    """Publishes the export's SavedModels as the next version (see the module docstring)."""
    export_dir, serving_base = Path(export_dir), Path(serving_base)
    sources = _sources(export_dir)
    destinations = destination_dirs(serving_base, model_name)
    latest = already_pushed(export_dir, serving_base, model_name)
    if latest is not None:
        return PushResult(False, latest, {source: str(destinations[source] / str(latest)) for source in sources},
                          f"version {latest} already holds this export")
    version = next_version(serving_base, model_name)
    published: List[Path] = []
    try:
        for source, _ in DESTINATIONS:
            if source not in sources:
                continue
            target = destinations[source] / str(version)
            if target.exists():
                raise PushError(f"{target} appeared while pushing (another push at the same time?)")
            with building_directory(target) as staging:
                shutil.copytree(sources[source], staging, dirs_exist_ok=True)
            published.append(target)
    except BaseException:
        for target in published:
            shutil.rmtree(target, ignore_errors=True)
        raise
    return PushResult(True, version, {source: str(destinations[source] / str(version)) for source in sources})
