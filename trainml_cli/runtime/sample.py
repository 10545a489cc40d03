"""One call kept by --capture: what it notes on the call's path, and the JSON line it becomes on the writer.

On the call's path (the event loop) a Sample holds references, never copies: the body the app read (cut to
--capture-max-bytes only when it is longer), the JSON answer send_json sent, the status and the timings. Only a
stream's or a file's answer passes through `tee`, which copies at most the cap of it as it is sent.

On the writer thread (capture.py) `line` makes the entry's JSON text. A body that is whole, UTF-8, JSON and holds
no backslash is written as it came: the C scanner checks it (a fifth of what json.loads and json.dumps cost
together) and it is never encoded again; an answer our own encoder wrote (replies.ENCODED_JSON) is not even
checked. Without a backslash none of its characters is escaped, so a secret in
one of its strings is in the line as it is, where the redaction's plain search finds it. Any other body is
parsed and written anew as json.dumps does, so that a secret sent escaped (`\\u0073ecret`, `a\\"b`) takes the
forms the redaction looks for. Either way the line has no character a reader would split it at.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

from .replies import ENCODED_JSON
from .uploads import UploadPath

STREAMS = (b"application/x-ndjson", b"text/event-stream")
_scan = json.JSONDecoder().scan_once  # the value at an index and where it ends; as strict as json.loads
_string = json.encoder.encode_basestring  # a str as JSON, non-ASCII kept, as json.dumps(ensure_ascii=False)
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_WHITESPACE = " \t\n\r"
# Line breaks for str.splitlines that JSON leaves raw inside strings: escaped, so a body cannot split its entry.
_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


class Sample:
    """One kept call: its bodies up to the cap, its answer's status and type, and its timings."""

    __slots__ = ("recorder", "id", "time", "start", "route", "query", "client", "request", "request_size",
                 "form", "status", "content_type", "response", "response_size", "items", "latency", "called",
                 "batch_size", "release")

    def __init__(self, recorder, scope, request_id: bytes, label: str, start: float):
        self.recorder = recorder
        self.id = request_id
        self.time = time.time()
        self.start = start
        self.route = label
        self.query = scope.get("query_string")
        self.client = scope.get("client")
        self.request = b""
        self.request_size = 0
        self.form = None  # (fields, files) of a multipart body
        self.status = 0
        self.content_type = b""
        self.response: bytes | list[bytes] = b""  # a list while tee copies it
        self.response_size = 0
        self.items = 0
        self.latency = 0.0
        self.called = 0.0  # perf_counter when the function started (a gate thread picked the call up)
        self.batch_size = None
        self.release = None  # an uploaded files' hold, let go once they are hashed

    # -- hooks on the call's path (event loop) -------------------------------------------------------------

    def body(self, data: bytes) -> None:
        """The request's JSON body, as read."""
        cap = self.recorder.max_bytes
        self.request = data if len(data) <= cap else data[:cap]
        self.request_size = len(data)

    def answer(self, content_type: bytes, data: bytes) -> None:
        """An answer sent in one piece (replies.send_json)."""
        cap = self.recorder.max_bytes
        self.content_type = content_type
        self.response = data if len(data) <= cap else data[:cap]
        self.response_size = len(data)

    def tee(self, send):
        """A send that copies a stream's or a file's answer as it goes, up to the cap."""
        cap = self.recorder.max_bytes
        parts: list[bytes] = []
        self.response = parts  # joined on the writer

        async def sending(message):
            kind = message["type"]
            if kind == "http.response.start":
                for name, value in message.get("headers") or ():
                    if name == b"content-type":
                        self.content_type = value
            elif kind == "http.response.body":
                body = message.get("body")
                if body:
                    if self.content_type in STREAMS:  # one write may carry several items (streaming.py)
                        self.items += _count_items(body, self.content_type)
                    if self.response_size < cap:
                        parts.append(body[:cap - self.response_size])
                    self.response_size += len(body)
            await send(message)

        return sending

    def timed(self, function):
        """The function, noting when a thread starts it (the end of the call's queue wait)."""

        def started(*args, **kwargs):
            self.called = time.perf_counter()
            return function(*args, **kwargs)

        return started

    def after(self, then=None):
        """A call's `after` that also puts this sample in line for its batch's size (Recorder.observe_batch)."""

        def done():
            self.recorder.batched(self)
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

    def line(self, stamp, canonical: bool = False) -> str:
        """The entry as one line of JSON (no newline); `canonical`: every body parsed and encoded anew."""
        cap = self.recorder.max_bytes
        if self.form is not None:
            request = _encode(self._form())
        elif self.request_size:
            request = _json(self.request, self.request_size, cap, canonical)[0]
        else:
            request = "null"
        error = None
        data = self.response if self.response.__class__ is bytes else b"".join(self.response)
        if self.content_type is ENCODED_JSON and self.response_size <= cap and not canonical:
            response = data.decode()  # our encoder's, whole: JSON on one line, strings as _encode writes them
            if '"error"' in response:
                error = _error(json.loads(response))
        elif self.content_type in STREAMS:
            answer = {"items": _items(data, self.content_type), "count": self.items}
            if self.response_size > cap:
                answer["cut"] = f"[cut at {cap} of {self.response_size} bytes]"
            response = _encode(answer)
            if answer["items"]:
                error = _error(answer["items"][-1])
        elif self.content_type.startswith(b"application/json") or self.content_type.endswith(b"+json"):
            response, answer = _json(data, self.response_size, cap, canonical)
            error = _error(answer)
        else:
            response = f'{{"content_type":{_string(self.content_type.decode("latin-1"))},"size":{self.response_size}}}'
        queue = f"{(self.called - self.start) * 1000.0:.3f}" if self.called else "null"
        query = f'"query":{_string(self.query.decode("latin-1"))},' if self.query else ""
        text = (f'{{"id":{_string(self.id.decode("ascii"))},"time":"{stamp(self.time)}",'
                f'"route":{_string(self.route)},"status":{self.status},'
                f'"latency_ms":{self.latency * 1000.0:.3f},"queue_ms":{queue},'
                f'"batch_size":{"null" if self.batch_size is None else self.batch_size},{query}'
                f'"request":{request},"response":{response},'
                f'"error":{"null" if error is None else _encode(error)},'
                f'"client":{_string(self.client[0]) if self.client else "null"}}}')
        return text if text.isascii() else text.translate(_BREAKS)

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


