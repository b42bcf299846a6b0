"""The downloader, against local file:// URLs (no network)."""

import gzip
import hashlib
import zipfile

import pytest

from tfrs_llmrec.data import download
from tfrs_llmrec.data.download import DownloadError, RemoteFile, download_file, fetch_files


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "remote" / "ratings.bin"
    path.parent.mkdir()
    path.write_bytes(b"0123456789" * 50_000)
    return path


def leftovers(directory):
    return sorted(path.name for path in directory.iterdir()) if directory.exists() else []


def test_good_checksum_downloads_and_a_verified_copy_is_kept(source, tmp_path, monkeypatch):
    sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
    target = tmp_path / "data" / "ratings.bin"
    assert download_file(source.as_uri(), target, f"sha256:{sha256}", progress=False) == target
    assert target.read_bytes() == source.read_bytes()
    assert leftovers(target.parent) == ["ratings.bin"]

    def offline(*args, **kwargs):
        raise AssertionError("downloaded again")

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    assert download_file(source.as_uri(), target, f"md5:{md5}", progress=False) == target


def test_bad_checksum_fails_and_leaves_no_file(source, tmp_path):
    target = tmp_path / "data" / "ratings.bin"
    with pytest.raises(DownloadError, match=f"^{source.as_uri()}: checksum mismatch: expected md5:0+, got md5:"):
        download_file(source.as_uri(), target, "md5:" + "0" * 32, progress=False)
    assert leftovers(target.parent) == []


def test_a_damaged_copy_is_downloaded_again(source, tmp_path):
    sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
    target = tmp_path / "ratings.bin"
    target.write_bytes(b"truncated")
    download_file(source.as_uri(), target, f"sha256:{sha256}", progress=False)
    assert target.read_bytes() == source.read_bytes()


def test_missing_url_is_a_download_error(tmp_path):
    missing = (tmp_path / "absent.zip").as_uri()
    with pytest.raises(DownloadError, match=f"^{missing}: download failed"):
        download_file(missing, tmp_path / "out" / "absent.zip", progress=False)
    assert leftovers(tmp_path / "out") == []


def test_gzip_without_checksum_is_checked_whole_and_recorded(tmp_path):
    good = tmp_path / "good.json.gz"
    good.write_bytes(gzip.compress(b'{"asin": "B01"}\n' * 1000))
    target = tmp_path / "out" / "reviews.json.gz"
    download_file(good.as_uri(), target, progress=False)
    assert (target.parent / "reviews.json.gz.sha256").read_text().strip() == hashlib.sha256(good.read_bytes()).hexdigest()
    assert download.is_complete(target, None)

    cut = tmp_path / "cut.json.gz"
    cut.write_bytes(good.read_bytes()[:-20])
    other = tmp_path / "out2" / "reviews.json.gz"
    with pytest.raises(DownloadError, match="incomplete or corrupt gzip data"):
        download_file(cut.as_uri(), other, progress=False)
    assert leftovers(other.parent) == []


def test_zip_is_verified_then_unpacked(tmp_path):
    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("ml-1m/ratings.dat", "1::2::5::978300760\n")
        bundle.writestr("ml-1m/movies.dat", "2::Jumanji (1995)::Adventure\n")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    fetch_files([RemoteFile(archive.as_uri(), f"md5:{md5}", extract=True)], tmp_path / "data", progress=False)
    assert (tmp_path / "data" / "ml-1m" / "ratings.dat").read_text() == "1::2::5::978300760\n"
    assert not [path for path in (tmp_path / "data").iterdir() if path.name.startswith(".extract-")]


def test_known_datasets_have_checksums_where_published():
    (movielens,) = download.KNOWN_DATASETS["ml-1m"].files
    assert movielens.checksum == "md5:c4d9eecfca2ab87c1945afe126590906" and movielens.extract
    assert download.KNOWN_DATASETS["amazon-2018-video-games"].dataset == "amazon-2018"
