"""Streaming routes: a generator function's items sent one at a time, as Server-Sent Events or NDJSON.

A stream is one admitted call that holds one of the gate's threads, and so its concurrency slot, until it ends.
The event loop asks for each item in turn and the thread steps the generator once per ask: a `def` generator's
`next()` runs on the thread, an `async def` generator's `__anext__()` on the event loop while the thread waits.
Nothing runs ahead of what has been sent and nothing is buffered: an item is on the wire as soon as it is yielded
(an ASGI body message with more_body; uvicorn writes it at once, Ray Serve's proxy passes it on).

The end shows as the response's end: after the last item (and, for SSE, an `event: end`), or after an error item
(`event: error` / a last NDJSON line `{"error": "model_error", ...}`) when the function raised after its first item.
A caller who goes away is noticed by a task that waits for `http.disconnect`: the generator is closed (its
`finally` runs; an async generator's pending step is cancelled) as soon as its current step returns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
import traceback
from queue import SimpleQueue

from .. import errors
from .gate import UserExit
from .output import encode_item
from .replies import Reply, send_json

SSE = b"text/event-stream"
NDJSON = b"application/x-ndjson"
_END = object()  # the generator is exhausted
_CLOSE_TIMEOUT = 30.0  # seconds an async generator's aclose() may take before the thread lets it go


class Stream:
    """One streaming call: asked for items by the event loop, stepped on a gate thread (a work item of the pool)."""

    def __init__(self, fn, args, kwargs, is_async: bool, label: str, loop, log):
        self.fn, self.args, self.kwargs, self.is_async = fn, args, kwargs, is_async
        self.label = label
        self.loop = loop
        self.log = log
        self.asks: SimpleQueue = SimpleQueue()  # an asyncio future per item asked for; None: close
        self.cancelled = False
        self.task: asyncio.Task | None = None  # an async generator's step in progress, on the loop
        self.ended = loop.create_future()  # resolved when the thread lets go of the generator (the slot is free)

    # -- event loop side -------------------------------------------------------------------------------------

    def ask(self) -> asyncio.Future:
        """The next item: resolves to its JSON bytes, _END, or raises what the function raised."""
        future = self.loop.create_future()
        self.asks.put(future)
        return future

    def close(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        self.asks.put(None)
        if self.task is not None:
            self.task.cancel()  # an async generator gets CancelledError at its await, now

    # -- worker thread side ----------------------------------------------------------------------------------

    def run(self, index: int, pool) -> None:
        pool._busy[index] = True
        pool._serving[index] = 1
        generator = None
        try:
            while True:
                ask = self.asks.get()
                if ask is None:
                    return
                try:
                    if generator is None:
                        generator = self.fn(*self.args, **self.kwargs)
                    value, error = encode_item(self._step(generator)), None
                except (StopIteration, StopAsyncIteration):
                    value, error = _END, None
                except (concurrent.futures.CancelledError, asyncio.CancelledError):
                    return  # closed while an async step was pending: the generator has been cancelled
                except BaseException as exc:  # user code may raise anything, SystemExit included
                    value, error = None, (exc if isinstance(exc, Exception) else UserExit(exc))
                    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
                    self.log(f"{self.label}: {type(exc).__name__}: {exc}\n{''.join(lines).rstrip()}")
                self._to_loop(_resolve, ask, value, error)
                if value is _END or error is not None:
                    return
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

    def _step(self, generator):
        if not self.is_async:
            return next(generator)
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
                asyncio.run_coroutine_threadsafe(self._aclose(generator), self.loop).result(_CLOSE_TIMEOUT)
            else:
                generator.close()
        except BaseException as exc:  # a finally that raises, a generator that yields on close
            self.log(f"{self.label}: closing the stream's generator: {type(exc).__name__}: {exc}")

    def _done(self, pool) -> None:
        pool.admitted -= 1
        if not self.ended.done():
            self.ended.set_result(None)


def _resolve(future: asyncio.Future, value, error) -> None:
    if future.done():  # the loop stopped waiting for it (timeout, caller gone)
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)


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
            item = stream.ask()
            done, _ = await asyncio.wait((item, gone), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if item not in done:
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
            try:
                value = item.result()
            except Exception as exc:
                if not sent:
                    body = _error_body(exc, reply.request_id)
                    del body["request_id"]  # send_json adds it
                    return await send_json(reply, errors.ModelError.http_status, json.dumps(body).encode())
                body = _failure(events, _error_body(exc, reply.request_id))
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return 200
            if value is _END:
                if not sent:
                    await _start(send, events, reply)
                await send({"type": "http.response.body", "body": b"event: end\ndata: {}\n\n" if events else b"",
                            "more_body": False})
                return 200
            if not sent:
                await _start(send, events, reply)
                metrics.stream_first_item(stream.label, time.perf_counter() - started)
            chunk = b"data: " + value + b"\n\n" if events else value + b"\n"
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent += 1
            metrics.stream_item(stream.label)
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
