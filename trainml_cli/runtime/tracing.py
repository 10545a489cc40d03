"""Traces from the endpoint runtime: a span per call, sent to an OTLP/HTTP collector as JSON.

On when the endpoint's environment names a collector (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or
OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces; the control plane sets the latter for its jobs when it traces itself).
Each call to a route is a SERVER span named after the route ("POST /predict"), continuing the caller's W3C
`traceparent` when there is one, with children for its time in the queue, the forming of its batch (batched
routes) and the function's call. A caller's traceparent that says "not sampled" is respected: no span.

Why not the OpenTelemetry SDK here: the runtime runs in the job's own uv environment, resolved from the user's
requirements. The SDK and its exporter would add a dozen packages (protobuf among them) to that resolution, where
they can clash with the user's pins, and would be there whether tracing is on or not. OTLP/HTTP accepts JSON, and
what the runtime sends (three or four spans per call, one resource) takes the standard library and this module.
The control plane, which owns its environment, uses the SDK (server/tracing.py).

Off, it costs the request path one `is None` test per request: nothing here is imported or built. On, spans are
built on the event loop as tuples and encoded and posted by one background thread, which keeps at most
MAX_PENDING spans and drops (and counts) the rest rather than hold a call up.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from collections.abc import Mapping
from typing import Callable

TRACEPARENT = b"traceparent"
MAX_PENDING = 4096  # spans waiting to be sent; past it new ones are dropped
BATCH = 512  # spans per POST
EVERY = 1.0  # seconds between posts when fewer than BATCH wait
TIMEOUT = 5.0  # seconds a POST to the collector may take
SERVER, INTERNAL = 2, 1  # OTLP span kinds
_parent = re.compile(rb"[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?[ \t]*").fullmatch


def _id(bits: int) -> str:
    return f"{random.getrandbits(bits) or 1:0{bits // 4}x}"


def collector_url(environ: Mapping[str, str]) -> str | None:
    """Where spans go, from the standard OpenTelemetry variables; None: tracing is off."""
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true" or environ.get("OTEL_TRACES_EXPORTER") == "none":
        return None
    url = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if url:
        return url
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return base.rstrip("/") + "/v1/traces" if base else None


def _pairs(text: str) -> dict[str, str]:
    """`k=v,k2=v2` (OTEL_EXPORTER_OTLP_HEADERS, OTEL_RESOURCE_ATTRIBUTES), values percent-decoded."""
    from urllib.parse import unquote

    out = {}
    for item in text.split(","):
        key, eq, value = item.partition("=")
        if eq and key.strip():
            out[key.strip()] = unquote(value.strip())
    return out


def tracer_from(environ: Mapping[str, str], log: Callable[[str], None]) -> Tracer | None:
    """The runtime's tracer when the environment names a collector, else None (tracing off)."""
    return Tracer.from_environ(environ, log)


def _shown(url: str) -> str:
    """The collector's URL for a log line: no user or password in it."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl() \
        if parts.hostname else url


def _value(value) -> dict:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def _attributes(values: dict) -> list[dict]:
    return [{"key": k, "value": _value(v)} for k, v in values.items()]


class RequestSpan:
    """One call's span while it is served: its ids, its start, and the children its call reported."""

    __slots__ = ("trace_id", "span_id", "parent_id", "start", "children")

    def __init__(self, trace_id: str, parent_id: str | None):
        self.trace_id = trace_id
        self.span_id = _id(64)
        self.parent_id = parent_id
        self.start = time.monotonic()
        self.children: list[tuple] = []  # (name, start, end, attributes)

    def ran(self, call) -> None:
        """The pool's report of the call (gate.Call): when it was queued, picked, started and ended."""
        picked = getattr(call, "picked", None)  # set for batched calls only
        ready = picked if picked is not None else call.started
        self.children.append(("queue wait", call.queued, ready, {}))
        if picked is not None:
            self.children.append(("batch formation", picked, call.started, {}))
        self.children.append(("call", call.started, call.ended, {"code.function": getattr(call.fn, "__name__", "")}))


