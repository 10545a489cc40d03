"""Traffic history kept by the control plane: every running endpoint's counters, sampled whether or not anyone
watches, stored in SQLite at two resolutions and turned into points for the dashboard's charts.

Every INTERVAL seconds the sampler reads each running endpoint's JSON metrics (summed over its workers by the
runtime) and stores the difference from the previous reading: requests, errors, rejections, the latency sum and
calls per latency bucket. Each difference is added to a 5-second row (kept an hour) and a 1-minute row (kept a
day), so the store holds at most 720 + 1440 rows per endpoint and day; older rows are pruned every minute.

An endpoint that restarted between two readings began counting at zero (its counters went down, or its process
is another one): everything it counted since then came within the interval, so the new reading is the
difference. Time with no reading (the endpoint stopped, or no control plane ran) has no row: the chart shows a
gap, not a line. An endpoint that runs but gets no calls has rows of zero requests: a flat line at zero.

p50 and p99 come from the latency buckets as Prometheus' histogram_quantile does: linear within the bucket.
Each row also keeps its 4xx answers (`client_errors`; `errors` are the 5xx but 503) and, per route label, [calls,
4xx, 5xx]: the chart's errors series and its split by route.

Every span's points end at the latest reading (a point's time is the end of its period, or that reading's time
if sooner), and the answer carries that reading itself (`latest`): the 5 min and the 1 h views agree on "now".

Streaming routes' figures (streams open now, items sent and the mean time to a first item, since the endpoint
started) are kept from the latest reading only, in memory: they say what the endpoint does now, not a history.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ...contracts import LATENCY_BUCKETS
from ...states import JobStatus

log = logging.getLogger("trainml.server")

INTERVAL = 5.0  # seconds between readings
FINE, COARSE = 5, 60  # the two row resolutions, in seconds
KEEP = {FINE: 3600 + 600, COARSE: 86400 + 3600}  # seconds of rows kept per resolution (a margin over the charts)
PRUNE_EVERY = 60.0
MAX_GAP = 120.0  # seconds between two readings past which their difference is not recorded
# A chart's span -> (seconds shown, rows read, seconds per point)
RANGES = {"5m": (300, FINE, FINE), "1h": (3600, COARSE, COARSE), "24h": (86400, COARSE, 600)}
BOUNDS_MS = [b * 1000.0 for b in LATENCY_BUCKETS]


class Traffic:
    def __init__(self, interval: float = INTERVAL):
        self.interval = interval
        self._last: dict[str, tuple] = {}  # job id -> (time, pid, counters) of the previous reading
        self._pruned = 0.0
        self._tick: float | None = None  # when the previous round of readings was taken
        self._running: set[str] = set()  # the jobs running then
        self._streams: dict[str, dict] = {}  # job id -> its streaming figures at the latest reading
        self._latest: dict[str, dict] = {}  # job id -> the latest reading's difference, as a point
        self._task: asyncio.Task | None = None

    def start(self, platform) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(platform), name="dashboard-traffic")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self, platform) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.sample(platform)
            except Exception:  # the chart is a convenience; never let it take anything else down
                log.exception("dashboard: sampling endpoint metrics failed")
            await asyncio.sleep(max(0.5, self.interval - (time.monotonic() - started)))

    async def sample(self, platform) -> None:
        store = platform.store
        jobs = await asyncio.to_thread(store.jobs)
        running = [j for j in jobs if j.status is JobStatus.RUNNING]
        answers = await asyncio.gather(*(platform.jobs.metrics(j.id) for j in running), return_exceptions=True)
        now = time.time()
        rows = []
        for job, answer in zip(running, answers):
            values = answer.get("metrics") if isinstance(answer, dict) else None
            if not values:
                continue  # no reading this time; the next one is compared with the last we had
            counters = _counters(values)
            self._streams[job.id] = _streams(values)
            previous = self._last.get(job.id)
            self._last[job.id] = (now, job.pid, counters)
            if previous is None:
                if self._tick is None or job.id in self._running:
                    continue  # counting since before this control plane looked: only a baseline
                # It began running since the last tick, counting from zero: all of it came since then.
                previous = (self._tick, job.pid, (0, 0, 0, 0.0, [], 0, {}))
            then, pid, before = previous
            if now - then > MAX_GAP:
                continue  # a long pause (a suspended machine): spread over it, the numbers would be invented
            restarted = pid != job.pid or counters[0] < before[0]
            delta = counters if restarted else _minus(counters, before)
            rows.append((job.id, then, now, delta))
            calls, seconds = delta[0], max(now - then, 1e-6)
            self._latest[job.id] = {"t": round(now, 3), "requests": calls, "rps": round(calls / seconds, 3),
                                    "errors": delta[1], "client_errors": delta[5],
                                    "error_rps": round((delta[1] + delta[5]) / seconds, 3)}
        self._tick, self._running = now, {j.id for j in running}
        gone = set(self._last) - {j.id for j in running}
        for job_id in gone:
            del self._last[job_id]
        for job_id in set(self._streams) - {j.id for j in running}:
            del self._streams[job_id]
        for job_id in set(self._latest) - {j.id for j in running}:
            del self._latest[job_id]
        if rows:
            await asyncio.to_thread(self._store, store, rows)
        if now - self._pruned > PRUNE_EVERY:
            self._pruned = now
            await asyncio.to_thread(self._prune, store, [j.id for j in jobs], now)

    @staticmethod
    def _store(store, rows) -> None:
        for job_id, then, now, (requests, errors, rejected, latency, buckets, client_errors, routes) in rows:
            for resolution in (FINE, COARSE):
                # The reading belongs to the period it ends in: a 5 s reading never straddles two rows.
                store.add_traffic(job_id, resolution, (now // resolution) * resolution, now - then,
                                  requests, errors, rejected, latency, buckets, client_errors, routes)

    @staticmethod
    def _prune(store, job_ids: list[str], now: float) -> None:
        for resolution, keep in KEEP.items():
            store.prune_traffic(resolution, now - keep)
        store.forget_traffic(job_ids)

    def streams(self, job_id: str) -> dict | None:
        """{open, items, first_item_ms (mean, None before any)} at the latest reading; None if the endpoint has
        not streamed since it started (or is not running)."""
        return self._streams.get(job_id)

    def latest(self, job_id: str) -> dict | None:
        """The latest reading of a running endpoint as a point {t, requests, rps, errors, client_errors,
        error_rps}: what every span says about "now"; None before a second reading."""
        return self._latest.get(job_id)

    def series(self, store, job_ids: list[str], span: str, now: float | None = None) -> dict:
        """{span, seconds, step, jobs: {id: [point, ...]}} with points oldest first:
        {t (end of the step, or the latest reading if sooner), requests, rps, errors (5xx), client_errors (4xx),
        error_rps (both), latency_ms (mean), p50_ms, p99_ms, routes: {label: {requests, rps, errors (4xx and
        5xx)}}}."""
        seconds, resolution, step = RANGES[span]
        now = time.time() if now is None else now
        start = now - seconds
        found: dict[str, list[dict]] = {job_id: [] for job_id in job_ids}
        if job_ids:
            groups: dict[tuple[str, float], dict] = {}
            for row in store.traffic(job_ids, resolution, start - step):
                key = (row["job_id"], (row["t"] // step) * step)
                group = groups.setdefault(key, {"seconds": 0.0, "requests": 0, "errors": 0, "rejected": 0,
                                                "latency": 0.0, "buckets": [], "client_errors": 0, "routes": {}})
                group["seconds"] += row["seconds"]
                group["requests"] += row["requests"]
                group["errors"] += row["errors"]
                group["rejected"] += row["rejected"]
                group["latency"] += row["latency_ms_sum"]
                group["buckets"] = _add(group["buckets"], row["buckets"])
                group["client_errors"] += row.get("client_errors") or 0
                for label, counts in (row.get("routes") or {}).items():
                    group["routes"][label] = _add(group["routes"].get(label, []), counts)
            for (job_id, t), g in sorted(groups.items()):
                reading = self._last.get(job_id)
                end = min(t + step, now, reading[0] if reading else now)
                if end <= start:
                    continue
                calls, seconds = g["requests"], max(g["seconds"], 1e-6)
                found[job_id].append({
                    "t": round(end, 3), "requests": calls, "rps": round(calls / seconds, 3),
                    "errors": g["errors"], "rejected": g["rejected"], "client_errors": g["client_errors"],
                    "error_rps": round((g["errors"] + g["client_errors"]) / seconds, 3),
                    "latency_ms": round(g["latency"] / calls, 3) if calls else None,
                    "p50_ms": quantile(0.5, g["buckets"]), "p99_ms": quantile(0.99, g["buckets"]),
                    "routes": {label: {"requests": c[0], "rps": round(c[0] / seconds, 3),
                                       "errors": sum(c[1:3])}
                               for label, c in sorted(g["routes"].items()) if c and c[0]},
                })
        return {"span": span, "seconds": seconds, "step": step, "interval": self.interval, "now": now,
                "jobs": found}


def quantile(q: float, buckets: list[int]) -> float | None:
    """The q-quantile in ms of calls counted per bucket (BOUNDS_MS, then past the last), linear within its
    bucket; None without calls. Past the last bound it says the last bound: the histogram knows no more."""
    total = sum(buckets)
    if not total:
        return None
    rank, seen = q * total, 0
    for index, count in enumerate(buckets):
        if count and seen + count >= rank:
            if index >= len(BOUNDS_MS):
                return BOUNDS_MS[-1]
            low = BOUNDS_MS[index - 1] if index else 0.0
            return round(low + (BOUNDS_MS[index] - low) * (rank - seen) / count, 3)
        seen += count
    return BOUNDS_MS[-1]


def _streams(values: dict) -> dict | None:
    firsts = int(values.get("stream_first_items", 0))
    figures = {"open": int(values.get("streams_open", 0)), "items": int(values.get("stream_items", 0)),
               "first_item_ms": round(float(values.get("stream_first_item_ms_sum", 0.0)) / firsts, 3) if firsts
               else None}
    return figures if figures["open"] or figures["items"] or firsts else None


def _counters(values: dict) -> tuple:
    """(requests, errors, rejected, latency_ms_sum, buckets, client_errors, {route: [calls, 4xx, 5xx]})."""
    responses = values.get("responses") or {}
    client_errors = sum(int(n) for status, n in responses.items() if str(status).startswith("4"))
    by_route = {label: [int(n), int((values.get("route_client_errors") or {}).get(label, 0)),
                        int((values.get("route_errors") or {}).get(label, 0))]
                for label, n in (values.get("route_requests") or {}).items()}
    return (int(values.get("requests", 0)), int(values.get("errors", 0)), int(values.get("rejected", 0)),
            float(values.get("latency_ms_sum", 0.0)), list(values.get("latency_buckets") or []), client_errors,
            by_route)


def _minus(now: tuple, before: tuple) -> tuple:
    buckets = [max(0, a - b) for a, b in zip(now[4], before[4] + [0] * (len(now[4]) - len(before[4])))]
    routes = {label: [max(0, a - b) for a, b in zip(counts, before[6].get(label, [0, 0, 0]))]
              for label, counts in now[6].items()}
    return (now[0] - before[0], max(0, now[1] - before[1]), max(0, now[2] - before[2]),
            max(0.0, now[3] - before[3]), buckets, max(0, now[5] - before[5]),
            {label: counts for label, counts in routes.items() if any(counts)})


def _add(a: list[int], b: list[int]) -> list[int]:
    size = max(len(a), len(b))
    return [x + y for x, y in zip(a + [0] * (size - len(a)), b + [0] * (size - len(b)))]
