"""Job statuses, named as trainML names them, and the one function allowed to move a job between them.

    new ──> waiting for data/model download ──> waiting for resources ──> starting <──> running
     │                  │                               │                     │            │
     └──────────────────┴───────────────────────────────┴──> stopping ──> stopped          │
                                    (any live status) ──> failed  <─────────────────────────┘

`starting -> starting` is a restart while the endpoint is still coming up; `running -> starting` is a restart
after a crash (or after the control plane itself restarted). Stopped and failed jobs can be started again.
Removal deletes the record, so it is not a status.
"""

from __future__ import annotations

from ..errors import Conflict, UsageError
from ..states import LIVE, JobStatus  # noqa: F401  (the enum lives in the shared leaf)

_S = JobStatus
ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    _S.NEW: frozenset({_S.WAITING_DOWNLOAD, _S.WAITING_RESOURCES, _S.STOPPING, _S.FAILED}),
    _S.WAITING_DOWNLOAD: frozenset({_S.WAITING_RESOURCES, _S.STOPPING, _S.FAILED}),
    _S.WAITING_RESOURCES: frozenset({_S.STARTING, _S.STOPPING, _S.FAILED}),
    _S.STARTING: frozenset({_S.STARTING, _S.RUNNING, _S.STOPPING, _S.FAILED}),
    _S.RUNNING: frozenset({_S.STARTING, _S.STOPPING, _S.FAILED}),
    _S.STOPPING: frozenset({_S.STOPPED, _S.FAILED}),
    # Starting again goes back through the download step (a no-op when the working copy is already there).
    _S.STOPPED: frozenset({_S.WAITING_DOWNLOAD, _S.WAITING_RESOURCES}),
    _S.FAILED: frozenset({_S.WAITING_DOWNLOAD, _S.WAITING_RESOURCES}),
}


def parse_status(text: str) -> JobStatus:
    try:
        return JobStatus(text)
    except ValueError:
        choices = ", ".join(repr(s.value) for s in JobStatus)
        raise UsageError(f"status: {text!r} is not one of {choices}") from None


def can_move(current: JobStatus, target: JobStatus) -> bool:
    return target in ALLOWED[current]


def transition(current: JobStatus | str, target: JobStatus | str, *, job: str = "job") -> JobStatus:
    """Return `target` if a job may move there from `current`; raise Conflict naming both otherwise."""
    current, target = JobStatus(current), JobStatus(target)
    if target not in ALLOWED[current]:
        raise Conflict(f"{job} is {current.value}; it cannot become {target.value}")
    return target
