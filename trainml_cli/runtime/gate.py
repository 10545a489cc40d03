"""The concurrency gate: at most N calls run, at most Q wait in FIFO order, the rest are refused at once.

Calls run on a fixed set of threads that take work from one FIFO queue. A thread that finishes a call takes
the next queued call itself, so a freed slot is refilled without waiting for the event loop. That matters under
overload: the loop is then busy refusing the flood, and a handoff through it would leave slots idle. The loop
only decides admission (a counter, before the body is read) and delivers results.

A batched route (batching.py) puts its turn in the same queue; the thread that takes it runs one call for many
requests. Running calls then serve more requests than there are threads, so admission counts what max_queue is
about: the requests still waiting.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback
from queue import SimpleQueue
from typing import Any, Callable

from ..errors import Overloaded


class CallTimeout(Exception):
    """The call ran longer than the endpoint's --timeout (queue time does not count)."""


class UserExit(Exception):
    """User code raised SystemExit or KeyboardInterrupt in a call: a failed call, not a reason to stop serving."""

    def __init__(self, original: BaseException):
        super().__init__(str(original))
        self.original = original


def log_failure(log: Callable[[str], None], label: str, exc: BaseException) -> None:
    """The user's exception and its traceback, from the user's function down (our own frame skipped)."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next)
    log(f"{label}: {type(exc).__name__}: {exc}\n{''.join(lines).rstrip()}")


class Call:
    """One admitted call: what to run, and where its outcome goes."""

    __slots__ = ("fn", "args", "kwargs", "is_async", "encode", "future", "started", "done", "label", "timer", "queued",
                 "after", "trace", "ended", "picked", "record", "took")

    def __init__(self, fn, args, kwargs, is_async, encode, future, label, after=None, trace=None, record=None):
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.is_async = is_async
        self.encode = encode
        self.future = future
        self.label = label
        self.started = 0.0  # set by the worker thread when the call starts running
        self.done = False
        self.timer = None
        self.after = after  # called once the function has returned, even after a timeout was answered (uploads)
        self.trace = trace  # the request's span when tracing is on (tracing.py), else None
        # `queued`: when the call joined the pool's or a batcher's queue (max_wait_ms counts from the oldest);
        # `ended`: when its function returned; `picked`: when a thread took its batcher's turn (batched calls)
        self.record = record  # an inline.Inline told how long the call ran, or None
        self.took = 0.0  # seconds the call ran on its thread (set there)


class CallPool:
    """`size` worker threads, one FIFO queue, and admission control for `size + max_queue` calls."""

    def __init__(self, size: int, max_queue: int, timeout: float, log: Callable[[str], None] | None = None):
        self.size = size
        self.max_queue = max_queue
        self.capacity = size + max_queue
        self.timeout = timeout
        self.admitted = 0  # running + waiting; touched only on the event loop
        self.rejected = 0
        self.batched = False  # set when a batched route uses the pool: admission then counts batches
        self.waited: Callable[[str, float], None] = lambda label, seconds: None  # queue wait, for the metrics
        self._busy = [False] * size
        self._serving = [0] * size  # requests each thread is serving: 1 for a call, the batch's size for a batch
        self._queue: SimpleQueue = SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._log = log or (lambda line: sys.stderr.write(line + "\n"))

    # -- event loop side -------------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for index in range(self.size):
            thread = threading.Thread(target=self._work, args=(index,), name=f"call-{index}", daemon=True)
            try:
                thread.start()
            except RuntimeError:
                self.stop()  # the threads already started end; the caller reports the failure
                raise
            self._threads.append(thread)

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    @property
    def running(self) -> int:
        return sum(self._busy)

    @property
    def waiting(self) -> int:
        return max(0, self.admitted - sum(self._serving))

    def try_admit(self) -> bool:
        if self.admitted >= self.capacity and not (self.batched and self._batch_room()):
            self.rejected += 1
            return False
        self.admitted += 1
        return True

    def _batch_room(self) -> bool:
        # A running batch serves many requests on one thread, so running + waiting may exceed the capacity
        # counted in calls. What max_queue bounds is the requests still waiting: each free thread takes one more.
        return self.admitted - sum(self._serving) < self.max_queue + self.size - sum(self._busy)

    def release(self) -> None:
        """Give back an admission that never reached a thread (bad body, client gone)."""
        self.admitted -= 1

    def overload_report(self) -> dict:
        return {
            "error": Overloaded.kind,
            "message": (
                f"endpoint is at capacity: {self.running} running (max_concurrency {self.size}), "
                f"{self.waiting} waiting (max_queue {self.max_queue}); retry later"
            ),
            "running": self.running,
            "waiting": self.waiting,
            "max_concurrency": self.size,
            "max_queue": self.max_queue,
        }

    def submit(self, fn, args, kwargs, is_async: bool, encode, label: str, after=None, trace=None,
               record=None) -> asyncio.Future:
        """Queue an admitted call; the future resolves to encode(result) or raises the call's exception."""
        loop = self._loop
        future = loop.create_future()
        call = Call(fn, args, kwargs, is_async, encode, future, label, after, trace, record)
        call.queued = time.monotonic()
        call.timer = loop.call_later(self.timeout, self._check_timeout, call)
        self._queue.put(call)
        return future

    def _check_timeout(self, call: Call) -> None:
        if call.done:
            return
        if not call.started:  # still queued: the clock has not started yet
            call.timer = self._loop.call_later(self.timeout, self._check_timeout, call)
            return
        left = call.started + self.timeout - time.monotonic()
        if left > 0:
            call.timer = self._loop.call_later(left, self._check_timeout, call)
        elif not call.future.done():
            call.future.set_exception(CallTimeout())

    def arm(self, call: Call) -> None:
        """Start the timeout clock's checks for a call queued outside `submit` (a batch's request)."""
        call.timer = self._loop.call_later(self.timeout, self._check_timeout, call)

    def put(self, work) -> None:
        """Queue work for the threads: a Call, or anything with `run(index, pool)` (a batcher's turn)."""
        self._queue.put(work)

    def _finish(self, call: Call, value: Any, error: BaseException | None) -> None:
        call.done = True
        self.admitted -= 1
        self.waited(call.label, call.started - call.queued)
        if call.trace is not None:
            call.trace.ran(call)
        if call.after is not None:
            call.after()
        if call.timer is not None:
            call.timer.cancel()
        if call.record is not None:
            call.record.ran_on_thread(call.took)
        future = call.future
        if future.done():  # already answered 504; the late result has nowhere to go
            self._log(f"{call.label}: call finished after its timeout had been answered")
            return
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)

    # -- worker thread side ----------------------------------------------------------------------------------

    def _work(self, index: int) -> None:
        queue, busy, serving, loop = self._queue, self._busy, self._serving, self._loop
        while True:
            call = queue.get()
            if call is None:
                return
            if call.__class__ is not Call:  # a batched route's turn: it takes its own queued requests
                call.run(index, self)
                continue
            busy[index] = True
            serving[index] = 1
            call.started = time.monotonic()
            try:
                if call.is_async:
                    result = asyncio.run_coroutine_threadsafe(call.fn(*call.args, **call.kwargs), loop).result()
                else:
                    result = call.fn(*call.args, **call.kwargs)
                # Encode here, not on the loop: the loop's time belongs to admission and I/O.
                value, error = call.encode(result), None
                call.took = time.monotonic() - call.started
            except BaseException as exc:  # user code may raise anything, SystemExit included
                value, error = None, (exc if isinstance(exc, Exception) else UserExit(exc))
                call.took = time.monotonic() - call.started
                log_failure(self._log, call.label, exc)
            finally:
                call.ended = time.monotonic()
                busy[index] = False
                serving[index] = 0
            loop.call_soon_threadsafe(self._finish, call, value, error)
