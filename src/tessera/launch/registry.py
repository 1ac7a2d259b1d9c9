"""The run registry: one SQLite database listing every run `tessera train`/`launch` started.

It lives at `$TESSERA_HOME/registry.db` (default `~/.tessera/`), in WAL mode so readers never
block the writer, with a busy timeout so concurrent writers (several runs, several commands)
wait their turn instead of failing. Every write is one short `BEGIN IMMEDIATE` transaction.

A run is keyed by its run folder: starting the same run folder again (a resume) adds an
attempt to the same record. Attempts carry start, end, exit cause and the checkpoint resumed
from; the run carries its status, back-end and job id, last step and last metrics.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tessera.core.errors import UserError
from tessera.core.files import WriteError, write_failure

STATUSES = ("queued", "running", "restarting", "completed", "failed", "stopped")
LIVE_STATUSES = ("queued", "running", "restarting")
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    run_folder TEXT NOT NULL UNIQUE,
    recipe TEXT,
    recipe_hash TEXT,
    overrides TEXT NOT NULL DEFAULT '[]',
    config TEXT NOT NULL DEFAULT '{}',
    host TEXT NOT NULL,
    backend TEXT NOT NULL,
    job_id TEXT,
    pid INTEGER,
    status TEXT NOT NULL,
    reason TEXT,
    launch TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    updated REAL NOT NULL,
    last_step INTEGER,
    last_metrics TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    started REAL NOT NULL,
    ended REAL,
    cause TEXT,
    exit_code INTEGER,
    resumed_from TEXT,
    host TEXT,
    pid INTEGER,
    PRIMARY KEY (run_id, number)
);
"""


def tessera_home() -> Path:
    """`$TESSERA_HOME`, or `~/.tessera`."""
    return Path(os.environ.get("TESSERA_HOME") or Path.home() / ".tessera").expanduser()


def hostname() -> str:
    return socket.gethostname()


@dataclass
class Attempt:
    number: int
    started: float
    ended: float | None = None
    cause: str | None = None
    exit_code: int | None = None
    resumed_from: str | None = None
    host: str | None = None
    pid: int | None = None


@dataclass
class Run:
    id: str
    name: str
    run_folder: str
    recipe: str | None
    recipe_hash: str | None
    overrides: list[str]
    config: dict[str, Any]
    host: str
    backend: str
    job_id: str | None
    pid: int | None
    status: str
    reason: str | None
    launch: dict[str, Any]
    created: float
    updated: float
    last_step: int | None
    last_metrics: dict[str, Any]
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES

    @property
    def folder(self) -> Path:
        return Path(self.run_folder)


