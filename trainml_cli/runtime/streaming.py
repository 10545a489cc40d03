"""Streaming routes: a generator function's items sent one at a time, as Server-Sent Events or NDJSON.

A stream is one admitted call that holds one of the gate's threads, and so its concurrency slot, until it ends.
The thread steps the generator (a `def` generator's `next()` on the thread, an `async def` generator's
`__anext__()` on the event loop while the thread waits) and hands each item, encoded, to the event loop, which
sends it at once (an ASGI body message with more_body; uvicorn writes it at once, Ray Serve's proxy passes it
on). Nothing holds an item back: the loop is woken only when it waits for an item, and items that became ready
while it was busy sending go out together in its next write, so a fast generator costs one wake-up and one write
per batch of ready items, not a thread round trip per item. The thread runs at most AHEAD items (or AHEAD_BYTES)
ahead of what the loop has taken; a slow caller (the socket's buffer full, so uvicorn's send waits) pauses the
generator there. The first item, and any that took a slow step while the loop waited, are handed over before the
next step begins, so a generator that computes in Python does not delay them by holding the GIL.

The end shows as the response's end: after the last item (and, for SSE, an `event: end`), or after an error item
(`event: error` / a last NDJSON line `{"error": "model_error", ...}`) when the function raised after its first item.
A caller who goes away is noticed by a task that waits for `http.disconnect`: the generator is closed (its
`finally` runs; an async generator's pending step is cancelled) as soon as its current step returns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time
import traceback

from .. import errors
from .gate import UserExit
from .output import encode_item
from .replies import Reply, send_json

SSE = b"text/event-stream"
NDJSON = b"application/x-ndjson"
_END = object()  # the generator is exhausted
_CLOSE_TIMEOUT = 30.0  # seconds an async generator's aclose() may take before the thread lets it go
AHEAD = 64  # items the thread may step past what the loop has taken
AHEAD_BYTES = 256 * 1024  # and bytes: big items pause the generator sooner
HANDOFF_STEP = 0.0005  # seconds: after a step this slow (or the first), the loop takes the item before the next step


class Stream:
    """One streaming call: stepped on a gate thread (a work item of the pool), its items taken by the event loop."""

    def __init__(self, fn, args, kwargs, is_async: bool, label: str, loop, log):
        self.fn, self.args, self.kwargs, self.is_async = fn, args, kwargs, is_async
        self.label = label
        self.loop = loop
        self.log = log
        self.lock = threading.Condition(threading.Lock())  # guards ready, pending, waiter; the thread waits on it
        self.ready: list = []  # encoded items not yet taken, then possibly _END or an exception
        self.pending = 0  # bytes in ready
        self.waiter: asyncio.Future | None = None  # the loop waits for an item on this one
        self.cancelled = False
        self.task: asyncio.Task | None = None  # an async generator's step in progress, on the loop
        self.ended = loop.create_future()  # resolved when the thread lets go of the generator (the slot is free)

    # -- event loop side -------------------------------------------------------------------------------------

    def take(self) -> list | asyncio.Future:
        """Everything ready (items, then possibly _END or the exception the function raised), or, when nothing
        is, a future resolved as soon as something is."""
        with self.lock:
            ready = self.ready
            if ready:
                self.ready, self.pending = [], 0
                self.lock.notify()
                return ready
            self.waiter = waiter = self.loop.create_future()
            return waiter

    def close(self) -> None:
        if self.cancelled:
            return
        with self.lock:
            self.cancelled = True
            self.lock.notify()
        if self.task is not None:
            self.task.cancel()  # an async generator gets CancelledError at its await, now

    # -- worker thread side ----------------------------------------------------------------------------------

    def run(self, index: int, pool) -> None:
        pool._busy[index] = True
        pool._serving[index] = 1
        generator = None
        lock = self.lock
        try:
            generator = self.fn(*self.args, **self.kwargs)
            step = (lambda: self._astep(generator)) if self.is_async else generator.__next__
            handoff = True  # the first item, always
            while True:
                with lock:
                    while not self.cancelled and (len(self.ready) >= AHEAD or self.pending >= AHEAD_BYTES):
                        lock.wait()
                    if self.cancelled:
                        return
                began = time.perf_counter()
                try:
                    value = encode_item(step())
                except (StopIteration, StopAsyncIteration):
                    value = _END
                except (concurrent.futures.CancelledError, asyncio.CancelledError):
                    return  # closed while an async step was pending: the generator has been cancelled
                except BaseException as exc:  # user code may raise anything, SystemExit included
                    value = exc if isinstance(exc, Exception) else UserExit(exc)
                    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
                    self.log(f"{self.label}: {type(exc).__name__}: {exc}\n{''.join(lines).rstrip()}")
                with lock:
                    self.ready.append(value)
                    if value.__class__ is bytes:
                        self.pending += len(value)
                    waiter, self.waiter = self.waiter, None
                if waiter is not None:
                    self._to_loop(_wake, waiter)
                    if handoff or time.perf_counter() - began > HANDOFF_STEP:
                        # The loop waited for this item: let it take it before stepping on, so that it is not kept
                        # waiting for the GIL (up to sys.getswitchinterval()) by a step that runs Python.
                        handoff = False
                        with lock:
                            while self.ready and not self.cancelled:
                                lock.wait()
                if value.__class__ is not bytes:
                    return
        except BaseException as exc:  # calling a generator function runs none of its code, but be safe
            self.log(f"{self.label}: starting the stream: {type(exc).__name__}: {exc}")
            with lock:
                self.ready.append(exc if isinstance(exc, Exception) else UserExit(exc))
                waiter, self.waiter = self.waiter, None
            if waiter is not None:
                self._to_loop(_wake, waiter)
        finally:
            if generator is not None:
                self._close(generator)
            pool._busy[index] = False
            pool._serving[index] = 0
            self._to_loop(self._done, pool)

    def _to_loop(self, callback, *args) -> None:
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop has closed: the endpoint is shutting down and no one is waiting
            pass

    def _astep(self, generator):
        return asyncio.run_coroutine_threadsafe(self._anext(generator), self.loop).result()

    async def _anext(self, generator):
        self.task = asyncio.ensure_future(generator.__anext__())
        if self.cancelled:
            self.task.cancel()
        return await self.task

    async def _aclose(self, generator) -> None:
        task = self.task
        if task is not None and not task.done():  # the step must have stopped before the generator can close
            task.cancel()
            await asyncio.wait((task,))
        await generator.aclose()

    def _close(self, generator) -> None:
        try:
            if self.is_async:
                closing = self._aclose(generator)
                try:
                    future = asyncio.run_coroutine_threadsafe(closing, self.loop)
                except RuntimeError:  # the loop has closed (the endpoint is shutting down): nothing can run it
                    closing.close()
                    return
                future.result(_CLOSE_TIMEOUT)
            else:
                generator.close()
        except BaseException as exc:  # a finally that raises, a generator that yields on close
            self.log(f"{self.label}: closing the stream's generator: {type(exc).__name__}: {exc}")

    def _done(self, pool) -> None:
        pool.admitted -= 1
        if not self.ended.done():
            self.ended.set_result(None)


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():  # the loop may have stopped waiting for it (timeout, caller gone)
        waiter.set_result(None)


def wants_events(headers) -> bool:
    for name, value in headers:
        if name == b"accept":
            return SSE in value
    return False


async def _disconnected(receive) -> None:
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    except Exception:  # the server lost the connection its own way (Ray Serve raises what its proxy raised)
        pass


def _error_body(exc: BaseException, request_id: bytes) -> dict:
    original = exc.original if isinstance(exc, UserExit) else exc
    return {"error": errors.ModelError.kind, "type": type(original).__name__, "message": str(original),
            "request_id": request_id.decode("ascii")}


async def serve(pool, metrics, stream: Stream, headers, receive, reply: Reply, timeout: float) -> int:
    """Answer one admitted streaming call; the status for the access log and metrics (499: the caller left)."""
    events = wants_events(headers)
    send = reply.send
    pool.put(stream)
    gone = asyncio.ensure_future(_disconnected(receive))
    started = time.perf_counter()
    sent = 0
    metrics.stream_opened()
    try:
        while True:
            ready = stream.take()
            if ready.__class__ is not list:  # nothing yet: wait for the next item, the caller leaving, or the timeout
                done, _ = await asyncio.wait((ready, gone), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if ready not in done:
                    if gone in done:
                        return 499
                    message = (f"waiting for the stream's next item took longer than the endpoint's timeout of "
                               f"{timeout:g}s (--timeout, or endpoint.timeout in a job), which bounds each item")
                    if not sent:
                        body = {"error": errors.CallTimeout.kind, "message": message}
                        return await send_json(reply, errors.CallTimeout.http_status, json.dumps(body).encode())
                    body = {"error": errors.CallTimeout.kind, "message": message,
                            "request_id": reply.request_id.decode("ascii")}
                    await send({"type": "http.response.body", "body": _failure(events, body), "more_body": False})
                    return 200
                continue
            if gone.done():
                return 499
            last = ready[-1]
            if last.__class__ is not bytes:
                ready.pop()
            if ready:
                if not sent:
                    await _start(send, events, reply)
                    metrics.stream_first_item(stream.label, time.perf_counter() - started)
                # Items that became ready together go out in one write; each is still sent as soon as the loop
                # could take it.
                chunk = (b"data: " + b"\n\ndata: ".join(ready) + b"\n\n") if events else b"\n".join(ready) + b"\n"
                sent += len(ready)
                metrics.stream_item(stream.label, len(ready))
                if last.__class__ is bytes:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    continue
            else:
                chunk = b""
            if last is _END:
                if not sent:
                    await _start(send, events, reply)
                await send({"type": "http.response.body",
                            "body": chunk + (b"event: end\ndata: {}\n\n" if events else b""), "more_body": False})
                return 200
            if not sent:  # the function raised before its first item: the usual JSON error
                body = _error_body(last, reply.request_id)
                del body["request_id"]  # send_json adds it
                return await send_json(reply, errors.ModelError.http_status, json.dumps(body).encode())
            body = chunk + _failure(events, _error_body(last, reply.request_id))
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return 200
    finally:
        stream.close()
        gone.cancel()
        metrics.stream_closed()


async def _start(send, events: bool, reply: Reply) -> None:
    headers = [(b"content-type", SSE if events else NDJSON), (b"cache-control", b"no-cache"),
               (b"x-accel-buffering", b"no"), (b"x-request-id", reply.request_id)]  # no proxy may hold items back
    await send({"type": "http.response.start", "status": 200, "headers": headers})


def _failure(events: bool, body: dict) -> bytes:
    data = json.dumps(body).encode()
    return b"event: error\ndata: " + data + b"\n\n" if events else data + b"\n"
