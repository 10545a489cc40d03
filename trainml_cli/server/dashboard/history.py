"""A job's status history, read back from the platform's own events in the job's log.

The job service logs every status change as an event line, `status: <status>` or `status: <status> (<reason>)`,
and the creation as `job 'name' created (...)`. Those lines are the history: the dashboard keeps no second
record of it. Only the event lines are read (an index on the stream), newest first through the store's paging,
in a worker thread, and at most SCAN_LIMIT of them; the output, however chatty, is never in the way. Events
are kept apart from the output with their own cap (logs.MAX_EVENTS), so a flood of prints never erases them.
"""

from __future__ import annotations

import asyncio

from ..logs import LogBook, iso_time
from ..states import JobStatus

SCAN_LIMIT = 50_000
PAGE = 2_000
_STATUSES = sorted((s.value for s in JobStatus), key=len, reverse=True)  # longest first: no prefix mismatches


def parse_event(message: str) -> tuple[str, str | None] | None:
    """(status, detail) for an event line that records a status change, else None."""
    if message.startswith("status: "):
        rest = message[len("status: "):]
        for status in _STATUSES:
            if rest == status:
                return status, None
            if rest.startswith(status + " (") and rest.endswith(")"):
                return status, rest[len(status) + 2:-1]
        return None
    if message.startswith("job ") and " created (" in message:
        return JobStatus.NEW.value, "created"
    return None


def _scan(logbook: LogBook, job_id: str) -> list[dict]:
    found: list[dict] = []
    before, seen = None, 0
    while seen < SCAN_LIMIT:
        rows = logbook.store.logs_before(job_id, before, PAGE, stream="event")  # events only: prints never hide them
        if not rows:
            break
        for row in rows:
            if row["stream"] == "event":
                parsed = parse_event(row["message"])
                if parsed:
                    found.append({"time": iso_time(row["time"]), "status": parsed[0], "detail": parsed[1]})
        seen += len(rows)
        before = rows[-1]["id"]
    return found


async def status_history(logbook: LogBook, job_id: str) -> list[dict]:
    """Status changes, newest first: [{time (ISO), status, detail}]."""
    logbook.flush()  # on the event loop: flushing wakes log followers, which only the loop may do
    return await asyncio.to_thread(_scan, logbook, job_id)
