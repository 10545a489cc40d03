"""Request capture: a sampled share of calls kept with their request and answer, written off the hot path.

With `--capture RATE` the endpoint keeps, for that share of the calls to its routes, one JSON line (`Entry`):
its id (the answer's X-Request-Id), time, route, status, latency, queue wait, batch size, request, answer, error
and client address. Never a header: the Authorization value cannot be kept because nothing reads it here. A JSON
body is kept as JSON when it is whole, else cut at --capture-max-bytes with a marker; a multipart body as its
form fields and each file's name, size and sha256, never its bytes; a stream as its items up to the cap and
their count. The values of the job's secrets (the variables named by --secret-env) and the endpoint's key are
replaced by REDACTED wherever they appear in what is kept.

The call's own work is to copy at most --capture-max-bytes of each body as it passes; everything else (JSON
parsing, hashing uploaded files, redaction, the write) happens on one writer thread behind a bounded queue. When
the writer falls behind, entries are dropped, never waited for, and the next segment says how many
(`{"dropped": N}`). Entries go to JSONL segments in --capture-dir (segments.py).
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import random
import threading
import time

from ..launchspec import CAPTURE_FOLDER
from .segments import Segment
from .uploads import UploadPath

QUEUE = 4096  # entries waiting for the writer; past it they are dropped (and counted)
WRITE_EVERY = 0.1  # seconds between the writer's turns
REDACTED = "REDACTED"
MIN_SECRET = 4  # shorter values would redact ordinary text (a secret "1" would take every digit 1)
STREAMS = (b"application/x-ndjson", b"text/event-stream")
CAPTURED = "trainml.capture"  # the scope key of a kept call's Sample (None: not kept), for the hooks in app.py


class Recorder:
    """One endpoint process's capture: sampling, the queue and its writer thread."""

    def __init__(self, rate: float, max_bytes: int, size: int, folder: str, secrets=(), log=None):
        self.rate = rate
        self.max_bytes = max_bytes
        self.size = size
        self.folder = folder
        self.secrets = [s for s in secrets if s and len(s) >= MIN_SECRET]
        self.key = None  # the endpoint's KeyFile, whose current key is redacted too
        self.dropped = 0
        self.written = 0
        # A deque the writer drains every WRITE_EVERY seconds: an append is the call's whole cost (a queue.Queue's
        # put would take a lock and wake the writer, whose GIL hand-over cost more than the rest at 2,000 calls/s).
        self._queue: collections.deque = collections.deque()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = log or (lambda line: None)
        self._random = random.random
        self._batches: dict[str, list] = {}  # route label -> samples whose batch has not been counted yet

    @classmethod
    def of(cls, config, keys=None, log=None) -> Recorder | None:
        """The recorder a RuntimeConfig asks for; None when capture is off."""
        if not config.capture:
            return None
        folder = config.capture_dir or os.path.abspath(CAPTURE_FOLDER)
        recorder = cls(config.capture, config.capture_max_bytes, config.capture_size, folder,
                       [os.environ.get(name, "") for name in config.secret_env or ()], log)
        recorder.key = keys
        return recorder

    def sample(self, scope, request_id: bytes, label: str) -> Sample | None:
        """A Sample for this call when it is one of those kept, else None."""
        if self.rate < 1.0 and self._random() >= self.rate:
            return None
        return Sample(self, scope, request_id, label)

    # -- the event loop's side -----------------------------------------------------------------------------

    def put(self, sample: Sample) -> None:
        if len(self._queue) < QUEUE:
            self._queue.append(sample)
        else:
            self.dropped += 1

    def observe_batch(self, observe):
        """metrics' batch observer, also telling each sampled call of the batch its size: a Batcher answers a
        batch's calls (their `after`) and then observes its size, in one step on the loop."""

        def observed(label: str, size: int) -> None:
            for sample in self._batches.pop(label, ()):
                sample.batch_size = size
            observe(label, size)

        return observed

    def start(self) -> None:
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        self._thread = threading.Thread(target=self._write, name="capture", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued, then end the writer."""
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join(timeout)

    # -- the writer thread ---------------------------------------------------------------------------------

    def _write(self) -> None:
        segment = Segment(self)
        try:
            while True:
                done = self._stopping.wait(WRITE_EVERY)
                items = []
                while self._queue:
                    items.append(self._queue.popleft())
                lines = []
                dropped, self.dropped = self.dropped, 0  # a racy read costs at most a miscount of one
                if dropped:
                    lines.append(json.dumps({"dropped": dropped, "time": _iso(time.time())}))
                for sample in items:
                    try:
                        lines.append(self.redact(json.dumps(sample.entry(), ensure_ascii=False)))
                    except Exception as exc:  # a capture must never take the endpoint down
                        self._log(f"capture: an entry could not be kept: {type(exc).__name__}: {exc}")
                if lines:
                    segment.write([(line + "\n").encode() for line in lines])
                    self.written += len(lines)
                if done:
                    return
        except OSError as exc:
            self._log(f"capture: stopped writing to {self.folder}: {exc}")
        finally:
            segment.close()

    def redact(self, text: str) -> str:
        values = list(self.secrets)
        key = self.key.key if self.key is not None else b""
        if key:
            values.append(key.decode("latin-1"))
        for value in values:
            for form in (value, json.dumps(value, ensure_ascii=False)[1:-1], json.dumps(value)[1:-1]):
                if form in text:
                    text = text.replace(form, REDACTED)
        return text


class Sample:
    """One kept call: what passes through its receive and send, up to the cap, and its timings."""

    __slots__ = ("recorder", "id", "time", "start", "route", "query", "client", "request", "request_size",
                 "form", "status", "content_type", "response", "response_size", "items", "error", "latency",
                 "called", "batch_size", "release")

    def __init__(self, recorder: Recorder, scope, request_id: bytes, label: str):
        self.recorder = recorder
        self.id = request_id.decode("ascii")
        self.time = time.time()
        self.start = time.perf_counter()
        self.route = label
        self.query = scope.get("query_string") or b""
        client = scope.get("client")
        self.client = client[0] if client else None
        self.request: list[bytes] = []
        self.request_size = 0
        self.form = None  # (fields, files) of a multipart body
        self.status = 0
        self.content_type = b""
        self.response: list[bytes] = []
        self.response_size = 0
        self.items = 0
        self.error = None
        self.latency = 0.0
        self.called = 0.0  # perf_counter when the function started (a gate thread picked the call up)
        self.batch_size = None
        self.release = None  # an uploaded files' hold, let go once they are hashed

    # -- hooks on the call's path (event loop) -------------------------------------------------------------

    def tee(self, receive, send):
        """(receive, send) that copy the bodies, up to the cap."""
        cap = self.recorder.max_bytes

        async def receiving():
            message = await receive()
            body = message.get("body")
            if body:
                if self.request_size < cap:
                    self.request.append(body[:cap - self.request_size])
                self.request_size += len(body)
            return message

        async def sending(message):
            kind = message["type"]
            if kind == "http.response.start":
                self.status = message["status"]
                for name, value in message.get("headers") or ():
                    if name == b"content-type":
                        self.content_type = value
            elif kind == "http.response.body":
                body = message.get("body")
                if body:
                    if self.content_type in STREAMS:  # one write may carry several items (streaming.py)
                        self.items += _count_items(body, self.content_type)
                    if self.response_size < cap:
                        self.response.append(body[:cap - self.response_size])
                    self.response_size += len(body)
            await send(message)

        return receiving, sending

    def timed(self, function):
        """The function, noting when a thread starts it (the end of the call's queue wait)."""

        def started(*args, **kwargs):
            self.called = time.perf_counter()
            return function(*args, **kwargs)

        return started

    def after(self, then=None):
        """A call's `after` that also puts this sample in line for its batch's size (Recorder.observe_batch)."""

        def done():
            self.recorder._batches.setdefault(self.route, []).append(self)
            if then is not None:
                then()

        return done

    def files(self, route, args, kwargs, upload) -> None:
        """A multipart call's fields and files (bound to the route's params), hashed later on the writer."""
        values = dict(zip((p.name for p in route.body), args)) if args else {}
        values.update(kwargs)
        fields, files = {}, {}
        for name, value in values.items():
            (files if isinstance(value, UploadPath) else fields)[name] = value
        self.form = (fields, files)
        if files and upload is not None:
            self.release = upload.hold()

    def done(self, status: int, seconds: float) -> None:
        self.status = status
        self.latency = seconds
        self.recorder.put(self)

    # -- on the writer thread ------------------------------------------------------------------------------

    def entry(self) -> dict:
        cap = self.recorder.max_bytes
        entry = {
            "id": self.id, "time": _iso(self.time), "route": self.route, "status": self.status,
            "latency_ms": round(self.latency * 1000.0, 3),
            "queue_ms": round((self.called - self.start) * 1000.0, 3) if self.called else None,
            "batch_size": self.batch_size,
        }
        if self.query:
            entry["query"] = self.query.decode("latin-1")
        if self.form is not None:
            entry["request"] = self._form()
        elif self.request_size:
            entry["request"] = _body(b"".join(self.request), self.request_size, cap)
        else:
            entry["request"] = None
        body = b"".join(self.response)
        if self.content_type in STREAMS:
            entry["response"] = {"items": _items(body, self.content_type), "count": self.items}
            if self.response_size > cap:
                entry["response"]["cut"] = f"[cut at {cap} of {self.response_size} bytes]"
        elif self.content_type.startswith(b"application/json") or self.content_type.endswith(b"+json"):
            entry["response"] = _body(body, self.response_size, cap)
        else:
            entry["response"] = {"content_type": self.content_type.decode("latin-1"), "size": self.response_size}
        problem = _error(entry["response"])
        entry["error"] = problem
        entry["client"] = self.client
        return entry

    def _form(self) -> dict:
        fields, files = self.form
        try:
            described = {}
            for name, path in files.items():
                digest, size = hashlib.sha256(), 0
                with open(path, "rb") as file:
                    while chunk := file.read(1 << 20):
                        digest.update(chunk)
                        size += len(chunk)
                described[name] = {"name": os.path.basename(path), "size": size, "sha256": digest.hexdigest()}
        finally:
            if self.release is not None:
                self.release()
        shown = {name: value if isinstance(value, (str, int, float, bool, list, dict, type(None))) else str(value)
                 for name, value in fields.items()}
        return {"fields": shown, "files": described}


def _body(data: bytes, size: int, cap: int):
    """A body as JSON when it is whole and JSON; else its text, cut at the cap with a marker."""
    if size <= cap:
        try:
            return json.loads(data)
        except ValueError:
            return data.decode("utf-8", "replace")
    return data.decode("utf-8", "ignore") + f"…[cut at {cap} of {size} bytes]"


def _count_items(body: bytes, content_type: bytes) -> int:
    """The items in one write of a stream: NDJSON lines, or SSE events but the last one (`event: end`)."""
    if content_type == b"text/event-stream":
        return sum(1 for event in body.split(b"\n\n") if event and not event.startswith(b"event: end"))
    return body.count(b"\n")


def _items(data: bytes, content_type: bytes) -> list:
    items = []
    if content_type == b"text/event-stream":
        lines = [line[6:] for event in data.split(b"\n\n") if not event.startswith(b"event: end")
                 for line in event.split(b"\n") if line.startswith(b"data: ")]
    else:
        lines = [line for line in data.split(b"\n") if line]
    for line in lines:
        try:
            items.append(json.loads(line))
        except ValueError:
            break  # the last one, cut
    return items


def _error(response):
    """{kind, message} of an error answer (or a stream's error item)."""
    if isinstance(response, dict) and "items" in response:
        response = response["items"][-1] if response["items"] else None
    if isinstance(response, dict) and isinstance(response.get("error"), str):
        return {"kind": response["error"], "message": response.get("message")}
    return None


def _iso(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{int(moment % 1 * 1000):03d}Z"