class Registry:
    """The registry database at `path` (created on first use)."""

    def __init__(self, path: str | Path | None = None, timeout: float = 60.0) -> None:
        self.path = Path(path) if path is not None else tessera_home() / "registry.db"
        self.timeout = timeout
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(
                f"TESSERA_HOME: cannot create {self.path.parent} ({error.strerror or error}); "
                "set TESSERA_HOME to a writable folder"
            ) from None
        with self._connect() as connection:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise UserError(
                    f"run registry {self.path} was written by a newer Tessera (schema "
                    f"{version}, this one reads {SCHEMA_VERSION}); upgrade tessera-train"
                )
            if version < SCHEMA_VERSION:
                connection.executescript(_SCHEMA)
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            connection = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        except sqlite3.Error as error:
            raise self._unreadable(error) from None
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA foreign_keys=ON")
            connection.execute("PRAGMA synchronous=NORMAL")
            yield connection
        except sqlite3.DatabaseError as error:
            if "not a database" in str(error) or "malformed" in str(error):
                raise self._unreadable(error) from None
            if write_failure(error) is not None or "disk I/O error" in str(error):
                raise WriteError(
                    f"cannot write the run registry {self.path}: {write_failure(error) or error}"
                    ". The run's own folder is untouched: free some space (or set TESSERA_HOME "
                    "to another folder) and run the same command again"
                ) from None
            raise
        finally:
            connection.close()

    def _unreadable(self, error: Exception) -> UserError:
        return UserError(
            f"run registry {self.path} is not a readable SQLite database ({error}); move it "
            "aside (the runs' folders are untouched) or point TESSERA_HOME at another folder"
        )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction; BEGIN IMMEDIATE takes the write lock up front."""
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    # -- writing ---------------------------------------------------------------------------

    def record_run(
        self,
        name: str,
        run_folder: str | Path,
        *,
        recipe: str | None = None,
        recipe_hash: str | None = None,
        overrides: list[str] | None = None,
        config: dict[str, Any] | None = None,
        backend: str = "local",
        status: str = "queued",
        launch: dict[str, Any] | None = None,
        pid: int | None = None,
    ) -> str:
        """Create the run of `run_folder`, or take it over again (a resume); returns its id."""
        _check_status(status)
        folder = str(Path(run_folder).resolve())
        now = time.time()
        values = {
            "name": name,
            "recipe": recipe,
            "recipe_hash": recipe_hash,
            "overrides": json.dumps(overrides or []),
            "config": json.dumps(config or {}),
            "host": hostname(),
            "backend": backend,
            "status": status,
            "launch": json.dumps(launch or {}),
            "pid": pid,
            "updated": now,
        }
        with self._write() as db:
            row = db.execute("SELECT id FROM runs WHERE run_folder = ?", (folder,)).fetchone()
            if row is not None:
                assignments = ", ".join(f"{key} = :{key}" for key in values)
                db.execute(
                    f"UPDATE runs SET {assignments}, reason = NULL, job_id = NULL WHERE id = :id",
                    {**values, "id": row[0]},
                )
                return str(row[0])
            run_id = secrets.token_hex(4)
            columns = ", ".join(["id", "run_folder", "created", *values])
            marks = ", ".join(f":{key}" for key in ["id", "run_folder", "created", *values])
            db.execute(
                f"INSERT INTO runs ({columns}) VALUES ({marks})",
                {**values, "id": run_id, "run_folder": folder, "created": now},
            )
            return run_id

    def update(self, run_id: str, **fields: Any) -> None:
        """Set fields of a run: status, reason, job_id, pid, last_step, last_metrics, ..."""
        allowed = {"status", "reason", "job_id", "pid", "last_step", "last_metrics", "launch"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"not run fields: {sorted(unknown)}")
        if "status" in fields:
            _check_status(fields["status"])
        for key in ("last_metrics", "launch"):
            if key in fields:
                fields[key] = json.dumps(fields[key], default=str)
        assignments = ", ".join(f"{key} = :{key}" for key in fields)
        with self._write() as db:
            db.execute(
                f"UPDATE runs SET {assignments}, updated = :now WHERE id = :id",
                {**fields, "now": time.time(), "id": run_id},
            )

    def start_attempt(
        self,
        run_id: str,
        resumed_from: str | None = None,
        pid: int | None = None,
        number: int | None = None,
        started: float | None = None,
        host: str | None = None,
    ) -> int:
        """Record a new attempt (the next number unless given); returns its number."""
        with self._write() as db:
            if number is None:
                row = db.execute(
                    "SELECT COALESCE(MAX(number), 0) FROM attempts WHERE run_id = ?", (run_id,)
                ).fetchone()
                number = int(row[0]) + 1
            db.execute(
                "INSERT OR REPLACE INTO attempts (run_id, number, started, resumed_from, host, "
                "pid) VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, number, started or time.time(), resumed_from, host or hostname(), pid),
            )
        return number

    def end_attempt(
        self,
        run_id: str,
        number: int,
        cause: str,
        exit_code: int | None = None,
        ended: float | None = None,
    ) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE attempts SET ended = ?, cause = ?, exit_code = ? "
                "WHERE run_id = ? AND number = ?",
                (ended or time.time(), cause, exit_code, run_id, number),
            )

    def remove(self, run_id: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    # -- reading ---------------------------------------------------------------------------

    def runs(self, with_attempts: bool = True) -> list[Run]:
        """Every run, newest first."""
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            rows = db.execute("SELECT * FROM runs ORDER BY created DESC").fetchall()
            attempts: dict[str, list[Attempt]] = {}
            if with_attempts:
                for row in db.execute("SELECT * FROM attempts ORDER BY run_id, number"):
                    values = dict(row)
                    attempts.setdefault(values.pop("run_id"), []).append(Attempt(**values))
        return [_run(row, attempts.get(row["id"], [])) for row in rows]

    def get(self, key: str) -> Run:
        """The run whose id, id prefix or name is `key` (a name shared by several is refused)."""
        runs = self.runs()
        exact = [run for run in runs if run.id == key]
        if exact:
            return exact[0]
        by_name = [run for run in runs if run.name == key]
        matches = by_name or [run for run in runs if run.id.startswith(key)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            known = ", ".join(f"{run.name} ({run.id})" for run in runs[:10]) or "none yet"
            raise UserError(
                f"RUN: no run is called {key!r} in {self.path}; give a name or id from "
                f"`tessera runs list` (known: {known})"
            )
        choices = ", ".join(f"{run.id} ({run.run_folder})" for run in matches)
        raise UserError(f"RUN: {key!r} names {len(matches)} runs; give one id of: {choices}")

    def run_by_id(self, run_id: str) -> Run:
        for run in self.runs():
            if run.id == run_id:
                return run
        raise UserError(f"run {run_id} is not in the registry {self.path} (removed?)")


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {STATUSES}")


def _run(row: sqlite3.Row, attempts: list[Attempt]) -> Run:
    values = dict(row)
    for key in ("overrides", "config", "launch", "last_metrics"):
        values[key] = json.loads(values[key] or "null") or ([] if key == "overrides" else {})
    return Run(**values, attempts=attempts)
