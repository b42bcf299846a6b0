"""An on-disk record of every LLM response, so generation is a resumable batch job.

Entries live in one SQLite file (`<cache_dir>/llm_responses.sqlite`), one row per key, each
written in its own transaction: a run killed at any point leaves every completed response on
disk and no half-written row, and the next run asks only for what is missing. Failures are
recorded too (with their reason) so they can be inspected, but a later run retries them; a
failure never overwrites a success.

The key is the sha256 of (backend, model, prompt name, prompt version, inputs, params); it
holds no endpoint URL or credential, and nothing the cache stores comes from the API key.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Mapping, Optional, Union

CACHE_FILE = "llm_responses.sqlite"
SCHEMA_VERSION = 1
OK = "ok"
FAILED = "failed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    value TEXT,
    raw TEXT,
    reason TEXT,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt TEXT NOT NULL,
    prompt_version INTEGER NOT NULL,
    inputs TEXT NOT NULL,
    params TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def cache_key(backend: str, model: str, prompt_name: str, prompt_version: int,
              inputs: Mapping[str, Any], params: Optional[Mapping[str, Any]] = None) -> str:
    """sha256 over a canonical JSON of everything that decides the response."""
    payload = {"backend": backend, "model": model, "prompt": prompt_name,
               "prompt_version": int(prompt_version), "inputs": dict(inputs), "params": dict(params or {})}
    return hashlib.sha256(_canonical(payload).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    key: str
    status: str
    value: Any
    raw: Optional[str]
    reason: Optional[str]
    attempts: int
    prompt_tokens: int
    completion_tokens: int
    failures: int

    @property
    def ok(self) -> bool:
        return self.status == OK


@dataclass(frozen=True)
class CacheRecordInfo:
    """What the row describes, stored beside the response for inspection."""

    backend: str
    model: str
    prompt_name: str
    prompt_version: int
    inputs: Mapping[str, Any]
    params: Mapping[str, Any]

    def key(self) -> str:
        return cache_key(self.backend, self.model, self.prompt_name, self.prompt_version,
                         self.inputs, self.params)


class ResponseCache:
    """SQLite-backed response cache; use from one thread (writes happen in the caller's thread)."""

    def __init__(self, directory: Union[str, os.PathLike]):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / CACHE_FILE
        # isolation_level=None: autocommit, transactions opened explicitly below.
        self._db = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            pass  # some network file systems refuse WAL; the rollback journal is atomic too
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._transaction():
            for statement in _SCHEMA.strip().split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('schema_version', ?)",
                             (str(SCHEMA_VERSION),))
        found = self._db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
        if found is None or int(found[0]) != SCHEMA_VERSION:
            self._db.close()
            raise RuntimeError(f"{self.path} has cache schema {found and found[0]}, expected {SCHEMA_VERSION}")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction, taken before reading so concurrent writers queue up."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "ResponseCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def counts(self) -> Dict[str, int]:
        rows = self._db.execute("SELECT status, COUNT(*) FROM responses GROUP BY status").fetchall()
        counts = {OK: 0, FAILED: 0}
        counts.update({status: int(n) for status, n in rows})
        return counts

    def get(self, key: str) -> Optional[CacheEntry]:
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str]) -> Dict[str, CacheEntry]:
        keys = list(dict.fromkeys(keys))
        found: Dict[str, CacheEntry] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                "SELECT key, status, value, raw, reason, attempts, prompt_tokens, completion_tokens, failures "
                f"FROM responses WHERE key IN ({marks})", chunk).fetchall()
            for row in rows:
                found[row[0]] = _entry(row)
        return found

    def entries(self) -> Iterator[CacheEntry]:
        cursor = self._db.execute(
            "SELECT key, status, value, raw, reason, attempts, prompt_tokens, completion_tokens, failures "
            "FROM responses ORDER BY key")
        for row in cursor:
            yield _entry(row)

    def put_success(self, info: CacheRecordInfo, value: Any, *, raw: Optional[str] = None,
                    attempts: int = 1, prompt_tokens: int = 0, completion_tokens: int = 0) -> str:
        """Stores a validated response (JSON-serialisable `value`); replaces an earlier failure."""
        key = info.key()
        with self._transaction():
            self._db.execute(
                "INSERT INTO responses (key, status, value, raw, reason, backend, model, prompt, prompt_version,"
                " inputs, params, attempts, prompt_tokens, completion_tokens, failures, updated_at)"
                " VALUES (?, 'ok', ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)"
                " ON CONFLICT(key) DO UPDATE SET status='ok', value=excluded.value, raw=excluded.raw,"
                " reason=NULL, attempts=responses.attempts + excluded.attempts,"
                " prompt_tokens=responses.prompt_tokens + excluded.prompt_tokens,"
                " completion_tokens=responses.completion_tokens + excluded.completion_tokens,"
                " updated_at=excluded.updated_at",
                (key, _canonical(value), raw, *self._describe(info), attempts, prompt_tokens,
                 completion_tokens, time.time()))
        return key

    def put_failure(self, info: CacheRecordInfo, reason: str, *, raw: Optional[str] = None,
                    attempts: int = 1, prompt_tokens: int = 0, completion_tokens: int = 0) -> str:
        """Records a failure with its reason; a stored success is left as it is."""
        key = info.key()
        with self._transaction():
            self._db.execute(
                "INSERT INTO responses (key, status, value, raw, reason, backend, model, prompt, prompt_version,"
                " inputs, params, attempts, prompt_tokens, completion_tokens, failures, updated_at)"
                " VALUES (?, 'failed', NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)"
                " ON CONFLICT(key) DO UPDATE SET raw=excluded.raw, reason=excluded.reason,"
                " attempts=responses.attempts + excluded.attempts,"
                " prompt_tokens=responses.prompt_tokens + excluded.prompt_tokens,"
                " completion_tokens=responses.completion_tokens + excluded.completion_tokens,"
                " failures=responses.failures + 1, updated_at=excluded.updated_at"
                " WHERE responses.status = 'failed'",
                (key, raw, reason, *self._describe(info), attempts, prompt_tokens, completion_tokens,
                 time.time()))
        return key

    @staticmethod
    def _describe(info: CacheRecordInfo):
        return (info.backend, info.model, info.prompt_name, int(info.prompt_version),
                _canonical(dict(info.inputs)), _canonical(dict(info.params)))


def _entry(row) -> CacheEntry:
    key, status, value, raw, reason, attempts, prompt_tokens, completion_tokens, failures = row
    return CacheEntry(key=key, status=status, value=json.loads(value) if value is not None else None,
                      raw=raw, reason=reason, attempts=int(attempts), prompt_tokens=int(prompt_tokens),
                      completion_tokens=int(completion_tokens), failures=int(failures))
