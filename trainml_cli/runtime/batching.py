"""Batched routes: many requests answered by one call of the user's function.

A route with `"batch": {"max_size": N, "max_wait_ms": M}` gets one Batcher. Each validated request joins the
batcher's queue (a bad body got its 422 before and never joins). The batcher has at most one turn waiting in
the call pool's FIFO queue; the pool thread that takes the turn takes up to N queued requests and calls the
function once, with one list per param:

    keyword route:     f(text=[t1, t2, ...], threshold=[h1, h2, ...])
    positional route:  f([t1, t2, ...], [h1, h2, ...])

Batches are opportunistic: with nothing running, a batch goes as soon as a thread is free, with what is
queued; when M > 0 and fewer than N are queued the thread first waits until N are there or the oldest has waited
M ms (at low load M trades latency for batch size). While another batch of the route is running, a batch short
of N waits for it to end, at most as long as a batch has taken lately: starting a second pass beside the first
would only split the queue into small batches that each cost nearly what a full one costs (a forward pass reads
all its weights whatever the batch size), and share the CPU with it. So under load one batch forms while the
other runs, and goes full or the moment the core is free. When requests remain after a batch is taken, the
batcher puts a new turn in the pool's queue, so another free thread can run the next batch at the same time
(max_concurrency counts batches): full batches still run side by side.

The function returns a list, tuple or array with one result per request, in order. Anything else, or a result
of the wrong length, answers 500 to every request of the batch, naming the route and what came back; so does an
exception in the function.
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from collections import deque
from typing import Callable

from .gate import Call, CallPool, UserExit


class BatchResultError(Exception):
    """The batched function's return value does not answer each request of the batch."""


class Batcher:
    def __init__(self, route, function: Callable, is_async: bool, encode: Callable, pool: CallPool,
                 observe: Callable[[str, int], None] = lambda label, size: None):
        self.label = route.label
        self.name = route.function
        self.names = [p.name for p in route.body]
        self.positional = route.positional
        self.max_size = route.batch.max_size
        self.max_wait = route.batch.max_wait_ms / 1000.0
        self.function = function
        self.is_async = is_async
        self.encode = encode
        self.pool = pool
        self.observe = observe  # (route label, batch size), called on the event loop for the metrics
        self.pending: deque[Call] = deque()
        self.cond = threading.Condition(threading.Lock())
        self.turn_queued = False  # at most one turn in the pool's queue: one thread forms a batch at a time
        self.running = 0  # batches of this route being called now
        self.typical = 0.0  # seconds a batch's call has taken lately (a moving average): how long to wait for one
        pool.batched = True

    # -- event loop side -------------------------------------------------------------------------------------

    def submit(self, args: tuple, kwargs: dict, after=None, trace=None) -> asyncio.Future:
        """Queue one validated request; the future resolves to its encoded result, or raises."""
        pool = self.pool
        future = pool._loop.create_future()
        call = Call(self.function, args, kwargs, self.is_async, self.encode, future, self.label, after, trace)
        call.queued = time.monotonic()
        pool.arm(call)
        with self.cond:
            self.pending.append(call)
            if len(self.pending) >= self.max_size:
                self.cond.notify()  # a thread waiting to fill this batch need wait no longer
            post = not self.turn_queued
            self.turn_queued = True
        if post:
            pool.put(self)
        return future

    def _done(self, batch: list[Call], outcomes: list) -> None:
        for call, (value, error) in zip(batch, outcomes):
            self.pool._finish(call, value, error)
        self.observe(self.label, len(batch))

    # -- pool thread side ------------------------------------------------------------------------------------

    def take(self) -> list[Call]:
        with self.cond:
            if self.pending and len(self.pending) < self.max_size and (self.max_wait > 0 or self.running):
                filled = self.pending[0].queued + self.max_wait
                # A running batch is waited for no longer than a batch takes, so a hung call holds nobody long.
                behind = time.monotonic() + self.typical
                while len(self.pending) < self.max_size:
                    now = time.monotonic()
                    left = max(filled - now, behind - now if self.running else 0.0)
                    if left <= 0:
                        break
                    self.cond.wait(left)
            batch = [self.pending.popleft() for _ in range(min(len(self.pending), self.max_size))]
            more = bool(self.pending)
            self.turn_queued = more
            self.running += bool(batch)
        if more:
            self.pool.put(self)  # the rest go to the next free thread, as a batch of their own
        return batch

    def run(self, index: int, pool: CallPool) -> None:
        """A pool thread's turn: take a batch, call the function once, answer each request."""
        picked = time.monotonic()
        batch = self.take()
        if not batch:
            return
        pool._busy[index] = True
        pool._serving[index] = len(batch)
        started = time.monotonic()
        for call in batch:
            call.started = started  # the timeout counts the batch's call, not the time spent queued
            call.picked = picked
        try:
            outcomes = self._call(batch)
        finally:
            ended = time.monotonic()
            for call in batch:
                call.ended = ended
            pool._busy[index] = False
            pool._serving[index] = 0
            with self.cond:
                self.running -= 1
                took = ended - started
                self.typical = took if not self.typical else 0.8 * self.typical + 0.2 * took
                self.cond.notify()  # a batch forming behind this one may go now
        pool._loop.call_soon_threadsafe(self._done, batch, outcomes)

    def _call(self, batch: list[Call]) -> list:
        try:
            if self.positional:
                columns = [[call.args[i] for call in batch] for i in range(len(self.names))]
                pending = self.function(*columns)
            else:
                columns = {name: [call.kwargs[name] for call in batch] for name in self.names}
                pending = self.function(**columns)
            if self.is_async:
                result = asyncio.run_coroutine_threadsafe(pending, self.pool._loop).result()
            else:
                result = pending
        except BaseException as exc:  # user code may raise anything, SystemExit included
            error = exc if isinstance(exc, Exception) else UserExit(exc)
            lines = traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next)
            self.pool._log(f"{self.label}: batch of {len(batch)}: {type(exc).__name__}: {exc}\n"
                           f"{''.join(lines).rstrip()}")
            return [(None, error)] * len(batch)
        try:
            results = self._split(result, len(batch))
        except BatchResultError as exc:
            self.pool._log(f"error: {exc}")
            return [(None, exc)] * len(batch)
        outcomes = []
        for item in results:  # encoded one by one: one unsendable result fails its own request only
            try:
                outcomes.append((self.encode(item), None))
            except Exception as exc:
                outcomes.append((None, exc))
        return outcomes

    def _split(self, result, size: int):
        if isinstance(result, (list, tuple)):
            items = result
        elif getattr(result, "ndim", 0) >= 1 and hasattr(result, "__getitem__"):  # numpy and the like: by rows
            items = result
        else:
            kind = "None" if result is None else f"a {type(result).__name__}"
            raise BatchResultError(
                f"route {self.label}: {self.name}() returned {kind} for a batch of {size}; a batched function "
                "returns a list, tuple or array with one result per request, in order"
            )
        if len(items) != size:
            raise BatchResultError(
                f"route {self.label}: {self.name}() returned {len(items)} results for a batch of {size}; "
                "a batched function returns one result per request, in order"
            )
        return items
