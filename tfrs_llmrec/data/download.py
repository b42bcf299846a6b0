"""Downloads public raw datasets (MovieLens-1M, Amazon 2018 Video Games) with verification.

Every file is streamed to a temporary name beside its destination (with a progress bar),
verified, and only then renamed into place; a failed or mismatching download leaves nothing
behind. A destination that already holds a complete, verified file is kept as it is, so an
interrupted fetch resumes with the files still missing.

Verification: an `md5:`/`sha256:` checksum where the publisher gives one (GroupLens does);
Amazon 2018 publishes none, so its gzip files are checked by decompressing them fully (gzip's
CRC-32 and length trailer catch truncation and corruption) and their sha256 is recorded in a
`<file>.sha256` sidecar that later runs check instead.

    python -m tfrs_llmrec.data.download ml-1m ~/data   # -> ~/data/ml-1m (set data.path to it)
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import logging
import os
import shutil
import sys
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from tqdm import tqdm

from tfrs_llmrec.atomic_files import publish_directory
from tfrs_llmrec.data.errors import DataError

log = logging.getLogger("tfrs_llmrec.data.download")

_CHUNK = 1 << 20
_AMAZON_2018 = "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2"


class DownloadError(DataError):
    """A download that failed or did not verify; the message starts with the URL or file."""


@dataclass(frozen=True)
class RemoteFile:
    url: str
    # "md5:<hex>" or "sha256:<hex>"; None means a gzip integrity check plus a recorded sha256.
    checksum: Optional[str] = None
    # Zip archives are unpacked into the dataset directory after verification.
    extract: bool = False

    @property
    def filename(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class RemoteDataset:
    # The directory (under the download root) that data.path should name.
    directory: str
    files: Tuple[RemoteFile, ...]
    dataset: str  # the DataConfig.dataset that reads it


KNOWN_DATASETS: Dict[str, RemoteDataset] = {
    "ml-1m": RemoteDataset("ml-1m", (
        RemoteFile("https://files.grouplens.org/datasets/movielens/ml-1m.zip",
                   "md5:c4d9eecfca2ab87c1945afe126590906", extract=True),), "ml-1m"),
    "amazon-2018-video-games": RemoteDataset("amazon-2018-video-games", (
        RemoteFile(f"{_AMAZON_2018}/categoryFilesSmall/Video_Games_5.json.gz"),
        RemoteFile(f"{_AMAZON_2018}/metaFiles2/meta_Video_Games.json.gz"),
    ), "amazon-2018"),
}


def _parse_checksum(checksum: str) -> Tuple[str, str]:
    algorithm, _, expected = checksum.partition(":")
    if algorithm not in ("md5", "sha256") or not expected:
        raise ValueError(f"checksum must look like 'md5:<hex>' or 'sha256:<hex>', got {checksum!r}")
    return algorithm, expected.lower()


def _digest(path: Path, algorithm: str) -> str:
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def _gzip_problem(path: Path) -> Optional[str]:
    try:
        with gzip.open(path, "rb") as handle:
            while handle.read(_CHUNK):
                pass
    except (OSError, EOFError) as error:
        return str(error) or type(error).__name__
    return None


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def is_complete(path: Path, checksum: Optional[str]) -> bool:
    """Whether `path` holds the complete, verified file (so it need not be downloaded again)."""
    if not path.is_file():
        return False
    if checksum is not None:
        algorithm, expected = _parse_checksum(checksum)
        return _digest(path, algorithm) == expected
    sidecar = _sidecar(path)
    return sidecar.is_file() and sidecar.read_text(encoding="utf-8").strip() == _digest(path, "sha256")


def _remove_stale_temporaries(destination: Path) -> None:
    for stale in destination.parent.glob(f".{destination.name}.part-*"):
        stale.unlink(missing_ok=True)


def download_file(url: str, destination: Union[str, Path], checksum: Optional[str] = None, *,
                  progress: bool = True, timeout: float = 60.0) -> Path:
    """Downloads `url` to `destination` unless a verified copy is already there; returns the path.

    Raises DownloadError (naming the URL) when the transfer fails or does not verify; then no
    file is left at `destination` or beside it.
    """
    destination = Path(destination)
    if checksum is not None:
        _parse_checksum(checksum)
    if is_complete(destination, checksum):
        log.info("%s is already downloaded and verified", destination)
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(destination)
    temporary = destination.with_name(f".{destination.name}.part-{uuid.uuid4().hex[:8]}")
    algorithm, expected = _parse_checksum(checksum) if checksum is not None else ("sha256", None)
    hasher = hashlib.new(algorithm)
    try:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(temporary, "wb") as output:
                total = response.headers.get("Content-Length")
                with tqdm(total=int(total) if total else None, unit="B", unit_scale=True, unit_divisor=1024,
                          desc=destination.name, disable=not progress, leave=False) as bar:
                    for chunk in iter(lambda: response.read(_CHUNK), b""):
                        output.write(chunk)
                        hasher.update(chunk)
                        bar.update(len(chunk))
        except OSError as error:
            raise DownloadError(url, f"download failed: {error}") from None
        digest = hasher.hexdigest()
        if expected is not None and digest != expected:
            raise DownloadError(url, f"checksum mismatch: expected {algorithm}:{expected}, got {algorithm}:{digest}")
        if expected is None and destination.name.endswith(".gz"):
            problem = _gzip_problem(temporary)
            if problem is not None:
                raise DownloadError(url, f"incomplete or corrupt gzip data: {problem}")
        os.replace(temporary, destination)
        if expected is None:
            _sidecar(destination).write_text(digest + "\n", encoding="utf-8")
            log.info("%s: no published checksum; recorded sha256:%s", destination, digest)
    finally:
        temporary.unlink(missing_ok=True)
    return destination


def _extract_zip(archive: Path, into: Path) -> None:
    """Unpacks into a temporary directory and moves each top-level entry into place."""
    staging = into / f".extract-{uuid.uuid4().hex[:8]}"
    try:
        with zipfile.ZipFile(archive) as bundle:
            for member in bundle.namelist():
                target = (staging / member).resolve()
                if not str(target).startswith(str(staging.resolve())):
                    raise DownloadError(archive, f"unsafe path in archive: {member}")
            bundle.extractall(staging)
        for entry in staging.iterdir():
            final = into / entry.name
            if entry.is_dir():
                publish_directory(entry, final)
            else:
                os.replace(entry, final)
    except zipfile.BadZipFile as error:
        raise DownloadError(archive, f"not a valid zip archive: {error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def fetch_files(files: Sequence[RemoteFile], directory: Union[str, Path], *, progress: bool = True) -> List[Path]:
    """Downloads (and unpacks) `files` into `directory`; returns the downloaded file paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for remote in files:
        path = directory / remote.filename
        was_complete = is_complete(path, remote.checksum)
        download_file(remote.url, path, remote.checksum, progress=progress)
        marker = directory / f".{remote.filename}.extracted"
        if remote.extract and not (was_complete and marker.is_file()):
            _extract_zip(path, directory)
            marker.write_text("", encoding="utf-8")
        paths.append(path)
    return paths


def fetch_dataset(name: str, root: Union[str, Path], *, progress: bool = True) -> Path:
    """Fetches a known dataset under `root`; returns the directory to use as `data.path`."""
    if name not in KNOWN_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(KNOWN_DATASETS))}")
    remote = KNOWN_DATASETS[name]
    root = Path(root)
    # Zips carry their own top-level directory; plain files go into the dataset's directory.
    target = root if all(file.extract for file in remote.files) else root / remote.directory
    fetch_files(remote.files, target, progress=progress)
    return root / remote.directory


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfrs_llmrec.data.download", description=__doc__.split("\n")[0])
    parser.add_argument("dataset", choices=sorted(KNOWN_DATASETS))
    parser.add_argument("root", help="directory to download into")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        path = fetch_dataset(arguments.dataset, arguments.root, progress=not arguments.quiet)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{arguments.dataset}: set data.dataset: {KNOWN_DATASETS[arguments.dataset].dataset} "
          f"and data.path: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
