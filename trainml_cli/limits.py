"""Limits that fit one machine, shared by the CLI, the API and the runtime, so all three refuse the same values.

A leaf with no imports: the CLI reads these for its option ranges on every start, and the runtime (which runs in
an environment holding only its own requirements) reads them too.
"""

MAX_CONCURRENCY = 1024  # calls running at once per worker process: each is an OS thread with its own stack
MAX_QUEUE = 1_000_000  # requests waiting per worker process; each holds its parsed body in memory
MAX_BATCH_SIZE = 1024  # requests in one call of a batched route
MAX_BATCH_WAIT_MS = 1000  # how long a batch may wait to fill up; longer only adds latency


def cpu_count() -> int:
    """Worker processes beyond the CPUs only compete for them (and take long to start and stop)."""
    import os

    return os.cpu_count() or 1
