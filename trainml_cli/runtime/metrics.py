"""The endpoint's metrics: Prometheus' text format at /metrics, counted across every worker process.

Workers share one port, so a scrape reaches one of them at random; prometheus_client's multiprocess mode makes
each worker write its values to files in a directory the worker group shares, and the worker answering a scrape
reads them all. The directory is made by the process that starts the group (see server.py) and handed to its
workers with `--metrics-dir`.

Writing those files costs a lock and an mmap write per value, about 6 us for the values of one request: over
10% of the runtime's throughput. So the request path only adds to plain dicts here (on the event loop, no lock),
and `flush` moves the sums into prometheus_client every FLUSH_INTERVAL and before each scrape. A scrape thus
sees this worker exactly and the others at most FLUSH_INTERVAL late.

JSON (`Accept: application/json`, or `?format=json`) is the same numbers summed up for the control plane's
dashboard and `/api/jobs/{id}/metrics`.
"""

from __future__ import annotations

import os
from bisect import bisect_left

from ..contracts import LATENCY_BUCKETS, empty_totals

FLUSH_INTERVAL = 0.5  # seconds; how late another worker's counts may be in a scrape
DURATION_BUCKETS = LATENCY_BUCKETS  # seconds; shared with the control plane's charts
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
UNMATCHED = "unmatched"  # the route label of requests no route serves: one label, not one per path tried
PROMETHEUS_TEXT = b"text/plain; version=0.0.4; charset=utf-8"


DIRECTORY_PREFIX = "trainml-metrics-"


def make_directory() -> str:
    """A new directory for a worker group's metrics, named after this process; removes those of dead processes.

    The owner removes its directory when it stops, but a process killed outright (SIGKILL) cannot: the next
    endpoint to start on this machine clears what such processes left behind.
    """
    import re
    import shutil
    import tempfile

    base = tempfile.gettempdir()
    for name in os.listdir(base):
        found = re.fullmatch(re.escape(DIRECTORY_PREFIX) + r"(\d+)-\w+", name)
        if found and not _alive(int(found.group(1))):
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{DIRECTORY_PREFIX}{os.getpid()}-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def use_directory(directory: str) -> None:
    """Make prometheus_client write this process's values to `directory`. Call before creating any metric."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    from prometheus_client import values

    # The value class is chosen when prometheus_client is first imported; it may have been imported already.
    values.ValueClass = values.MultiProcessValue()


def mark_dead(pid: int, directory: str) -> None:
    """A worker is gone: its live gauges (in flight, queue depth) no longer count. Its counters still do."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, directory)