class Tracer:
    """The spans of one runtime process, and the thread that sends them."""

    def __init__(self, url: str, resource: dict, headers: dict[str, str], log: Callable[[str], None]):
        self.url = url
        self.headers = {"Content-Type": "application/json", **headers}
        self.resource = {"attributes": _attributes(resource)}
        self.log = log
        self.offset = time.time() - time.monotonic()  # monotonic -> unix time, for the spans' timestamps
        self.dropped = 0
        self._pending: list[dict] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._failing = False  # log a failing collector once, and again when it recovers
        self._thread: threading.Thread | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], log: Callable[[str], None]) -> Tracer | None:
        url = collector_url(environ)
        if url is None:
            return None
        resource = _pairs(environ.get("OTEL_RESOURCE_ATTRIBUTES", ""))
        resource["service.name"] = environ.get("OTEL_SERVICE_NAME") or resource.get("service.name") or \
            "trainml-endpoint"
        if environ.get("TRAINML_JOB_ID"):
            resource["trainml.job_id"] = environ["TRAINML_JOB_ID"]
        resource["process.pid"] = os.getpid()
        headers = _pairs(environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or environ.get("OTEL_EXPORTER_OTLP_HEADERS")
                         or "")
        return cls(url, resource, headers, log)

    # -- the event loop --------------------------------------------------------------------------------------

    def begin(self, headers) -> RequestSpan | None:
        """A span for a request, continuing its traceparent; None when the caller does not sample it."""
        for name, value in headers:
            if name == TRACEPARENT:
                found = _parent(value)
                if found is None or found.group(1) == b"ff" or found.group(2) == b"0" * 32 or \
                        found.group(3) == b"0" * 16:
                    break  # malformed: a new trace, as the W3C spec says
                if not int(found.group(4), 16) & 1:
                    return None  # the caller decided not to sample this trace
                return RequestSpan(found.group(2).decode(), found.group(3).decode())
        return RequestSpan(_id(128), None)

    def end(self, span: RequestSpan, method: str, path: str, route: str, status: int, request_id: bytes) -> None:
        end = time.monotonic()
        attributes = {"http.request.method": method, "url.path": path, "http.route": route,
                      "http.response.status_code": status, "trainml.request_id": request_id.decode("ascii")}
        spans = [self._span(span.trace_id, span.span_id, span.parent_id, route, SERVER, span.start, end, attributes,
                            status >= 500)]
        for name, start, stop, extra in span.children:
            spans.append(self._span(span.trace_id, _id(64), span.span_id, name, INTERNAL, start, stop, extra, False))
        with self._lock:
            room = MAX_PENDING - len(self._pending)
            if room < len(spans):
                self.dropped += len(spans) - max(room, 0)
                spans = spans[:max(room, 0)]
            self._pending.extend(spans)
            full = len(self._pending) >= BATCH
        if full:
            self._wake.set()

    def _span(self, trace_id, span_id, parent_id, name, kind, start, end, attributes, error) -> dict:
        out = {"traceId": trace_id, "spanId": span_id, "name": name, "kind": kind,
               "startTimeUnixNano": str(int((start + self.offset) * 1e9)),
               "endTimeUnixNano": str(int((end + self.offset) * 1e9)), "attributes": _attributes(attributes)}
        if parent_id:
            out["parentSpanId"] = parent_id
        if error:
            out["status"] = {"code": 2}  # STATUS_CODE_ERROR
        return out

    # -- the sending thread ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="otlp-export", daemon=True)
        self._thread.start()

    def close(self, wait: float = TIMEOUT) -> None:
        """Send what is pending (waiting at most `wait` seconds) and stop."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(wait)

    def _run(self) -> None:
        while True:
            self._wake.wait(EVERY)
            self._wake.clear()
            while True:
                with self._lock:
                    batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
                if not batch:
                    break
                self._post(batch)
            if self._stopping:
                return

    def _post(self, spans: list[dict]) -> None:
        import urllib.request

        body = {"resourceSpans": [{"resource": self.resource, "scopeSpans": [
            {"scope": {"name": "trainml_cli.runtime"}, "spans": spans}]}]}
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=self.headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
                answer.read()
        except Exception as exc:  # the collector is down or refuses: the endpoint serves on, the spans are lost
            self.dropped += len(spans)
            if not self._failing:
                self._failing = True
                self.log(f"tracing: sending spans to {_shown(self.url)} failed ({type(exc).__name__}: {exc}); "
                         "spans are dropped until it answers")
            return
        if self._failing:
            self._failing = False
            self.log(f"tracing: {_shown(self.url)} answers again")
