"""Raw dataset readers that turn each source's rows into canonical records.

An interaction is a tuple `(user_id, item_id, timestamp, label)` of raw string ids, a float
timestamp (only its order matters) and a float label (the rating, or 1.0 without one). An item
is an `ItemText`. Readers stream one file at a time and yield `(line, record)` pairs, where a
row that cannot be parsed yields a `RowProblem` instead of a record, so the caller decides
between failing (`DataError` at `file:line`) and counting the row as dropped.

Sources: MovieLens-100K (RecBole atomic files, embedded in the recbole wheel), MovieLens-1M
(`ratings.dat`/`movies.dat`), Amazon Video Games in RecBole's sequence format (shared data),
Amazon 2018 review/metadata JSON lines, and generic csv/parquet files with a column mapping.
"""

from __future__ import annotations

import abc
import csv
import datetime
import glob
import gzip
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from tfrs_llmrec.assets import AssetNotFound, amazon_games_dir
from tfrs_llmrec.config.schema import ColumnsConfig, DataConfig
from tfrs_llmrec.data.errors import DataError

Interaction = Tuple[str, str, float, float]
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class ItemText:
    item_id: str
    title: str = ""
    genres: Tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class RowProblem:
    """Why one row was rejected; `reason` is a short key counted in stats.json."""

    reason: str
    detail: str


