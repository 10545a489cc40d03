"""A job's status history: the status changes the job service records as data (store table `job_events`).

Every move through the transition table adds a row (time, status, the first line of the reason), and creation
adds `new` with "created". The job's log still says the same in words for people; nothing reads it back.
"""

from __future__ import annotations

import asyncio

from ..logs import iso_time

LIMIT = 1_000


def _read(store, job_id: str) -> list[dict]:
    return [{"time": iso_time(row["time"]), "status": row["status"], "detail": row["detail"]}
            for row in store.job_events(job_id, LIMIT)]


async def status_history(store, job_id: str) -> list[dict]:
    """Status changes, newest first: [{time (ISO), status, detail}]."""
    return await asyncio.to_thread(_read, store, job_id)
