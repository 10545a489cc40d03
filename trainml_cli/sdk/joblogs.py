"""A job's log from the SDK: its pages, following it (a long-poll that survives a control plane restart
without losing or repeating lines), trainML's `attach`, and the JobFailed a failed job's log explains.

`JobLog` is a part of `Job` (jobs.py), which holds the client and the record.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..errors import JobFailed, NotFound, TrainMLError
from ..hints import failure_headline, failure_message
from ..states import JobStatus
from .waits import print_message, trainml_message

LONG_POLL = 25.0  # seconds per follow request; the server caps it at 60
LOG_PAGE = 1000


class JobLog:
    async def attach(self, msg_handler=None, *, callback=None, tail: int | None = 20) -> None:
        """trainML's `attach()`: hand the job's log lines to `msg_handler` as trainML's message dicts (waits.py;
        printed with a timestamp by default) until the job is stopped or failed, then return. With `callback`
        instead, each log entry as the API gives it, and JobFailed if the job failed (what `job logs -f` does)."""
        if callback is None:
            handler = msg_handler or print_message
            async for entry in self.logs(follow=True, tail=tail):
                handler(trainml_message(entry))
            return
        async for entry in self.logs(follow=True, tail=tail):
            callback(entry)
        try:
            await self.refresh()
        except NotFound:  # removed while attached: nothing failed
            return
        if self.status == JobStatus.FAILED:
            raise JobFailed(f"job {self.name} failed: {failure_headline(self.reason)}")

    async def failure(self, lines: int = 10) -> JobFailed:
        """The JobFailed for this failed job: its reason's headline, then its last `lines` log lines (also in
        `details`). What the CLI prints when a job fails."""
        tail = []
        try:
            tail = [entry.get("message", "") async for entry in self.logs(tail=lines)]
        except TrainMLError:  # the reason alone still says what happened
            pass
        return JobFailed(failure_message(self.name, self.reason, tail), details=tail)

    async def logs(self, follow: bool = False, tail: int | None = None) -> AsyncIterator[dict]:
        """Log entries {id, time, stream, message}, oldest first: the last `tail` (all when None), then with
        `follow` each new one as it comes, until the job is stopped or failed (or removed)."""
        http, path = self._client.http, self._path + "/logs"
        history: list[dict] = []
        before = None
        while tail is None or len(history) < tail:
            limit = LOG_PAGE if tail is None else min(LOG_PAGE, tail - len(history))
            params = {"limit": limit, **({"before": before} if before is not None else {})}
            page = await http.request("GET", path, params=params)
            history += page["logs"]
            before = page["next"]
            if before is None:
                break
        history.reverse()
        cursor = history[-1]["id"] if history else 0
        for entry in history:
            yield entry
        if not follow:
            return
        if tail == 0:  # no history wanted: follow from the newest line on
            page = await http.request("GET", path, params={"limit": 1})
            cursor = page["logs"][0]["id"] if page["logs"] else 0
        while True:
            try:
                page = await http.request("GET", path, params={"after": cursor, "wait": LONG_POLL, "limit": LOG_PAGE},
                                          timeout=LONG_POLL + 15)
            except TrainMLError as exc:
                if exc.http_status == 404:  # removed while followed
                    return
                raise
            for entry in page["logs"]:
                yield entry
            cursor = page["last"]
            if page["done"]:
                return

