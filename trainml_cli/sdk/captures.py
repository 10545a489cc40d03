"""A job's captured calls from the SDK (endpoints created with `endpoint={"capture": RATE}`): read them, follow
them, send one again. `JobRequests` is a part of `Job` (jobs.py), which holds the client and the record.

    for entry in await job.requests(status="4xx", since="10m"): print(entry["id"], entry["status"])
    replayed = await job.replay(entry["id"]); print(replayed["differ"])
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import quote

FOLLOW_EVERY = 1.0  # seconds between looks for new captured calls when following
SEEN = 10_000  # ids remembered while following, to print each call once


class JobRequests:
    async def requests(self, *, tail: int = 100, status: str | None = None, route: str | None = None,
                       since: str | None = None) -> list[dict]:
        """The last `tail` captured calls that match, oldest first: each {id (the answer's X-Request-Id), time,
        route, status, latency_ms, queue_ms, batch_size, request, response, error, client}. `status`: 200 or a
        class (4xx); `route`: /predict or "POST /predict"; `since`: an age (10m, 2h, 1d) or an ISO time."""
        return (await self.requests_page(tail=tail, status=status, route=route, since=since))["requests"]

    async def requests_page(self, *, tail: int = 100, status: str | None = None, route: str | None = None,
                            since: str | None = None) -> dict:
        """{requests, dropped}: requests() and the number of sampled calls the endpoint could not keep."""
        params = {key: value for key, value in (("tail", tail), ("status", status), ("route", route),
                                                ("since", since)) if value is not None}
        return await self._client.http.request("GET", self._path + "/requests", params=params)

    async def follow_requests(self, *, status: str | None = None, route: str | None = None,
                              since: str | None = None) -> AsyncIterator[dict]:
        """Each captured call that matches as it is kept (the last 100 first), until the caller stops."""
        seen: dict[str, None] = {}
        page = await self.requests_page(status=status, route=route, since=since)
        while True:
            for entry in page["requests"]:
                if entry["id"] not in seen:
                    seen[entry["id"]] = None
                    yield entry
            while len(seen) > SEEN:
                seen.pop(next(iter(seen)))
            await asyncio.sleep(FOLLOW_EVERY)
            last = page["requests"][-1]["time"] if page["requests"] else since
            page = await self.requests_page(tail=1000, status=status, route=route, since=last)

    async def replay(self, request_id: str) -> dict:
        """Send captured call `request_id` again: {id, route, request, old: {status, response}, new: {status,
        response, id}, differ}. Conflict for a multipart call (its files were not kept) or a cut body."""
        return await self._client.http.request("POST", f"{self._path}/requests/{quote(request_id, safe='')}/replay",
                                               timeout=150)
