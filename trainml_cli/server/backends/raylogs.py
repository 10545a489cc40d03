"""An endpoint's output on Ray: each replica's stdout and stderr, followed through the head's log API.

Ray writes a replica's output to files on the replica's node; the head's log API streams them from there, so the
control plane reads them wherever they are, into the job's log like a local endpoint's output.

Each line is tagged with the revision that printed it, exactly: a replica runs one revision in a process (and files)
of its own, and writes its revision's record first on each stream (runtime/serve_entry.py), so every line read after
that record in a replica's file is that revision's, old and new replicas printing side by side during a rolling
update. A replica of a package from before the record existed has none: its lines carry no revision.
"""

from __future__ import annotations

import asyncio
import re

from ...contracts import replica_revision
from .base import EndpointListener
from .rayhead import RayHead

_SERVE_LOG_LINE = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) \d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ")
_RAY_MARKER = (":job_id:", ":actor_name:", ":task_name:")


class ReplicaLogs:
    """Follows each replica's stdout and stderr through the head's log stream, one task per file.

    Lines already stored are skipped by count (kept in the job's log offsets), so a control plane that adopts
    the application does not store them twice. Ray's own markers and Serve's log records are left out.
    """

    def __init__(self, head: RayHead, listener: EndpointListener):
        self.head = head
        self.listener = listener
        self.seen: dict[str, int] = dict(listener.log_offsets() or {})
        self.saved = dict(self.seen)
        self.tasks: dict[str, asyncio.Task] = {}

    def follow(self, replicas: list[dict]) -> None:
        for replica in replicas:
            actor = replica.get("actor_id")
            if not actor or replica.get("state") not in ("RUNNING", "STARTING", "PENDING_MIGRATION", "RECOVERING"):
                continue
            for suffix, stream in (("out", "stdout"), ("err", "stderr")):
                key = f"{actor}:{suffix}"
                if key not in self.tasks:
                    self.tasks[key] = asyncio.create_task(self._read(key, actor, suffix, stream),
                                                          name=f"ray-log-{actor[:8]}-{suffix}")

    async def _read(self, key: str, actor: str, suffix: str, stream: str) -> None:
        for attempt in range(30):  # the file may not exist yet right after the replica starts
            try:
                count, revision = 0, None
                async for line in self.head.follow_log(actor, suffix):
                    count += 1
                    said = replica_revision(line)  # read again on a re-read: the lines skipped hold it
                    if said is not None:
                        revision = said
                        self.seen[key] = max(count, self.seen.get(key, 0))
                        continue
                    if count <= self.seen.get(key, 0):
                        continue
                    self.seen[key] = count
                    if not (line.startswith(_RAY_MARKER) or _SERVE_LOG_LINE.match(line)):
                        self.listener.output(stream, line, revision)
                return  # the stream ended: the replica is gone
            except (OSError, ValueError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                await asyncio.sleep(min(2.0, 0.2 * (attempt + 1)))

    def close(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        self.save()

    def save(self) -> None:
        if self.seen != self.saved:
            self.saved = dict(self.seen)
            self.listener.save_log_offsets(self.saved)