class _Reject(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.problem = RowProblem(reason, detail)


# ---------------------------------------------------------------- files and lines


def _is_remote(path: str) -> bool:
    return "://" in path


def expand_paths(pattern: str) -> List[str]:
    """The files a path or glob names, sorted; a DataError names the pattern when none exist."""
    if any(char in pattern for char in "*?["):
        matches = [match for match in _glob(pattern) if not _is_dir(match)]
        if not matches:
            raise DataError(pattern, "no files match this pattern")
        return matches
    if not _exists(pattern):
        raise DataError(pattern, "no such file")
    if _is_dir(pattern):
        raise DataError(pattern, "expected a file, got a directory")
    return [pattern]


def _glob(pattern: str) -> List[str]:
    if _is_remote(pattern):
        import tensorflow as tf

        return sorted(tf.io.gfile.glob(pattern))
    return sorted(glob.glob(pattern))


def _exists(path: str) -> bool:
    if _is_remote(path):
        import tensorflow as tf

        return tf.io.gfile.exists(path)
    return os.path.exists(path)


def _is_dir(path: str) -> bool:
    if _is_remote(path):
        import tensorflow as tf

        return tf.io.gfile.isdir(path)
    return os.path.isdir(path)


def file_size(path: str) -> int:
    if _is_remote(path):
        import tensorflow as tf

        return tf.io.gfile.stat(path).length
    return os.path.getsize(path)


def _open_binary(path: str):
    if _is_remote(path):
        import tensorflow as tf

        handle = tf.io.gfile.GFile(path, "rb")
    else:
        handle = open(path, "rb")
    if path.endswith(".gz"):
        return gzip.GzipFile(fileobj=handle, mode="rb")
    return handle


def iter_lines(path: str, encoding: str = "utf-8") -> Iterator[Tuple[int, str]]:
    """(1-based line number, text without its line ending) for every line of a text file."""
    number = 0
    pending = b""
    with _open_binary(path) as handle:
        while True:
            chunk = handle.read(_READ_CHUNK)
            if not chunk:
                break
            pending += chunk
            lines = pending.split(b"\n")
            pending = lines.pop()
            for raw in lines:
                number += 1
                yield number, _decode(raw, path, number, encoding)
        if pending:
            number += 1
            yield number, _decode(pending, path, number, encoding)


def _decode(raw: bytes, path: str, number: int, encoding: str) -> str:
    try:
        return raw.rstrip(b"\r").decode(encoding)
    except UnicodeDecodeError as error:
        raise DataError(path, f"not valid {encoding} text ({error.reason} at byte {error.start})", line=number)


# ---------------------------------------------------------------- tables


@dataclass(frozen=True)
class Table:
    """One input file and the logical fields to read from it.

    `columns` maps a logical field to the file's column name; `config_keys` names the config
    key that chose each column, for error messages. Delimited text files take their column
    names from a header row (RecBole's `name:type` headers are read as `name`), or from
    `names` when `header` is False; parquet files from their schema.
    """

    path: str
    columns: Mapping[str, str]
    config_keys: Mapping[str, str] = field(default_factory=dict)
    kind: str = "delimited"  # "delimited", "parquet" or "jsonl"
    separator: str = ","
    quoted: bool = False
    header: bool = True
    names: Tuple[str, ...] = ()
    encoding: str = "utf-8"

    def _split(self, line: str) -> List[str]:
        if self.quoted and len(self.separator) == 1:
            return next(csv.reader([line], delimiter=self.separator))
        return line.split(self.separator)

    def _header_names(self, line: str) -> List[str]:
        return [name.strip().split(":")[0] for name in self._split(line)]

    def _resolve(self, available: Sequence[str]) -> Dict[str, int]:
        positions = {}
        for logical, physical in self.columns.items():
            if physical not in available:
                key = self.config_keys.get(logical)
                chosen = f" (set by {key})" if key else ""
                raise DataError(self.path, f"unknown column {physical!r}{chosen}; available columns: "
                                           f"{', '.join(available) if available else '(none)'}")
            positions[logical] = list(available).index(physical)
        return positions

    def check(self) -> None:
        """Cheap checks before a pipeline starts: the file exists, is not empty, has the columns."""
        if not _exists(self.path):
            raise DataError(self.path, "no such file")
        if file_size(self.path) == 0:
            raise DataError(self.path, "file is empty")
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            import pyarrow as pa

            with _open_binary(self.path) as handle:
                try:
                    parquet = pq.ParquetFile(handle)
                except (pa.ArrowException, OSError) as error:
                    raise DataError(self.path, f"not a readable parquet file ({error})") from None
                self._resolve(parquet.schema_arrow.names)
                if parquet.metadata.num_rows == 0:
                    raise DataError(self.path, "file has no rows")
            return
        expects_header = self.kind == "delimited" and self.header
        saw_header = False
        for _, line in iter_lines(self.path, self.encoding):
            if not line.strip():
                continue
            if expects_header:
                self._resolve(self._header_names(line))
                expects_header, saw_header = False, True
                continue
            return  # the file has at least one row
        raise DataError(self.path, "file has a header but no rows" if saw_header else "file is empty")

    def rows(self) -> Iterator[Tuple[int, Union[Dict[str, object], RowProblem]]]:
        """(line or row number, {logical field: value}) per row, or a RowProblem for a bad row."""
        if self.kind == "parquet":
            yield from self._parquet_rows()
        elif self.kind == "jsonl":
            yield from self._json_rows()
        else:
            yield from self._delimited_rows()

    def _delimited_rows(self):
        positions = None if self.header else self._resolve(self.names)
        width = None if self.header else len(self.names)
        for number, line in iter_lines(self.path, self.encoding):
            if not line.strip():
                continue
            if positions is None:
                names = self._header_names(line)
                positions, width = self._resolve(names), len(names)
                continue
            try:
                values = self._split(line)
            except csv.Error as error:
                yield number, RowProblem("malformed", f"cannot split the row: {error}")
                continue
            if len(values) != width:
                yield number, RowProblem("field_count", f"expected {width} fields, got {len(values)}")
                continue
            yield number, {logical: values[position] for logical, position in positions.items()}

    def _parquet_rows(self):
        import pyarrow.parquet as pq

        with _open_binary(self.path) as handle:
            parquet = pq.ParquetFile(handle)
            self._resolve(parquet.schema_arrow.names)
            wanted = list(dict.fromkeys(self.columns.values()))
            number = 0
            for batch in parquet.iter_batches(columns=wanted, batch_size=65536):
                for row in batch.to_pylist():
                    number += 1
                    yield number, {logical: row[physical] for logical, physical in self.columns.items()}

    def _json_rows(self):
        for number, line in iter_lines(self.path, self.encoding):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                yield number, RowProblem("malformed", f"invalid JSON: {error.msg}")
                continue
            if not isinstance(record, dict):
                yield number, RowProblem("malformed", "expected a JSON object")
                continue
            missing = [physical for physical in self.columns.values() if physical not in record]
            if missing:
                yield number, RowProblem("missing_field", f"missing field(s) {', '.join(missing)}")
                continue
            yield number, {logical: record[physical] for logical, physical in self.columns.items()}


# ---------------------------------------------------------------- field parsing


def parse_id(value: object, what: str) -> str:
    if value is None:
        raise _Reject("empty_id", f"empty {what}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if not text:
        raise _Reject("empty_id", f"empty {what}")
    if "\n" in text or "\r" in text:
        raise _Reject("bad_id", f"{what} {text!r} contains a line break")
    return text


def parse_timestamp(value: object) -> float:
    """Seconds (or any ordered number); ISO-8601 text and datetimes are read as UTC seconds."""
    if isinstance(value, datetime.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
        return moment.timestamp()
    if isinstance(value, datetime.date):
        return datetime.datetime(value.year, value.month, value.day, tzinfo=datetime.timezone.utc).timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        text = "" if value is None else str(value).strip()
        try:
            number = float(text)
        except ValueError:
            try:
                moment = datetime.datetime.fromisoformat(text)
            except ValueError:
                raise _Reject("bad_timestamp", f"timestamp {text!r} is neither a number nor ISO-8601")
            return parse_timestamp(moment)
    if not math.isfinite(number):
        raise _Reject("bad_timestamp", f"timestamp {value!r} is not finite")
    return number


def parse_label(value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _Reject("bad_label", f"rating {value!r} is not a number")
    if not math.isfinite(number):
        raise _Reject("bad_label", f"rating {value!r} is not finite")
    return number


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(_text(part) for part in value if part is not None).strip()
    return str(value).strip()


def _genres(value: object, separator: str) -> Tuple[str, ...]:
    if value is None:
        return ()
    parts = value if isinstance(value, (list, tuple)) else str(value).split(separator)
    return tuple(text for text in (_text(part) for part in parts) if text)


# ---------------------------------------------------------------- adapters


class SourceAdapter(abc.ABC):
    """A dataset's raw files plus how their rows become interactions and item texts."""

    dataset = ""
    has_labels = False

    @abc.abstractmethod
    def interaction_tables(self) -> List[Table]:
        """The files holding interactions, in a fixed order."""

    def item_tables(self) -> List[Table]:
        return []

    def interactions_from_row(self, row: Mapping[str, object]) -> List[Interaction]:
        return [(parse_id(row["user"], "user id"), parse_id(row["item"], "item id"),
                 parse_timestamp(row["timestamp"]), parse_label(row["label"]) if "label" in row else 1.0)]

    def item_from_row(self, row: Mapping[str, object]) -> ItemText:
        return ItemText(parse_id(row["item"], "item id"), _text(row.get("title")),
                        _genres(row.get("genres"), "|"), _text(row.get("description")))

    def check(self, min_rating: Optional[float]) -> None:
        """Checks every input file's presence, emptiness and columns before ingestion starts."""
        tables = self.interaction_tables()
        for table in tables + self.item_tables():
            table.check()
        if min_rating is not None and not self.has_labels:
            raise DataError(tables[0].path, "data.min_rating is set but this source has no rating column")

    def read_interactions(self, table: Table) -> Iterator[Tuple[int, Union[List[Interaction], RowProblem]]]:
        for number, row in table.rows():
            if isinstance(row, RowProblem):
                yield number, row
                continue
            try:
                yield number, self.interactions_from_row(row)
            except _Reject as rejected:
                yield number, rejected.problem

    def read_items(self, table: Table) -> Iterator[Tuple[int, Union[ItemText, RowProblem]]]:
        for number, row in table.rows():
            if isinstance(row, RowProblem):
                yield number, row
                continue
            try:
                yield number, self.item_from_row(row)
            except _Reject as rejected:
                yield number, rejected.problem


def _directory(path: Optional[str], default: Optional[Path], dataset: str, hint: str) -> str:
    if path is None:
        if default is None:
            raise DataError(f"<data.path for {dataset}>", f"data.path is required; {hint}")
        path = str(default)
    if not _is_dir(path):
        raise DataError(path, f"expected the {dataset} directory; {hint}")
    return path.rstrip("/")


def _one_file(directory: str, *patterns: str) -> str:
    matches = sorted({match for pattern in patterns for match in _glob(f"{directory}/{pattern}")})
    if len(matches) != 1:
        found = ", ".join(os.path.basename(match) for match in matches) or "none"
        raise DataError(directory, f"expected exactly one {' or '.join(patterns)} file, found {found}")
    return matches[0]


class MovieLens100K(SourceAdapter):
    """RecBole's atomic ml-100k files: `.inter` (user, item, rating, timestamp), `.item` (text)."""

    dataset = "ml-100k"
    has_labels = True

    def __init__(self, path: Optional[str]):
        if path is None:
            from tfrs_llmrec.assets import AssetNotFound, movielens_100k_dir

            try:
                path = str(movielens_100k_dir())
            except AssetNotFound as error:
                raise DataError(f"<embedded {self.dataset}>", str(error)) from None
        self.directory = _directory(path, None, self.dataset, "it holds ml-100k.inter and ml-100k.item")

    def interaction_tables(self) -> List[Table]:
        columns = {"user": "user_id", "item": "item_id", "label": "rating", "timestamp": "timestamp"}
        return [Table(os.path.join(self.directory, "ml-100k.inter"), columns, separator="\t")]

    def item_tables(self) -> List[Table]:
        columns = {"item": "item_id", "title": "movie_title", "year": "release_year", "genres": "class"}
        return [Table(os.path.join(self.directory, "ml-100k.item"), columns, separator="\t")]

    def item_from_row(self, row: Mapping[str, object]) -> ItemText:
        title, year = _text(row["title"]), _text(row["year"])
        # "Toy Story" + "1995" -> "Toy Story (1995)", the way MovieLens itself writes titles.
        full_title = f"{title} ({year})" if year.isdigit() else title
        return ItemText(parse_id(row["item"], "item id"), full_title, _genres(row["genres"], " "))


class MovieLens1M(SourceAdapter):
    """GroupLens ml-1m: `ratings.dat` (UserID::MovieID::Rating::Timestamp) and `movies.dat`."""

    dataset = "ml-1m"
    has_labels = True

    def __init__(self, path: Optional[str]):
        hint = "download it with `python -m tfrs_llmrec.data.download ml-1m DIR` and set data.path to DIR/ml-1m"
        self.directory = _directory(path, None, self.dataset, hint)

    def interaction_tables(self) -> List[Table]:
        names = ("user", "item", "label", "timestamp")
        return [Table(os.path.join(self.directory, "ratings.dat"), {name: name for name in names},
                      separator="::", header=False, names=names, encoding="latin-1")]

    def item_tables(self) -> List[Table]:
        names = ("item", "title", "genres")
        return [Table(os.path.join(self.directory, "movies.dat"), {name: name for name in names},
                      separator="::", header=False, names=names, encoding="latin-1")]


class AmazonGames(SourceAdapter):
    """RecBole sequence files: each `.inter` row holds a user's chronological history and next item.

    The user's timeline is the history followed by the next item; positions serve as timestamps.
    """

    dataset = "amazon-games"

    def __init__(self, path: Optional[str]):
        hint = "it holds one *.inter file (user_id, item_id_list, item_id) and one *.item file"
        if path is None:
            try:
                path = str(amazon_games_dir())
            except AssetNotFound as missing:
                raise DataError("<data.path for amazon-games>", str(missing)) from None
        self.directory = _directory(path, None, self.dataset, hint)

    def interaction_tables(self) -> List[Table]:
        columns = {"user": "user_id", "history": "item_id_list", "item": "item_id"}
        return [Table(_one_file(self.directory, "*.inter"), columns, separator="\t")]

    def item_tables(self) -> List[Table]:
        return [Table(_one_file(self.directory, "*.item"), {"item": "item_id", "title": "title"}, separator="\t")]

    def interactions_from_row(self, row: Mapping[str, object]) -> List[Interaction]:
        user = parse_id(row["user"], "user id")
        timeline = str(row["history"]).split() + [parse_id(row["item"], "item id")]
        return [(user, item, float(position), 1.0) for position, item in enumerate(timeline)]


class Amazon2018(SourceAdapter):
    """Amazon review data (2018): `<Category>_5.json.gz` reviews and `meta_<Category>.json.gz`."""

    dataset = "amazon-2018"
    has_labels = True

    def __init__(self, path: Optional[str]):
        hint = "download it with `python -m tfrs_llmrec.data.download amazon-2018-video-games DIR`"
        self.directory = _directory(path, None, self.dataset, hint)

    def interaction_tables(self) -> List[Table]:
        columns = {"user": "reviewerID", "item": "asin", "label": "overall", "timestamp": "unixReviewTime"}
        return [Table(_one_file(self.directory, "*_5.json", "*_5.json.gz"), columns, kind="jsonl")]

    def item_tables(self) -> List[Table]:
        return [Table(_one_file(self.directory, "meta_*.json", "meta_*.json.gz"), {"item": "asin"}, kind="jsonl")]

    def read_items(self, table: Table):
        # Metadata rows vary in which fields they carry, so they are read whole.
        for number, line in iter_lines(table.path, table.encoding):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                yield number, ItemText(parse_id(record.get("asin"), "asin"), _text(record.get("title")),
                                       _genres(record.get("category"), "|"), _text(record.get("description")))
            except json.JSONDecodeError as error:
                yield number, RowProblem("malformed", f"invalid JSON: {error.msg}")
            except (_Reject, AttributeError) as error:
                problem = error.problem if isinstance(error, _Reject) else RowProblem("malformed", str(error))
                yield number, problem


class ColumnMapped(SourceAdapter):
    """Generic csv or parquet interactions (and an optional item table) named by `data.columns`."""

    def __init__(self, path: Optional[str], columns: ColumnsConfig, kind: str):
        if path is None:
            raise DataError(f"<data.path for {kind}>", "data.path is required")
        self.dataset = kind
        self.pattern = path
        self.columns = columns
        self.has_labels = columns.label is not None

    def _table(self, path: str, columns: Dict[str, str], keys: Dict[str, str]) -> Table:
        # The dataset kind decides, except that an item table may be the other format.
        text_suffixes = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz")
        parquet = path.endswith(".parquet") or (self.dataset == "parquet" and not path.endswith(text_suffixes))
        return Table(path, columns, keys, kind="parquet" if parquet else "delimited",
                     separator=self.columns.separator, quoted=True)

    def interaction_tables(self) -> List[Table]:
        mapping = {"user": self.columns.user, "item": self.columns.item, "timestamp": self.columns.timestamp}
        if self.columns.label is not None:
            mapping["label"] = self.columns.label
        keys = {logical: f"data.columns.{logical}" for logical in mapping}
        return [self._table(path, mapping, keys) for path in expand_paths(self.pattern)]

    def item_tables(self) -> List[Table]:
        if self.columns.items_path is None:
            return []
        mapping = {"item": self.columns.item_id}
        keys = {"item": "data.columns.item_id"}
        for logical in ("title", "genres", "description"):
            physical = getattr(self.columns, logical)
            if physical is not None:
                mapping[logical] = physical
                keys[logical] = f"data.columns.{logical}"
        return [self._table(path, mapping, keys) for path in expand_paths(self.columns.items_path)]

    def item_from_row(self, row: Mapping[str, object]) -> ItemText:
        return ItemText(parse_id(row["item"], "item id"), _text(row.get("title")),
                        _genres(row.get("genres"), self.columns.genres_separator), _text(row.get("description")))


_ADAPTERS: Dict[str, Callable[[DataConfig], SourceAdapter]] = {
    "ml-100k": lambda config: MovieLens100K(config.path),
    "ml-1m": lambda config: MovieLens1M(config.path),
    "amazon-games": lambda config: AmazonGames(config.path),
    "amazon-2018": lambda config: Amazon2018(config.path),
    "csv": lambda config: ColumnMapped(config.path, config.columns, "csv"),
    "parquet": lambda config: ColumnMapped(config.path, config.columns, "parquet"),
}


def adapter_for(config: DataConfig) -> SourceAdapter:
    """The reader for `config.dataset`; raises DataError when its files cannot be found."""
    return _ADAPTERS[config.dataset](config)


def describe_bytes(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


__all__ = [
    "Amazon2018", "AmazonGames", "ColumnMapped", "Interaction", "ItemText",
    "MovieLens100K", "MovieLens1M", "RowProblem", "SourceAdapter", "Table", "adapter_for", "expand_paths",
    "describe_bytes", "file_size", "iter_lines", "parse_label", "parse_timestamp",
]
