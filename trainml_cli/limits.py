"""Limits that fit one machine, shared by the CLI, the API and the runtime, so all three refuse the same values.

A leaf with no imports: the CLI reads these for its option ranges on every start, and the runtime (which runs in
an environment holding only its own requirements) reads them too.
"""

MAX_CONCURRENCY = 1024  # calls running at once per worker process: each is an OS thread with its own stack
MAX_QUEUE = 1_000_000  # requests waiting per worker process; each holds its parsed body in memory
MAX_BATCH_SIZE = 1024  # requests in one call of a batched route
MAX_BATCH_WAIT_MS = 1000  # how long a batch may wait to fill up; longer only adds latency
# Seconds: the bounds of the runtime's latency histogram, which the control plane's charts read p50/p99 from.
# Finer than prometheus_client's defaults at the low end: a trivial call is answered in under 1 ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def cpu_count() -> int:
    """Worker processes beyond the CPUs only compete for them (and take long to start and stop)."""
    import os

    return os.cpu_count() or 1