def _json(data: bytes, size: int, cap: int, canonical: bool) -> tuple[str, object]:
    """(JSON text, value) of a body: as it came when it can be (see the module's docstring), else as json.dumps
    writes _body's value."""
    if not canonical and size <= cap:
        try:
            text = data.decode().strip(_WHITESPACE)
            value, end = _scan(text, 0)
        except (ValueError, StopIteration, RecursionError):  # not UTF-8 or not JSON: _body says what it is
            pass
        else:
            if end == len(text) and "\\" not in text:
                if "\n" in text or "\r" in text:  # outside strings (JSON has no raw ones inside): whitespace
                    text = text.replace("\n", " ").replace("\r", " ")
                return text, value
    value = _body(data, size, cap)
    return _encode(value), value


def _body(data: bytes, size: int, cap: int):
    """A body as JSON when it is whole and JSON; else its text, cut at the cap with a marker."""
    if size <= cap:
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
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


def _error(answer):
    """{kind, message} of an error answer (or a stream's error item)."""
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        return {"kind": answer["error"], "message": answer.get("message")}
    return None


class Stamps:
    """Times as `2026-11-27T03:50:32.123Z`, the date and time formatted once a second (the writer's only)."""

    def __init__(self):
        self._second = -1
        self._prefix = ""

    def __call__(self, moment: float) -> str:
        second = int(moment)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return self._prefix + _MILLISECONDS[int((moment - second) * 1000)]


_MILLISECONDS = [f".{n:03d}Z" for n in range(1000)]
