"""Job logs: the endpoint's stdout and stderr and the platform's own events, with timestamps.

Lines are buffered and written to the store in batches (an endpoint under load prints one access-log line per
request; one transaction per line would cost more than the request), and every batch wakes the followers of
the jobs it touched, so a line printed by model code reaches a follower within a few tens of milliseconds.

A log entry, as the API returns it:

    {"id": 1234, "time": "2024-05-01T12:00:00.123Z", "stream": "stdout" | "stderr" | "event", "message": "...",
     "revision": 2}

`revision` is the job revision whose process printed the line (revisions.py; each revision writes its own
output files, so the two processes of a switch are told apart), null for platform events and where the backend
cannot tell (Ray).

`id` is the cursor: it grows with every line, so `before=id` pages to older lines and `after=id` follows newer.
Each job keeps its newest MAX_LINES lines of output (stdout and stderr together) and, apart from them, its
newest MAX_EVENTS platform events (status changes, restarts, clone and install steps, failures): a flood of
prints prunes only older prints, never the status history. Events are redacted (secrets.redact) before they
are stored or reach server.log: they quote git URIs and git's own messages.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import datetime, timezone

from .redaction import redact
from .store import Store

log = logging.getLogger("trainml.server")

STREAMS = ("stdout", "stderr", "event")
MAX_LINES = 100_000  # lines of output per job
MAX_EVENTS = 10_000  # platform events per job, kept apart from the output
MAX_MESSAGE = 16 * 1024  # characters; a line longer than this is cut (a model printing a whole array)
BATCH_PAUSE = 0.02  # seconds between batches while lines keep coming
PRUNE_EVERY = 5_000  # lines written to a job between two prunes


def iso_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def entry(row: dict) -> dict:
    return {"id": row["id"], "time": iso_time(row["time"]), "stream": row["stream"], "message": row["message"],
            "revision": row.get("revision")}


class LogBook:
    """Writes job log lines in batches and lets readers page back or wait for new lines."""

    def __init__(self, store: Store, *, max_lines: int = MAX_LINES, prune_every: int = PRUNE_EVERY,
                 max_events: int = MAX_EVENTS):
        self.store = store
        self.max_lines = max_lines
        self.max_events = max_events
        self.prune_every = prune_every
        self._pending: list[tuple[str, float, str, str, int | None]] = []
        self._pending_lock = threading.Lock()  # write() may be called from a worker thread
        self._dirty = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._changed: dict[str, asyncio.Event] = {}
        self._written: dict[tuple[str, bool], int] = {}  # (job, is an event) -> lines since the last prune
        self._task = asyncio.create_task(self._flusher(), name="logbook-flusher")

    def write(self, job_id: str, stream: str, message: str, revision: int | None = None) -> None:
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + f" ... ({len(message) - MAX_MESSAGE} more characters cut)"
        with self._pending_lock:
            self._pending.append((job_id, time.time(), stream, message, revision))
        if _on_loop(self._loop):
            self._dirty.set()
        else:
            self._loop.call_soon_threadsafe(self._dirty.set)

    def event(self, job_id: str, message: str) -> None:
        """A platform event for the job (status change, restart, clone output); also goes to the server log."""
        message = redact(message)
        log.info("job %s: %s", job_id, message)
        self.write(job_id, "event", message)

    async def _flusher(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                self.flush()
            except Exception:  # a full disk must not stop the endpoints; keep the lines for the next try
                log.exception("could not write job logs")
            await asyncio.sleep(BATCH_PAUSE)

    def flush(self) -> None:
        with self._pending_lock:
            rows, self._pending = self._pending, []
        if not rows:
            return
        try:
            self.store.append_logs(rows)
        except Exception:
            with self._pending_lock:
                self._pending[:0] = rows
            raise
        counts: dict[tuple[str, bool], int] = {}
        for row in rows:
            key = (row[0], row[2] == "event")
            counts[key] = counts.get(key, 0) + 1
        for job_id in {key[0] for key in counts}:
            self.wake(job_id)
        for (job_id, events), added in counts.items():
            written = self._written.get((job_id, events), 0) + added
            if written >= self.prune_every:
                self.store.prune_logs(job_id, self.max_events if events else self.max_lines, events=events)
                written = 0
            self._written[(job_id, events)] = written

    def wake(self, job_id: str) -> None:
        """Wake everyone waiting on this job's log (new lines, or the job changed or went away)."""
        event = self._changed.pop(job_id, None)
        if event is not None:
            event.set()

    async def close(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self.flush()

    # -- reading ------------------------------------------------------------------------------------------------

    def page(self, job_id: str, before: int | None, limit: int) -> list[dict]:
        """Up to `limit` entries older than `before`, newest first."""
        self.flush()  # so a reader never misses a line that is still in the buffer
        return [entry(r) for r in self.store.logs_before(job_id, before, limit)]

    def since(self, job_id: str, after: int, limit: int) -> list[dict]:
        """Up to `limit` entries newer than `after`, oldest first."""
        self.flush()
        return [entry(r) for r in self.store.logs_after(job_id, after, limit)]

    async def wait(self, job_id: str, timeout: float) -> None:
        """Return when the job's log changes (or its status does, see wake), or after `timeout` seconds."""
        event = self._changed.setdefault(job_id, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def tail(self, job_id: str, lines: int = 20, streams: tuple[str, ...] = ("stdout", "stderr")) -> list[str]:
        """The last `lines` messages of the given streams, oldest first (for a failure reason)."""
        self.flush()
        found: list[str] = []
        before = None
        while len(found) < lines:
            rows = self.store.logs_before(job_id, before, 200)
            if not rows:
                break
            found += [r["message"] for r in rows if r["stream"] in streams]
            before = rows[-1]["id"]
        return list(reversed(found[:lines]))

    def newest_id(self, job_id: str) -> int:
        self.flush()
        return self.store.newest_log_id(job_id)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
