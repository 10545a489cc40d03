"""The endpoint's ASGI app: routes from the spec, /ping, /metrics, /docs, and the overload gate.

A lean ASGI path, not a framework: one dict lookup finds the route, admission is decided from the headers
before the body is read, the body is validated by a validator built once per route, and the call runs on the
gate's threads, or on the loop once a sync function has proved short (inline.py). The user's code is imported
on a thread after the server listens, so /ping can say "loading" (503) instead of leaving a slow model load
indistinguishable from a dead process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from .. import errors
from ..contracts import LoadFailure
from ..errors import ModelCodeError
from ..jsonbody import OFF_LOOP_BYTES
from .auth import CHALLENGE, UNAUTHORIZED, KeyFile
from .batching import Batcher
from .binding import Binder, InvalidRequest
from .body import BodyTooLarge, ClientGone, body_headers, chunks, is_json, is_multipart, read_body, unsupported_type
from .config import RuntimeConfig
from .gate import CallPool
from .inline import LONG, Inline
from .loader import load_routes
from .metrics import UNMATCHED, Metrics, make_directory
from .output import AccessLog, encoder
from .ownpaths import HEALTH_MOVES, RETRY, Description, Health, answer
from .replies import Reply, RequestIds, send_failure, send_json, send_result
from .tracing import tracer_from

# capture.py, uploads.py, streaming.py and docs.py load when an option or a route needs them, not at every start.
CAPTURED = "trainml.capture"  # the scope key of a kept call's Sample (capture.py; None: not kept)

# Bodies larger than OFF_LOOP_BYTES are validated on a thread of their own: pydantic releases the GIL while it
# parses, so the event loop keeps answering (/ping within 1 s while a hostile 10 MiB body is checked). Smaller
# bodies are validated inline, where a thread hop would cost more than the validation (about 10 us).


class Endpoint:
    """What a route needs per request, resolved once at start."""

    __slots__ = ("route", "binder", "function", "is_async", "label", "takes_body", "batcher", "streams",
                 "encode", "files", "inline")

    def __init__(self, route, binder):
        self.route = route
        self.binder = binder
        self.function = None
        self.is_async = False
        self.label = route.label
        self.takes_body = route.takes_body
        self.batcher = None  # a Batcher when the route is batched, once the code is loaded
        self.streams = False  # the function is a generator: its items are sent as they come (streaming.py)
        self.encode = encoder(route.content_type)
        self.files = None  # multipart in, files out (uploads.py) for a route with file params
        if any(p.type == "file" for p in route.body):
            from .uploads import FileParams
            self.files = FileParams(route, binder)
        self.inline = None  # an Inline when a plain sync function may run on the loop once proved short (inline.py)


class EndpointApp:
    def __init__(self, config: RuntimeConfig, root: Path, on_failed: Callable[[], None] | None = None,
                 on_ready: Callable[[], None] | None = None):
        self.config = config
        self.root = root
        self.on_failed = on_failed or (lambda: None)
        self.on_ready = on_ready or (lambda: None)  # an autoscaled worker tells its leader (runtime/waker.py)
        self.health = Health.LOADING
        self.pool = CallPool(config.max_concurrency, config.max_queue, config.timeout, log=self._log)
        self.endpoints = {(r.verb, r.path): Endpoint(r, Binder(r)) for r in config.routes}
        self.verbs_by_path: dict[str, list[str]] = {}
        for verb, path in self.endpoints:
            self.verbs_by_path.setdefault(path, []).append(verb)
        self.keys = KeyFile(config.key_file) if config.key_file else None
        self.capture = None  # kept calls (capture.py) with --capture
        if config.capture:
            from .capture import Recorder
            self.capture = Recorder.of(config, self.keys, self._log)
        self._validation = None  # one thread for large bodies, made on first use
        self.description = Description(f"{Path(root).name} endpoint", self.endpoints.values(), bool(config.key_file))
        self.access_log: AccessLog | None = None
        self.request_ids = RequestIds()
        self.started = time.time()
        if config.metrics_dir is None:  # hosted without server.serve(), which makes it for a worker group
            config.metrics_dir, config.metrics_dir_owned = make_directory(), True
        self.metrics = Metrics(config.metrics_dir, gauges=lambda: (self.pool.admitted, self.pool.waiting))
        self.pool.waited = self.metrics.queue_wait
        self.tracer = tracer_from(os.environ, self._log)  # None unless a collector is configured
        self.load_error: str | None = None
        self.platform_error: str | None = None  # the machine refused something (threads); never a load failure

    def move(self, health: Health) -> None:
        if health not in HEALTH_MOVES[self.health]:
            raise RuntimeError(f"runtime health cannot move from {self.health.value} to {health.value}")
        self.health = health

    # -- lifespan --------------------------------------------------------------------------------------------

    async def lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                loop = asyncio.get_running_loop()
                self.access_log = AccessLog(loop, sys.stdout, enabled=self.config.access_log)
                try:
                    self.pool.start(loop)
                except RuntimeError as exc:  # "can't start new thread": the machine's limit, not the model's fault
                    self.platform_error = (
                        f"the machine refused the endpoint's {self.pool.size} call threads ({exc}); "
                        "lower --max-concurrency or raise the process's thread and memory limits"
                    )
                    await send({"type": "lifespan.startup.failed", "message": self.platform_error})
                    return
                self.metrics.start(loop)
                # Started by a leader or the supervisor, never by Ray: a leader adding a worker signals it to shed.
                if self.config.ready_fd is not None:
                    import signal

                    from ..connections import shed

                    loop.add_signal_handler(signal.SIGUSR1, shed)  # when a worker is added beside it
                if self.capture is not None:
                    self.capture.start()
                if self.tracer is not None:
                    self.tracer.start()
                # A daemon thread, not the loop's executor: a SIGTERM during a slow load must not wait for it.
                threading.Thread(target=self._load, args=(loop,), name="load-model", daemon=True).start()
                if self.config.load_first:  # uvicorn listens only after startup: no call reaches code not loaded
                    while self.health is Health.LOADING:
                        await asyncio.sleep(0.02)
                    if self.health is Health.FAILED:
                        await send({"type": "lifespan.startup.failed", "message": self.load_error or ""})
                        return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.pool.stop()
                self.metrics.stop()
                if self.capture is not None:
                    self.capture.stop()
                if self.tracer is not None:
                    await asyncio.to_thread(self.tracer.close)
                if self.config.metrics_dir_owned:
                    # Here, not after the server returns: uvicorn ends the process by re-raising SIGTERM.
                    shutil.rmtree(self.config.metrics_dir, ignore_errors=True)
                if self.access_log:
                    self.access_log.flush()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _load(self, loop) -> None:
        try:
            loaded = load_routes(self.root, self.config.routes)
        except ModelCodeError as exc:
            loop.call_soon_threadsafe(self._failed, str(exc))
            return
        except BaseException as exc:  # anything else is still the user's code failing, not ours to crash on
            loop.call_soon_threadsafe(self._failed, f"loading model code failed: {type(exc).__name__}: {exc}")
            return
        loop.call_soon_threadsafe(self._ready, loaded)

    def _ready(self, loaded) -> None:
        for item in loaded:
            endpoint = self.endpoints[(item.route.verb, item.route.path)]
            endpoint.function = item.function
            endpoint.is_async = item.is_async
            endpoint.streams = item.streams
            if item.route.batch is not None:
                observe = self.metrics.batch if self.capture is None else self.capture.observe_batch(self.metrics.batch)
                endpoint.batcher = Batcher(item.route, item.function, item.is_async, endpoint.encode, self.pool,
                                           observe=observe)
            elif (self.config.inline_calls and not (item.is_async or item.streams or endpoint.files is not None)
                  and self.config.timeout > LONG):  # (a call on the loop cannot be answered 504 within a short one)
                endpoint.inline = Inline(endpoint.label, self._log, asyncio.get_running_loop())
        streaming = frozenset(item.route.label for item in loaded if item.streams)
        if streaming:
            self.description.streaming = streaming
        self.move(Health.READY)
        # News, not errors: on stdout, so a log shows them as the rest of the model's output.
        self._say(f"ready: {len(loaded)} route(s) from {self.root} (pid {os.getpid()})")
        self.on_ready()
        for label in sorted(streaming):
            self._say(f"route {label} streams: its function is a generator; each item is sent as it is yielded "
                      "(SSE with Accept: text/event-stream, else NDJSON)")

    def _failed(self, message: str) -> None:
        self.load_error = message
        self.move(Health.FAILED)
        self._log(f"error: {message}")
        self._log(LoadFailure.from_message(message).record())  # for the control plane (contracts.py)
        self.on_failed()

    def _log(self, line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def _say(self, line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    # -- requests --------------------------------------------------------------------------------------------

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":  # HTTP first and in this frame: a coroutine frame is a hundredth of a request
            if scope["type"] == "lifespan":
                await self.lifespan(receive, send)
            return
        start = _clock()
        headers = scope["headers"]
        send = Reply(send, self.request_ids.pick(headers))
        if self.tracer is not None:
            send.trace = self.tracer.begin(headers)
        method = scope["method"]
        path = scope["path"]
        root = scope.get("root_path")
        if root and path.startswith(root):  # Ray Serve passes its route prefix in both (uvicorn: root_path "")
            path = path[len(root):] or "/"
        # HEAD is GET without the body (uvicorn leaves the body out and keeps its content-length).
        endpoint = self.endpoints.get(("GET" if method == "HEAD" else method, path))
        sample = None
        if self.capture is not None and endpoint is not None:
            sample = scope[CAPTURED] = self.capture.sample(scope, send.request_id, endpoint.label, start)
            if sample is not None:  # the body is noted as read (call); the answer as sent (replies.py)
                if endpoint.streams:
                    send.send = sample.tee(send.send)
                    send.whole = None
                else:
                    send.sample = sample
        if self.keys is not None and path not in _OPEN and not self.keys.allows(headers):
            status = await send_json(send, errors.Unauthorized.http_status, UNAUTHORIZED, CHALLENGE)
            label = endpoint.label if endpoint is not None else UNMATCHED
        elif endpoint is not None:
            status = await self.call(endpoint, scope, receive, send)
            label = endpoint.label
        else:
            status = await answer(self, method, path, scope, send)
            if path in _UNRECORDED:
                return  # health checks and metrics polls would drown the traffic they are there to watch
            if not path.isprintable():  # a decoded %0A must not forge access-log lines
                path = path.encode("unicode_escape").decode()
            label = UNMATCHED
        seconds = _clock() - start
        self.metrics.request(label, status, seconds)
        self.access_log.write(method, path, status, seconds * 1000.0, send.request_id)
        if sample is not None:
            sample.done(status, seconds)
        if send.trace is not None:
            self.tracer.end(send.trace, method, path, label, status, send.request_id)

    async def call(self, endpoint: Endpoint, scope, receive, send) -> int:
        if self.health is not Health.READY:
            self.metrics.reject("loading")
            return await self.not_ready(send)
        pool = self.pool
        form = False
        if endpoint.takes_body:
            length, content_type = body_headers(scope["headers"])
            form = endpoint.files is not None and is_multipart(content_type)
            if (endpoint.files.cross_site(scope["headers"]) if form
                    else content_type is not None and not is_json(content_type)):
                return await self.wrong_type(send, content_type, endpoint)
            if length is not None and length > self.config.max_body_size:
                return await self.too_large(send)
        # Decided before the body is read: a refusal must cost next to nothing.
        if not pool.try_admit():
            self.metrics.reject("overloaded")
            report = json.dumps(pool.overload_report()).encode()
            return await send_json(send, errors.Overloaded.http_status, report, RETRY)
        upload = None  # a route with file params: the request's files (uploads.py)
        try:
            if form:
                args, kwargs, upload = await endpoint.files.bind_form(
                    content_type, chunks(receive, self.config.max_body_size))
                if scope.get(CAPTURED) is not None:
                    scope[CAPTURED].files(endpoint.route, args, kwargs, upload)
            elif endpoint.takes_body:
                body = await read_body(receive, self.config.max_body_size)
                if scope.get(CAPTURED) is not None:
                    scope[CAPTURED].body(body)
                if content_type is None and body.strip():  # a body must say it is JSON, see wrong_type
                    pool.release()
                    return await self.wrong_type(send, None, endpoint)
                if endpoint.files is not None:
                    bind = endpoint.files.bind_json
                    bound = await self.validate_off_loop(bind, body) if len(body) > OFF_LOOP_BYTES else bind(body)
                    args, kwargs, upload = bound
                elif len(body) > OFF_LOOP_BYTES:
                    args, kwargs = await self.validate_off_loop(endpoint.binder.bind_large_json, body)
                else:
                    args, kwargs = endpoint.binder.bind_json(body)
            else:
                args, kwargs = endpoint.binder.bind_query(scope["query_string"])
        except InvalidRequest as exc:
            pool.release()
            self.metrics.reject("invalid_request")
            body = {"error": errors.InvalidRequest.kind, "message": str(exc), "detail": exc.errors}
            return await send_json(send, errors.InvalidRequest.http_status, json.dumps(body).encode())
        except BodyTooLarge:
            pool.release()
            return await self.too_large(send)
        except ClientGone:
            pool.release()
            return 499
        inline = endpoint.inline
        if upload is None and inline is not None and inline.on and send.sample is None:
            # The hot path, in this frame: a proved-short function called here, its JSON sent in one piece.
            pool.release()  # done before the next request can be admitted: the slot was never given up
            try:
                payload, content_type = inline.run(endpoint.function, args, kwargs, endpoint.encode)
            except Exception as exc:
                return await send_failure(send, exc, self.config.timeout)
            if (payload.__class__ is bytes and send.whole is not None
                    and send.whole(200, send.head(content_type, len(payload)), payload)):
                return 200
            return await send_result(send, payload, content_type)  # a file, Ray Serve's send, a slow reader
        try:  # the files stay until the answer has gone (and the function has returned: `after`)
            return await self.answer(endpoint, args, kwargs, scope, receive, send, upload)
        finally:
            if upload is not None:
                upload.release()

    async def answer(self, endpoint: Endpoint, args, kwargs, scope, receive, send, upload=None) -> int:
        pool = self.pool
        sample = scope.get(CAPTURED)
        function = endpoint.function
        if endpoint.streams:
            from .streaming import Stream, serve as serve_stream
            stream = Stream(function if sample is None else sample.timed(function), args, kwargs, endpoint.is_async,
                            endpoint.label, asyncio.get_running_loop(), self._log)
            if upload is not None:
                stream.ended.add_done_callback(upload.hold())
            return await serve_stream(pool, self.metrics, stream, scope["headers"], receive, send, self.config.timeout)
        after = upload.hold() if upload is not None else None
        inline = endpoint.inline
        future = None
        if endpoint.batcher is not None:
            future = endpoint.batcher.submit(args, kwargs, after if sample is None else sample.after(after), send.trace)
        elif inline is None or not inline.on:
            future = pool.submit(function if sample is None else sample.timed(function), args, kwargs,
                                 endpoint.is_async, endpoint.encode, endpoint.label, after, send.trace, inline)
        try:
            if future is None:
                pool.release()  # done before the next request can be admitted: the slot was never given up
                if sample is not None:
                    sample.called = time.perf_counter()  # no wait: the call runs here, now
                payload, content_type = inline.run(function, args, kwargs, endpoint.encode)
            else:
                payload, content_type = await future
        except Exception as exc:
            return await send_failure(send, exc, self.config.timeout)
        return await send_result(send, payload, content_type)

    async def validate_off_loop(self, bind, body: bytes):
        if self._validation is None:
            self._validation = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="validate")
        return await asyncio.get_running_loop().run_in_executor(self._validation, bind, body)

    async def wrong_type(self, send, content_type: bytes | None, endpoint: Endpoint) -> int:
        self.metrics.reject("unsupported_media_type")
        message = unsupported_type(content_type, endpoint.files is not None)
        return await self.refuse(send, errors.UnsupportedMediaType, message)

    async def not_ready(self, send) -> int:
        body = json.dumps({"error": self.health.value,
                           "message": f"the model code is {self.health.value}; retry shortly"})
        return await send_json(send, errors.NotReady.http_status, body.encode(), RETRY)

    async def too_large(self, send) -> int:
        self.metrics.reject("body_too_large")
        limit = self.config.max_body_size
        return await self.refuse(send, errors.TooLarge, f"request body is larger than the endpoint's limit of {limit} "
                                 "bytes (--max-body-size)", [(b"connection", b"close")])

    async def refuse(self, send, error: type[errors.TrainMLError], message: str, headers=None) -> int:
        body = json.dumps({"error": error.kind, "message": message}).encode()  # kind and status: errors.py's
        return await send_json(send, error.http_status, body, headers)


_clock = time.perf_counter
_UNRECORDED = frozenset({"/ping", "/metrics"})
# Open without the endpoint's key: health checks, and the counts the control plane and Prometheus scrape.
_OPEN = frozenset({"/ping", "/metrics"})
