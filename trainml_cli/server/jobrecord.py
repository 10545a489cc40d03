"""A job's record as the control plane keeps it: one row of the `jobs` table (store.py), decoded once where it
comes out of the store into a `JobRecord`, its status a `JobStatus` and its JSON columns Python values.

A record is a snapshot: code reads it, and changes the job through the store (`Store.update_job`), never
through the record. What the API shows of a job is the job service's business (jobs.py `Jobs.show`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..states import JobStatus


@dataclass(frozen=True)
class JobRecord:
    id: str
    name: str
    status: JobStatus
    spec: dict  # the accepted payload: type, resources, model, endpoint, environment (payload.py)
    created: float
    updated: float
    reason: str | None = None
    source: dict = field(default_factory=dict)  # what was fetched: git_commit, size; the environment it runs in
    port: int | None = None  # the endpoint's port, kept across restarts so the URL stays stable
    pid: int | None = None  # the endpoint's process (leader of its own process group)
    pid_start: int | None = None  # its start time in clock ticks, to tell it from a reused pid
    gpus: list = field(default_factory=list)  # [{index, name, type, device}]
    restarts: int = 0
    run_seconds: float = 0.0  # billed time of the runs that ended
    credits: float = 0.0  # credits of the runs that ended
    running_since: float | None = None  # set while billed
    rate: float = 0.0  # credits per hour of the current run
    log_offsets: dict = field(default_factory=dict)  # how far the endpoint's output files were read (tailing.py)
    secrets: dict = field(default_factory=dict)  # what is never shown (the endpoint key)
    backend: str | None = None  # where its endpoint was launched (None: before backends were recorded)

    @classmethod
    def from_row(cls, row: dict) -> JobRecord:
        """From the store's row, its JSON columns decoded."""
        values = {name: row[name] for name in COLUMNS}
        values["status"] = JobStatus(values["status"])
        return cls(**values)

    def columns(self) -> dict:
        """The record as the store writes it, column by column (JSON columns still Python values)."""
        return {name: getattr(self, name) for name in COLUMNS}

    def spent(self, now: float) -> tuple[float, float]:
        """(run time in seconds, credits) up to `now`, the current run included."""
        if self.running_since is None:
            return self.run_seconds, self.credits
        running = max(0.0, now - self.running_since)
        return self.run_seconds + running, self.credits + running / 3600 * self.rate

    @property
    def environment_key(self) -> str | None:
        """The key of the environment it was built with (environments.py), if it has one of its own."""
        return self.source.get("environment", {}).get("key")


COLUMNS = tuple(f.name for f in fields(JobRecord))