class Metrics:
    """One worker's metrics: cheap local sums on the request path, flushed to the shared files."""

    def __init__(self, directory: str, gauges):
        self.directory = directory
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory  # now: model code importing prometheus_client sees it
        self.registry = None  # prometheus_client's side, made at the first flush with something to write (_open)
        self._waits: dict[str, list] = {}
        self._firsts: dict[str, list] = {}
        self._items: dict[str, int] = {}
        self.streams_open = 0
        self._gauges = gauges  # () -> (in flight, waiting), read at each flush
        self._answers: dict[tuple[str, int], list] = {}  # (route, status) -> [count per duration bucket..., sum]
        self._rejects: dict[str, int] = {}
        self._batches: dict[str, list] = {}
        self._timer = None

    # -- the request path (event loop only) --------------------------------------------------------------------

    def request(self, route: str, status: int, seconds: float) -> None:
        # One list per (route, status): its buckets count the requests too (summed at the flush, not here).
        sums = self._answers.get((route, status))
        if sums is None:
            sums = self._answers[(route, status)] = [0] * (len(DURATION_BUCKETS) + 2)
        sums[bisect_left(DURATION_BUCKETS, seconds)] += 1  # bucket `le` bounds are inclusive, as bisect_left
        sums[-1] += seconds

    def queue_wait(self, route: str, seconds: float) -> None:
        sums = self._waits.get(route)
        if sums is None:
            sums = self._waits[route] = [0] * (len(DURATION_BUCKETS) + 2)
        sums[bisect_left(DURATION_BUCKETS, seconds)] += 1
        sums[-1] += seconds

    def reject(self, reason: str) -> None:
        self._rejects[reason] = self._rejects.get(reason, 0) + 1

    def batch(self, route: str, size: int) -> None:
        sums = self._batches.get(route)
        if sums is None:
            sums = self._batches[route] = [0] * (len(BATCH_BUCKETS) + 2)
        sums[bisect_left(BATCH_BUCKETS, size)] += 1
        sums[-1] += size

    def stream_opened(self) -> None:
        self.streams_open += 1

    def stream_closed(self) -> None:
        self.streams_open -= 1

    def stream_first_item(self, route: str, seconds: float) -> None:
        sums = self._firsts.get(route)
        if sums is None:
            sums = self._firsts[route] = [0] * (len(DURATION_BUCKETS) + 2)
        sums[bisect_left(DURATION_BUCKETS, seconds)] += 1
        sums[-1] += seconds

    def stream_item(self, route: str, n: int = 1) -> None:
        self._items[route] = self._items.get(route, 0) + n

    def _open(self) -> None:
        """prometheus_client and this worker's metrics in it. Not at start: importing it (its exposition pulls in
        http.server and email) and making the files would cost every cold start, before a call has been counted."""
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        from prometheus_client.multiprocess import MultiProcessCollector

        use_directory(self.directory)
        self.registry = CollectorRegistry()
        MultiProcessCollector(self.registry, self.directory)
        # registry=None: these only write; the collector above reads every worker's values back.
        self._requests = Counter("trainml_requests", "Requests answered, by route and HTTP status",
                                 ["route", "status"], registry=None)
        self._duration = Histogram("trainml_request_duration_seconds", "Time to answer a request, by route",
                                   ["route"], buckets=DURATION_BUCKETS, registry=None)
        self._in_flight = Gauge("trainml_requests_in_flight", "Requests admitted and not yet answered (running or "
                                "waiting)", registry=None, multiprocess_mode="livesum")
        self._queue_depth = Gauge("trainml_queue_depth", "Requests waiting for a worker thread or a batch",
                                  registry=None, multiprocess_mode="livesum")
        self._rejected = Counter("trainml_rejected", "Requests refused before the function ran, by reason "
                                 "(overloaded, loading, invalid_request, body_too_large)", ["reason"], registry=None)
        self._batch_size = Histogram("trainml_batch_size", "Requests per call of a batched route, by route",
                                     ["route"], buckets=BATCH_BUCKETS, registry=None)
        self._first_item = Histogram("trainml_stream_first_item_seconds", "Time from a streaming request's admission "
                                     "to its first item, by route", ["route"], buckets=DURATION_BUCKETS, registry=None)
        self._stream_items = Counter("trainml_stream_items", "Items sent by streaming routes, by route", ["route"],
                                     registry=None)
        self._streams_open = Gauge("trainml_streams_open", "Streams being sent now", registry=None,
                                   multiprocess_mode="livesum")
        self._queue_wait = Histogram("trainml_queue_wait_seconds", "Time from a call's admission until its function "
                                     "started (a batched call: until its batch's call), by route", ["route"],
                                     buckets=DURATION_BUCKETS, registry=None)
        # Derived from the (route, status) counts at each flush: nothing more to count on the request path.
        self._classes = Counter("trainml_responses", "Answers by route and status class (2xx, 3xx, 4xx, 5xx)",
                                ["route", "class"], registry=None)

    # -- flushing ------------------------------------------------------------------------------------------------

    def start(self, loop) -> None:
        def tick():
            self.flush()
            self._timer = loop.call_later(FLUSH_INTERVAL, tick)

        self._timer = loop.call_later(FLUSH_INTERVAL, tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.flush()

    def flush(self) -> None:
        in_flight, waiting = self._gauges()
        if self.registry is None:
            if not (self._answers or self._rejects or self._items or self._batches or self._firsts or self._waits
                    or in_flight or waiting or self.streams_open):
                return  # nothing counted yet: the files would all say 0, as no files do
            self._open()
        durations: dict[str, list] = {}  # route -> [count per bucket..., sum], over its statuses
        if self._answers:
            answers, self._answers = self._answers, {}
            classes: dict[tuple[str, str], int] = {}
            for (route, status), sums in answers.items():
                n = sum(sums[:-1])
                self._requests.labels(route, str(status)).inc(n)
                key = (route, f"{status // 100}xx")
                classes[key] = classes.get(key, 0) + n
                total = durations.get(route)
                durations[route] = sums if total is None else [a + b for a, b in zip(total, sums)]
            for (route, status_class), n in classes.items():
                self._classes.labels(route, status_class).inc(n)
        if self._rejects:
            rejects, self._rejects = self._rejects, {}
            for reason, n in rejects.items():
                self._rejected.labels(reason).inc(n)
        if self._items:
            items, self._items = self._items, {}
            for route, n in items.items():
                self._stream_items.labels(route).inc(n)
        for histogram, pending in ((self._duration, durations), (self._batch_size, self._batches),
                                   (self._first_item, self._firsts), (self._queue_wait, self._waits)):
            if pending:
                items = list(pending.items())
                pending.clear()
                for route, sums in items:
                    _add(histogram.labels(route), sums)
        self._in_flight.set(in_flight)
        self._queue_depth.set(waiting)
        self._streams_open.set(self.streams_open)

    # -- answers -------------------------------------------------------------------------------------------------

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        self.flush()
        if self.registry is None:
            self._open()
        return generate_latest(self.registry)

    def totals(self) -> dict:
        """Every worker's counts summed, in contracts.empty_totals()' shape: what the control plane charts."""
        self.flush()
        if self.registry is None:
            self._open()
        out = empty_totals()
        responses: dict[int, int] = {}
        cumulative: dict[float, int] = {}  # latency bucket bound -> calls at most that long, over every route
        for family in self.registry.collect():
            for sample in family.samples:
                name, labels, value = sample.name, sample.labels, sample.value
                if name == "trainml_requests_total":
                    status = int(labels["status"])
                    responses[status] = responses.get(status, 0) + int(value)
                    route = labels["route"]
                    by_route = out["route_requests"]
                    by_route[route] = by_route.get(route, 0) + int(value)
                    if _is_error(status):
                        out["route_errors"][route] = out["route_errors"].get(route, 0) + int(value)
                    elif 400 <= status < 500:
                        out["route_client_errors"][route] = out["route_client_errors"].get(route, 0) + int(value)
                elif name == "trainml_request_duration_seconds_sum":
                    out["latency_ms_sum"] += value * 1000.0
                elif name == "trainml_request_duration_seconds_bucket":
                    le = float(labels["le"])  # "+Inf" too
                    cumulative[le] = cumulative.get(le, 0) + int(value)
                elif name == "trainml_rejected_total":
                    by_reason = out["rejected_by_reason"]
                    by_reason[labels["reason"]] = by_reason.get(labels["reason"], 0) + int(value)
                elif name == "trainml_requests_in_flight":
                    out["in_flight"] += int(value)
                elif name == "trainml_queue_depth":
                    out["waiting"] += int(value)
                elif name == "trainml_batch_size_count":
                    out["batches"] += int(value)
                elif name == "trainml_batch_size_sum":
                    out["batched_requests"] += int(value)
                elif name == "trainml_streams_open":
                    out["streams_open"] += int(value)
                elif name == "trainml_stream_items_total":
                    out["stream_items"] += int(value)
                elif name == "trainml_stream_first_item_seconds_count":
                    out["stream_first_items"] += int(value)
                elif name == "trainml_stream_first_item_seconds_sum":
                    out["stream_first_item_ms_sum"] += value * 1000.0
        out["requests"] = sum(responses.values())
        out["responses"] = {str(k): v for k, v in sorted(responses.items())}
        out["errors"] = sum(v for k, v in responses.items() if _is_error(k))
        out["rejected"] = out["rejected_by_reason"].get("overloaded", 0)
        out["latency_ms_sum"] = round(out["latency_ms_sum"], 3)
        out["stream_first_item_ms_sum"] = round(out["stream_first_item_ms_sum"], 3)
        out["running"] = max(0, out["in_flight"] - out["waiting"])
        # Calls per latency bucket (DURATION_BUCKETS, then over the last): what the dashboard's p50/p99 come from.
        counts = [cumulative.get(float(le), 0) for le in (*DURATION_BUCKETS, "inf")]
        out["latency_buckets"] = [b - a for a, b in zip([0, *counts], counts)]
        return out


def _is_error(status: int) -> bool:
    # 503 is the gate refusing (counted as rejected), not the endpoint failing
    return status >= 500 and status != 503


def _add(child, sums: list) -> None:
    # Histogram has no public "add n observations to bucket i": its per-bucket values (non-cumulative, as the
    # multiprocess collector expects) and its sum are the fields observe() itself increments.
    for index, n in enumerate(sums[:-1]):
        if n:
            child._buckets[index].inc(n)
    child._sum.inc(sums[-1])


def wants_json(scope) -> bool:
    if b"format=json" in scope.get("query_string", b""):
        return True
    for name, value in scope["headers"]:
        if name == b"accept":
            return b"application/json" in value
    return False
