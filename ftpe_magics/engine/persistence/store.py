"""The run store: one SQLite file that outlives the kernel (stdlib ``sqlite3``, WAL mode).

Every run is a row: what reproduces it (``record``: model and weight fingerprint, template, data
fingerprints, settings, seeds, library versions, device) and what rebuilds its result (``result``:
per-example predictions and outputs). Adapters trained with a store on are rows too, pointing at
their folder beside the file (a path relative to it, never one of this machine), with a status a
new kernel can read: finished, stopped, or still ``running`` by a process that no longer exists.

Several kernels may write at once: WAL lets readers go on while one writes, each write is one
short ``BEGIN IMMEDIATE`` transaction, and a writer that finds the file busy waits and tries again
rather than showing the user "database is locked".
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FtpeError
from ..model.loading import display_path

# each entry takes the schema from its index to index + 1; PRAGMA user_version holds how many ran
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        name TEXT,
        created TEXT NOT NULL,
        model TEXT,
        model_fingerprint TEXT,
        status TEXT NOT NULL,
        seconds REAL,
        summary TEXT,
        cache_key TEXT,
        record TEXT NOT NULL,
        result TEXT NOT NULL
    );
    CREATE INDEX runs_by_cache_key ON runs (cache_key);
    CREATE INDEX runs_by_kind_name ON runs (kind, name);
    CREATE TABLE adapters (
        model_fingerprint TEXT NOT NULL,
        name TEXT NOT NULL,
        folder TEXT NOT NULL,
        method TEXT,
        status TEXT NOT NULL,
        step INTEGER NOT NULL DEFAULT 0,
        best_metric REAL,
        host TEXT,
        pid INTEGER,
        updated TEXT NOT NULL,
        PRIMARY KEY (model_fingerprint, name)
    );
    CREATE TABLE embeddings (
        model TEXT NOT NULL,
        text_hash TEXT NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (model, text_hash)
    );
    """,
    # 0.5: what a load of given weight files with given options produced, so a new kernel finds its cached
    # results without loading the model (``signature`` digests the files' names, sizes and times and the options)
    """
    CREATE TABLE loads (
        signature TEXT PRIMARY KEY,
        environment TEXT NOT NULL,
        parameters INTEGER NOT NULL,
        updated TEXT NOT NULL
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
RUN_KINDS = ("prompt", "fewshot", "compare", "condition", "finetune")
_BUSY_SECONDS = 60.0  # how long a writer waits for another kernel's write before it gives up


def now_text() -> str:
    return datetime.now().isoformat(timespec="seconds")


def _busy(error: sqlite3.OperationalError) -> bool:
    text = str(error).lower()
    return "locked" in text or "busy" in text


class RunStore:
    """One open store file; ``path`` as the user gave it is what messages show."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.shown = display_path(path)
        self.path = Path(path).expanduser().absolute()
        self.folder = self.path.parent
        self._lock = threading.Lock()
        self._connection = self._open()

    # -- opening: every way a file can be unusable is one line naming it and the fix ----------------------
    def _fail(self, problem: str, fix: str) -> FtpeError:
        return FtpeError(f"Run store {self.shown} {problem}. {fix}, or turn the store off with "
                         "%config Ftpe.store = \"\" (runs are not recorded until then; everything else works).")

    def _open(self) -> sqlite3.Connection:
        if self.path.is_dir():
            raise self._fail("is a folder, not a file", "Point Ftpe.store at a file path in it, e.g. "
                             f"{Path(self.shown) / 'runs.sqlite'}")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=_BUSY_SECONDS, isolation_level=None,
                                         check_same_thread=False)
        except (OSError, sqlite3.Error) as error:
            raise self._fail(f"cannot be opened ({getattr(error, 'strerror', None) or error})",
                             "Point Ftpe.store at a folder you can write to") from None
        try:
            self._prepare(connection)
        except sqlite3.DatabaseError as error:
            connection.close()
            text = str(error).lower()
            if "readonly" in text or "read-only" in text or "unable to open" in text:
                raise self._fail("is read-only", "Make it (and its folder) writable, or point Ftpe.store at "
                                                 "another file") from None
            raise self._fail(f"is not a SQLite database ({error})", "Move it away (a new store is made in its "
                                                                     "place), or point Ftpe.store at another file") \
                from None
        return connection

    def _prepare(self, connection: sqlite3.Connection) -> None:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            connection.close()
            raise self._fail(f"was written by a newer ftpe_magics (schema {version}; this one reads up to "
                             f"{SCHEMA_VERSION})", "Upgrade ftpe_magics (pip install -U ftpe_magics)")
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent; only the last commit may be lost
        connection.execute("BEGIN IMMEDIATE")  # a read-only file fails here, at open, not at the first run
        try:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            for number in range(version, SCHEMA_VERSION):
                for statement in filter(str.strip, MIGRATIONS[number].split(";")):
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    # -- reading and writing -----------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; a store busy with another kernel's write is waited for, then retried."""
        deadline = time.monotonic() + _BUSY_SECONDS
        with self._lock:
            while True:
                try:
                    self._connection.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as error:
                    if not _busy(error) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            try:
                yield self._connection
                self._connection.execute("COMMIT")
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise

    def _read(self, sql: str, parameters: tuple = ()) -> list[dict]:
        with self._lock:
            cursor = self._connection.execute(sql, parameters)
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def add_run(self, kind: str, record: dict, result: dict, *, name: str | None = None, status: str = "finished",
                seconds: float | None = None, summary: str = "", cache_key: str | None = None) -> int:
        """Record one run; returns its id (what ``%ftpe show`` takes)."""
        row = (kind, name, now_text(), record.get("model"), record.get("model_fingerprint"), status, seconds,
               summary, cache_key, _dumps(record), _dumps(result))
        with self._write() as connection:
            cursor = connection.execute(
                "INSERT INTO runs (kind, name, created, model, model_fingerprint, status, seconds, summary, "
                "cache_key, record, result) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            return int(cursor.lastrowid)

    def run(self, run_id: int) -> dict | None:
        rows = self._read("SELECT * FROM runs WHERE id = ?", (run_id,))
        return _decoded(rows[0]) if rows else None

    def cached(self, cache_key: str) -> dict | None:
        """The newest finished run recorded under ``cache_key``."""
        rows = self._read("SELECT * FROM runs WHERE cache_key = ? AND status = 'finished' ORDER BY id DESC LIMIT 1",
                          (cache_key,))
        return _decoded(rows[0]) if rows else None

    def latest(self, kind: str, name: str) -> dict | None:
        rows = self._read("SELECT * FROM runs WHERE kind = ? AND name = ? ORDER BY id DESC LIMIT 1", (kind, name))
        return _decoded(rows[0]) if rows else None

    def runs(self, kinds: tuple[str, ...], name: str | None = None, since: str | None = None,
             limit: int | None = None) -> list[dict]:
        """Runs newest first, without their payloads (a listing reads no per-example data)."""
        sql = (f"SELECT id, kind, name, created, model, status, seconds, summary FROM runs "
               f"WHERE kind IN ({', '.join('?' * len(kinds))})")
        parameters: list[Any] = list(kinds)
        if name is not None:
            sql, parameters = sql + " AND name = ?", [*parameters, name]
        if since is not None:
            sql, parameters = sql + " AND created >= ?", [*parameters, since]
        sql += " ORDER BY id DESC" + (f" LIMIT {int(limit)}" if limit else "")
        return self._read(sql, tuple(parameters))

    # -- adapters on disk --------------------------------------------------------------------------------
    def put_adapter(self, fingerprint: str, name: str, folder: str, **fields: Any) -> None:
        """Insert or update the row of adapter ``name`` (status, step, best_metric, method)."""
        values = {"folder": folder, "updated": now_text(), "host": socket.gethostname(), "pid": os.getpid(),
                  **fields}
        columns = ", ".join(values)
        updates = ", ".join(f"{column} = excluded.{column}" for column in values)
        with self._write() as connection:
            connection.execute(
                f"INSERT INTO adapters (model_fingerprint, name, {columns}) VALUES (?, ?{', ?' * len(values)}) "
                f"ON CONFLICT (model_fingerprint, name) DO UPDATE SET {updates}",
                (fingerprint, name, *values.values()))

    def adapters(self, fingerprint: str) -> list[dict]:
        return self._read("SELECT * FROM adapters WHERE model_fingerprint = ? ORDER BY updated, name", (fingerprint,))

    def delete_adapter(self, fingerprint: str, name: str) -> None:
        with self._write() as connection:
            connection.execute("DELETE FROM adapters WHERE model_fingerprint = ? AND name = ?", (fingerprint, name))

    # -- what loading given weights produced -----------------------------------------------------------
    def put_load(self, signature: str, environment: dict, parameters: int) -> None:
        with self._write() as connection:
            connection.execute("INSERT OR REPLACE INTO loads (signature, environment, parameters, updated) "
                               "VALUES (?, ?, ?, ?)", (signature, _dumps(environment), int(parameters), now_text()))

    def load_of(self, signature: str) -> dict | None:
        """The environment (without versions) and parameter count a load with this signature produced."""
        rows = self._read("SELECT environment, parameters FROM loads WHERE signature = ?", (signature,))
        return {"environment": json.loads(rows[0]["environment"]), "parameters": rows[0]["parameters"]} \
            if rows else None

    # -- few-shot pool embeddings ----------------------------------------------------------------------
    def embeddings(self, model: str, hashes: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(hashes), 500):  # SQLite caps the parameters of one statement
            chunk = hashes[start:start + 500]
            rows = self._read(f"SELECT text_hash, vector FROM embeddings WHERE model = ? AND text_hash IN "
                              f"({', '.join('?' * len(chunk))})", (model, *chunk))
            found.update((row["text_hash"], np.frombuffer(row["vector"], dtype=np.float32)) for row in rows)
        return found

    def add_embeddings(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        with self._write() as connection:
            connection.executemany("INSERT OR REPLACE INTO embeddings (model, text_hash, vector) VALUES (?, ?, ?)",
                                   [(model, key, np.asarray(v, dtype=np.float32).tobytes())
                                    for key, v in vectors.items()])


def adapter_status(row: dict, alive: Callable[[int], bool] | None = None) -> str:
    """What a new kernel says of a stored adapter: finished, stopped at step k, or that its kernel died."""
    status, step = row["status"], row["step"]
    if status == "running":
        mine = row["host"] == socket.gethostname()
        if mine and row["pid"] != os.getpid() and (alive or _alive)(row["pid"]):
            return f"training in another kernel (step {step})"
        return f"kernel died after step {step}"
    if status == "stopped":
        return f"stopped at step {step}"
    if status == "failed":
        return f"failed after step {step}"
    return status


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, allow_nan=True)


def _decoded(row: dict) -> dict:
    return {**row, "record": json.loads(row["record"]), "result": json.loads(row["result"])}
