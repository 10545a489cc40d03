"""Job statuses, named as trainML names them: one enum for the CLI, the SDK, the server and the dashboard.

A leaf (imports nothing of ours), so the CLI can use it without loading the SDK. Which status may follow which
is the control plane's business and lives in `server/states.py`.
"""

from __future__ import annotations

import enum


class JobStatus(str, enum.Enum):
    NEW = "new"
    WAITING_DOWNLOAD = "waiting for data/model download"
    WAITING_RESOURCES = "waiting for resources"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value

    @property
    def is_live(self) -> bool:
        """The job should have (or be getting) an endpoint process: a control plane restart resumes it."""
        return self in LIVE

    @property
    def is_final(self) -> bool:
        """Nothing happens to the job until a user starts or removes it."""
        return self in FINAL

    @property
    def is_launched(self) -> bool:
        """Its endpoint was launched (starting or running): it has a URL, and is billed."""
        return self in LAUNCHED

    @property
    def is_coming_up(self) -> bool:
        """On its way to running: worth waiting for."""
        return self in LIVE and self is not JobStatus.RUNNING


LIVE = frozenset(
    {JobStatus.NEW, JobStatus.WAITING_DOWNLOAD, JobStatus.WAITING_RESOURCES, JobStatus.STARTING, JobStatus.RUNNING}
)
FINAL = frozenset({JobStatus.STOPPED, JobStatus.FAILED})
LAUNCHED = frozenset({JobStatus.STARTING, JobStatus.RUNNING})
STATUSES = tuple(status.value for status in JobStatus)


def headline(reason: str | None) -> str:
    """A reason's first line, for a status line or a table cell: a reason says its cause there, and may go on with
    the job's last log lines (which the log shows on their own)."""
    return next((line.strip() for line in (reason or "").splitlines() if line.strip()), "")
