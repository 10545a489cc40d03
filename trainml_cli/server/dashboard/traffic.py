"""Traffic over the last minutes: samples of each running endpoint's counters, turned into rates for the charts.

The runtime exposes cumulative counters at GET /metrics (requests, latency_ms_sum, errors, ...). Every INTERVAL
seconds the sampler reads them for every running job (through the job service, which knows each endpoint's
port) and keeps WINDOW seconds of samples in memory. A point of the chart is the difference between two
samples: requests per second, and the mean latency of the calls in between (None when there were none).

Sampling runs only while someone looks: each chart request marks the time, and the sampler stops IDLE seconds
after the last one: an unwatched endpoint has no reason to be polled. (The runtime neither counts nor logs its
/metrics and /ping calls, so the samples see only real traffic.) History is kept per process: a control plane restart starts it afresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

log = logging.getLogger("trainml.server")

INTERVAL = 5  # seconds between samples
WINDOW = 300  # seconds of history kept and drawn
IDLE = 60.0  # seconds without a viewer before sampling stops


class Traffic:
    def __init__(self, interval: float = INTERVAL, window: float = WINDOW, idle: float = IDLE):
        self.interval = interval
        self.window = window
        self.idle = idle
        self._samples: dict[str, deque] = {}  # job id -> (time, pid, requests, latency_ms_sum, errors)
        self._viewed = 0.0
        self._task: asyncio.Task | None = None

    def watch(self, platform) -> None:
        """A viewer asked for charts: (re)start sampling if it had stopped."""
        self._viewed = time.monotonic()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(platform), name="dashboard-traffic")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self, platform) -> None:
        while time.monotonic() - self._viewed < self.idle:
            started = time.monotonic()
            try:
                await self.sample(platform)
            except Exception:  # the chart is a convenience; never let it take anything else down
                log.exception("dashboard: sampling endpoint metrics failed")
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    async def sample(self, platform) -> None:
        jobs = [j for j in platform.store.jobs() if j["status"] == "running"]
        answers = await asyncio.gather(*(platform.jobs.metrics(j["id"]) for j in jobs), return_exceptions=True)
        now = time.time()
        running = set()
        for job, answer in zip(jobs, answers):
            values = answer.get("metrics") if isinstance(answer, dict) else None
            if not values:
                continue
            running.add(job["id"])
            series = self._samples.setdefault(job["id"], deque())
            series.append((now, values.get("pid"), values.get("requests", 0), values.get("latency_ms_sum", 0.0),
                           values.get("errors", 0)))
            while series and series[0][0] < now - self.window - self.interval:
                series.popleft()
        for job_id in list(self._samples):
            if job_id not in running and not any(j["id"] == job_id for j in jobs):
                del self._samples[job_id]  # stopped or removed: its history is over

    def points(self, job_id: str) -> list[dict]:
        """[{t, rps, latency_ms, errors}] oldest first, one per pair of consecutive samples."""
        series = list(self._samples.get(job_id, ()))
        points = []
        for (t0, pid0, req0, lat0, err0), (t1, pid1, req1, lat1, err1) in zip(series, series[1:]):
            if pid0 != pid1 or req1 < req0:
                continue  # the endpoint restarted between the samples: its counters began again at zero
            calls = req1 - req0
            elapsed = max(t1 - t0, 1e-6)
            latency = (lat1 - lat0) / calls if calls else None
            points.append({"t": round(t1, 3), "rps": round(calls / elapsed, 3),
                           "latency_ms": round(latency, 3) if latency is not None else None,
                           "errors": max(0, err1 - err0)})
        return points
