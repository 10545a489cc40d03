"""Removals of Serve applications that go on after their job has ended.

A job whose application never served (replicas Ray could not place by the deploy deadline, say) fails at once,
while Serve deletes the application: Serve stops each replica gracefully, and one that was never scheduled cannot
answer the stop, so its deletion waits out the whole grace (`--stop-grace`; in HAProxy mode at least 35 s unless the
cluster sets Serve's drain period, docs/ray.md). Nothing is left half-done meanwhile: the job's URL gets the
fallback's 503 until the application is gone and its 404 after (rayfallback.py), a deploy of the same application
(the job started again) waits for the removal first, and a control plane that stops waits for every removal
(`settle`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine

log = logging.getLogger("trainml.server")


class Removals:
    """The removals left running, by application name."""

    def __init__(self):
        self._tasks: dict[str, asyncio.Task] = {}

    def start(self, name: str, removal: Coroutine) -> None:
        task = asyncio.ensure_future(removal)
        self._tasks[name] = task
        task.add_done_callback(lambda done: self._ended(name, done))

    def _ended(self, name: str, task: asyncio.Task) -> None:
        if self._tasks.get(name) is task:
            del self._tasks[name]
        if not task.cancelled() and task.exception() is not None:  # the removal reports its own failures
            log.error("removing Ray Serve application %s failed", name, exc_info=task.exception())

    async def wait(self, name: str) -> None:
        """Until the removal of this application, if one goes on, has ended (whoever waits may be cancelled)."""
        task = self._tasks.get(name)
        if task is not None:
            await asyncio.wait([task])

    async def settle(self) -> None:
        """Until every removal has ended."""
        while self._tasks:
            await asyncio.wait(list(self._tasks.values()))
