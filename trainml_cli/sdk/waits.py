"""When a wait ends, as trainML's SDK counts it: the statuses `wait_for` takes, which count as reached, and the
log message a trainML `msg_handler` is handed.

trainML's `wait_for` polls every few seconds, so it counts a short status as reached once the job is past it;
code such as `await job.wait_for("waiting for data/model download")` right after create depends on that. Here
the SDK long-polls (it learns of every status change at once), and counts the same way, in this control plane's
order: new -> waiting for data/model download -> waiting for resources -> starting -> running -> stopping ->
stopped. `finished` is an endpoint's end here (stopped); `archived` is a removed job (its record answers 404).
"""

from __future__ import annotations

from datetime import datetime, timezone

from ..errors import UsageError
from ..states import STATUSES, JobStatus

MAX_TIMEOUT = 24 * 60 * 60  # trainML's bound on one wait, in seconds
FINISHED, ARCHIVED = "finished", "archived"
TRAINML_JOB_TARGETS = (JobStatus.WAITING_DOWNLOAD.value, JobStatus.WAITING_RESOURCES.value,
                       JobStatus.RUNNING.value, JobStatus.STOPPED.value, FINISHED, ARCHIVED)
_AFTER_DOWNLOAD = frozenset({JobStatus.WAITING_RESOURCES, JobStatus.STARTING, JobStatus.RUNNING, JobStatus.STOPPING,
                             JobStatus.STOPPED})
# target -> the statuses that count as having reached it; a target not here is reached by itself only.
_REACHED = {
    JobStatus.WAITING_DOWNLOAD.value: _AFTER_DOWNLOAD | {JobStatus.WAITING_DOWNLOAD},
    JobStatus.WAITING_RESOURCES.value: _AFTER_DOWNLOAD,
    FINISHED: frozenset({JobStatus.STOPPED}),
    ARCHIVED: frozenset(),  # only a 404 reaches it
}

MODEL_TARGETS = ("downloading", "ready", "exporting", "archived")


def job_target(status, timeout: float) -> str:
    """The wait's target, checked: trainML's targets and this control plane's statuses (UsageError otherwise,
    or for a timeout past trainML's bound)."""
    status = str(status)
    if status not in TRAINML_JOB_TARGETS and status not in STATUSES:
        raise UsageError.at(("status",), f"{status!r} is not a status to wait for; one of "
                            f"{', '.join(dict.fromkeys((*TRAINML_JOB_TARGETS, *STATUSES)))}", label="wait_for")
    check_timeout(timeout)
    return status


def check_timeout(timeout: float) -> None:
    if timeout > MAX_TIMEOUT:
        raise UsageError.at(("timeout",), f"{timeout:g} s is more than {MAX_TIMEOUT} s (trainML's bound)",
                            label="wait_for")


def reached(target: str, status: str) -> bool:
    """Whether a job in `status` has reached `target` or passed it."""
    return status in _REACHED.get(target, (target,))


def server_target(target: str) -> str:
    """The status the control plane's long-poll is asked for (it knows only job statuses)."""
    return target if target in STATUSES else JobStatus.STOPPED.value


def trainml_message(entry: dict) -> dict:
    """A log entry as trainML's attach hands it to `msg_handler`: {type, stream, time (epoch ms), msg,
    worker_number}; an endpoint here is one worker, number 1 (0 for the control plane's own lines, as trainML's
    data worker)."""
    try:
        when = datetime.fromisoformat(str(entry.get("time", "")).replace("Z", "+00:00"))
        millis = int(when.replace(tzinfo=when.tzinfo or timezone.utc).timestamp() * 1000)
    except ValueError:
        millis = 0
    stream = entry.get("stream", "stdout")
    return {"type": "subscription", "stream": stream, "time": millis, "msg": entry.get("message", ""),
            "worker_number": 0 if stream == "event" else 1}


def print_message(message: dict) -> None:
    """trainML's default attach output: local time, then the line."""
    stamp = datetime.fromtimestamp(message["time"] / 1000).strftime("%m/%d/%Y, %H:%M:%S")
    print(f"{stamp}: {message['msg'].rstrip()}")
