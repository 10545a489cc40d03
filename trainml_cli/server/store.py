"""The control plane's state in SQLite: jobs, stored models, job logs, status events and traffic history. This
module holds all the SQL.

One connection in WAL mode (readers never wait for the writer), shared by the event loop and worker threads
under a lock; each call is one short statement or transaction, so holding the lock never blocks for long.
A job comes back as a `JobRecord` (jobrecord.py), its status a `JobStatus`; other rows as plain dicts. The JSON
columns (`spec`, `gpus`, `source`, ...) are decoded.

The schema is migrations.py's, step by step; the version lives in `PRAGMA user_version`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..states import JobStatus
from .jobrecord import COLUMNS, JobRecord
from .migrations import MIGRATIONS, SCHEMA_VERSION

_JSON_COLUMNS = ("spec", "source", "gpus", "log_offsets", "secrets")
_JOB_COLUMNS = frozenset(COLUMNS) - {"id", "created"}  # what update_job may change


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        _private(self.path)
        # isolation_level=None: autocommit, with explicit BEGIN for the few multi-statement changes.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes, which is what we face
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        for step in range(version + 1, SCHEMA_VERSION + 1):
            self._db.executescript(f"BEGIN; {MIGRATIONS[step]}; PRAGMA user_version = {step}; COMMIT;")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _all(self, sql: str, args: Iterable[Any] = ()) -> list[dict]:
        with self._lock:
            return [_decode(row) for row in self._db.execute(sql, tuple(args)).fetchall()]

    def _one(self, sql: str, args: Iterable[Any] = ()) -> dict | None:
        rows = self._all(sql, args)
        return rows[0] if rows else None

    def _run(self, sql: str, args: Iterable[Any] = ()) -> int:
        with self._lock:
            return self._db.execute(sql, tuple(args)).rowcount

    # -- jobs ---------------------------------------------------------------------------------------------------

    def insert_job(self, job: JobRecord) -> None:
        row = _encode(job.columns())
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self._run(f"INSERT INTO jobs ({columns}) VALUES ({marks})", row.values())

    def job(self, job_id: str) -> JobRecord | None:
        rows = self._jobs("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return rows[0] if rows else None

    def jobs_named(self, name: str) -> list[JobRecord]:
        return self._jobs("SELECT * FROM jobs WHERE name = ? ORDER BY created", (name,))

    def jobs(self) -> list[JobRecord]:
        return self._jobs("SELECT * FROM jobs ORDER BY created")

    def _jobs(self, sql: str, args: Iterable[Any] = ()) -> list[JobRecord]:
        return [JobRecord.from_row(row) for row in self._all(sql, args)]

    def environment_users(self) -> dict[str, list[str]]:
        """Environment key -> the ids of the jobs using it that are not stopped or failed (they hold it)."""
        users: dict[str, list[str]] = {}
        for job in self.jobs():
            if job.environment_key and not job.status.is_final:
                users.setdefault(job.environment_key, []).append(job.id)
        return users

    def environment_jobs(self) -> dict[str, list[str]]:
        """Environment key -> every job that was built with it."""
        jobs: dict[str, list[str]] = {}
        for job in self.jobs():
            if job.environment_key:
                jobs.setdefault(job.environment_key, []).append(job.id)
        return jobs

    def update_job(self, job_id: str, **fields: Any) -> None:
        unknown = set(fields) - _JOB_COLUMNS
        if unknown:
            raise ValueError(f"not job columns: {sorted(unknown)}")
        row = _encode(fields)
        sets = ", ".join(f"{column} = ?" for column in row)
        self._run(f"UPDATE jobs SET {sets} WHERE id = ?", [*row.values(), job_id])

    def erase_job_secret(self, job_id: str, key: str) -> None:
        """Take `key` out of a job's secrets so that the old value is left in neither file: SQLite zeroes what it
        frees (secure_delete), and the WAL, which held the page before, is checkpointed and emptied."""
        with self._lock:
            row = self._db.execute("SELECT secrets FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return
            kept = {k: v for k, v in json.loads(row[0]).items() if k != key}
            self._db.execute("PRAGMA secure_delete = ON")
            try:
                self._db.execute("UPDATE jobs SET secrets = ? WHERE id = ?", (json.dumps(kept), job_id))
            finally:
                self._db.execute("PRAGMA secure_delete = OFF")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def delete_job(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute("DELETE FROM logs WHERE job_id = ?", (job_id,))
                self._db.execute("DELETE FROM job_events WHERE job_id = ?", (job_id,))
                self._db.execute("DELETE FROM traffic WHERE job_id = ?", (job_id,))
                self._db.execute("DELETE FROM revisions WHERE job_id = ?", (job_id,))
                self._db.execute("DELETE FROM revision_switches WHERE job_id = ?", (job_id,))
                self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # -- revisions ----------------------------------------------------------------------------------------------

    def insert_revision(self, job_id: str, number: int, status: str, spec: dict, source: dict, now: float) -> None:
        self._run("INSERT INTO revisions (job_id, number, status, spec, source, created, updated) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?)", (job_id, number, status, json.dumps(spec), json.dumps(source),
                                                   now, now))

    def revisions(self, job_id: str) -> list[dict]:
        """Oldest first."""
        return self._all("SELECT * FROM revisions WHERE job_id = ? ORDER BY number", (job_id,))  # JSON decoded

    def update_revision(self, job_id: str, number: int, **fields: Any) -> None:
        unknown = set(fields) - {"status", "source", "reason", "updated"}
        if unknown:
            raise ValueError(f"not revision columns: {sorted(unknown)}")
        row = {k: (json.dumps(v) if k == "source" else v) for k, v in fields.items()}
        sets = ", ".join(f"{column} = ?" for column in row)
        self._run(f"UPDATE revisions SET {sets} WHERE job_id = ? AND number = ?", [*row.values(), job_id, number])

    def delete_revision(self, job_id: str, number: int) -> None:
        self._run("DELETE FROM revisions WHERE job_id = ? AND number = ?", (job_id, number))

    def add_switch(self, job_id: str, time: float, number: int) -> None:
        self._run("INSERT INTO revision_switches (job_id, time, number) VALUES (?, ?, ?)", (job_id, time, number))

    def switches(self, job_ids: list[str], since: float) -> list[dict]:
        """When a revision began serving, since `since`, oldest first."""
        marks = ", ".join("?" for _ in job_ids)
        return self._all(f"SELECT * FROM revision_switches WHERE job_id IN ({marks}) AND time >= ? ORDER BY time",
                         [*job_ids, since])

    # -- models -------------------------------------------------------------------------------------------------

    def insert_model(self, model: dict) -> None:
        columns = ", ".join(model)
        marks = ", ".join("?" for _ in model)
        try:
            self._run(f"INSERT INTO models ({columns}) VALUES ({marks})", model.values())
        except sqlite3.IntegrityError as exc:
            raise KeyError(model.get("name")) from exc

    def model(self, model_id: str) -> dict | None:
        return self._one("SELECT * FROM models WHERE id = ?", (model_id,))

    def model_named(self, name: str) -> dict | None:
        return self._one("SELECT * FROM models WHERE name = ?", (name,))

    def models(self) -> list[dict]:
        return self._all("SELECT * FROM models ORDER BY created")

    def rename_model(self, model_id: str, name: str) -> None:
        try:
            self._run("UPDATE models SET name = ? WHERE id = ?", (name, model_id))
        except sqlite3.IntegrityError as exc:
            raise KeyError(name) from exc

    def delete_model(self, model_id: str) -> None:
        self._run("DELETE FROM models WHERE id = ?", (model_id,))

    # -- logs ---------------------------------------------------------------------------------------------------

    def append_logs(self, rows: list[tuple[str, float, str, str, int | None]]) -> None:
        """Insert (job_id, time, stream, message, revision) rows in one transaction."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT INTO logs (job_id, time, stream, message, revision) "
                                     "VALUES (?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def logs_before(self, job_id: str, before: int | None, limit: int, stream: str | None = None) -> list[dict]:
        """Newest first, older than the cursor `before` (all when None); only `stream`'s lines when given."""
        if stream is not None:
            return self._all(
                "SELECT * FROM logs WHERE job_id = ? AND stream = ? AND id < ? ORDER BY id DESC LIMIT ?",
                (job_id, stream, before if before is not None else 2**62, limit),
            )
        if before is None:
            return self._all("SELECT * FROM logs WHERE job_id = ? ORDER BY id DESC LIMIT ?", (job_id, limit))
        return self._all(
            "SELECT * FROM logs WHERE job_id = ? AND id < ? ORDER BY id DESC LIMIT ?", (job_id, before, limit)
        )

    def logs_after(self, job_id: str, after: int, limit: int) -> list[dict]:
        """Oldest first, newer than the cursor `after`."""
        return self._all("SELECT * FROM logs WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?", (job_id, after, limit))

    def newest_log_id(self, job_id: str) -> int:
        row = self._one("SELECT MAX(id) AS id FROM logs WHERE job_id = ?", (job_id,))
        return (row or {}).get("id") or 0

    def prune_logs(self, job_id: str, keep: int, events: bool = False) -> int:
        """Delete all but the newest `keep` lines of a job's output (stdout and stderr), or of its platform events
        (`events`): each kind has its own cap, so a flood of prints never erases the status history."""
        kind = "stream = 'event'" if events else "stream <> 'event'"
        return self._run(
            f"DELETE FROM logs WHERE job_id = ? AND {kind} AND id <= "
            f"(SELECT id FROM logs WHERE job_id = ? AND {kind} ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (job_id, job_id, keep),
        )

    # -- status events ------------------------------------------------------------------------------------------

    def add_job_event(self, job_id: str, time: float, status: JobStatus, detail: str | None) -> None:
        self._run("INSERT INTO job_events (job_id, time, status, detail) VALUES (?, ?, ?, ?)",
                  (job_id, time, JobStatus(status).value, detail))

    def job_events(self, job_id: str, limit: int = 1000) -> list[dict]:
        """Status changes, newest first."""
        return self._all("SELECT time, status, detail FROM job_events WHERE job_id = ? ORDER BY id DESC LIMIT ?",
                         (job_id, limit))

    def prune_job_events(self, job_id: str, keep: int) -> int:
        return self._run(
            "DELETE FROM job_events WHERE job_id = ? AND id <= "
            "(SELECT id FROM job_events WHERE job_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)", (job_id, job_id, keep))

    # -- traffic ------------------------------------------------------------------------------------------------

    def add_traffic(self, job_id: str, resolution: int, t: float, seconds: float, requests: int, errors: int,
                    rejected: int, latency_ms_sum: float, buckets: list[int], client_errors: int = 0,
                    routes: dict[str, list[int]] | None = None) -> None:
        """Add a sample's counts to the period starting at `t` (made if new): one read and one write, atomic.
        `routes`: route label -> [calls, 4xx, 5xx but 503], added to the period's per route."""
        routes = routes or {}
        with self._lock:
            self._db.execute("BEGIN")
            try:
                row = self._db.execute("SELECT buckets, routes FROM traffic WHERE job_id = ? AND resolution = ? "
                                       "AND t = ?", (job_id, resolution, t)).fetchone()
                if row is not None:
                    merged = _add_lists(json.loads(row[0]), buckets)
                    by_route = json.loads(row[1] or "{}")
                    for label, counts in routes.items():
                        by_route[label] = _add_lists(by_route.get(label, []), counts)
                    self._db.execute(
                        "UPDATE traffic SET seconds = seconds + ?, requests = requests + ?, errors = errors + ?, "
                        "rejected = rejected + ?, latency_ms_sum = latency_ms_sum + ?, buckets = ?, "
                        "client_errors = client_errors + ?, routes = ? WHERE job_id = ? AND resolution = ? AND t = ?",
                        (seconds, requests, errors, rejected, latency_ms_sum, json.dumps(merged), client_errors,
                         json.dumps(by_route), job_id, resolution, t))
                else:
                    self._db.execute("INSERT INTO traffic (job_id, resolution, t, seconds, requests, errors, rejected, "
                                     "latency_ms_sum, buckets, client_errors, routes) "
                                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                     (job_id, resolution, t, seconds, requests, errors, rejected, latency_ms_sum,
                                      json.dumps(buckets), client_errors, json.dumps(routes)))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def traffic(self, job_ids: list[str], resolution: int, since: float) -> list[dict]:
        """Periods of these jobs at this resolution from `since` on, oldest first."""
        marks = ", ".join("?" for _ in job_ids)
        rows = self._all(f"SELECT * FROM traffic WHERE job_id IN ({marks}) AND resolution = ? AND t >= ? "
                         "ORDER BY job_id, t", [*job_ids, resolution, since])
        for row in rows:
            row["buckets"] = json.loads(row["buckets"])
            row["routes"] = json.loads(row["routes"] or "{}")
        return rows

    def prune_traffic(self, resolution: int, before: float) -> int:
        return self._run("DELETE FROM traffic WHERE resolution = ? AND t < ?", (resolution, before))

    def forget_traffic(self, keep_job_ids: list[str]) -> int:
        """Drop the history of jobs that no longer exist."""
        marks = ", ".join("?" for _ in keep_job_ids) or "NULL"
        return self._run(f"DELETE FROM traffic WHERE job_id NOT IN ({marks})", keep_job_ids)


def _add_lists(a: list, b: list) -> list:
    """Two lists of counts added position by position, the shorter one padded with zeros."""
    size = max(len(a), len(b))
    return [x + y for x, y in zip(a + [0] * (size - len(a)), b + [0] * (size - len(b)))]


def _private(path: Path) -> None:
    """The database readable by this user only: made 0600 before SQLite opens it (SQLite gives its -wal and -shm
    the database's mode), and put back to 0600 with the -wal and -shm an earlier version left readable."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            os.chmod(name, 0o600)
        except FileNotFoundError:
            pass


def _encode(fields: dict) -> dict:
    row = {k: (json.dumps(v) if k in _JSON_COLUMNS else v) for k, v in fields.items()}
    if "status" in row:
        row["status"] = JobStatus(row["status"]).value
    return row


def _decode(row: sqlite3.Row) -> dict:
    data = dict(row)
    for column in _JSON_COLUMNS:
        if column in data and isinstance(data[column], str):
            data[column] = json.loads(data[column])
    return data
