"""The endpoint's own paths: /ping (the runtime's health), /metrics, /openapi.json and /docs (built when first
asked for); OPTIONS; and the 404 or 405 a request no route serves gets, naming what does exist.
"""

from __future__ import annotations

import enum
import json
import os
import time

from .. import errors
from ..contracts import scale_metrics
from .metrics import PROMETHEUS_TEXT, wants_json
from .replies import send_json


class Health(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


HEALTH_MOVES = {Health.LOADING: {Health.READY, Health.FAILED}, Health.READY: set(), Health.FAILED: set()}
RETRY = [(b"retry-after", b"1")]
BUILTIN_GET = frozenset({"/metrics", "/openapi.json", "/docs"})


class Description:
    """/openapi.json and /docs, built at the first ask: pydantic's schema builder would cost every worker's start
    (a cold start waits for it) more than most calls do. Built again once the code has loaded if some routes turn
    out to stream."""

    def __init__(self, title: str, endpoints, auth: bool):
        self.title = title
        self.endpoints = endpoints  # each with .route
        self.auth = auth
        self._streaming: frozenset = frozenset()
        self._built: tuple[bytes, bytes] | None = None

    @property
    def streaming(self) -> frozenset:
        return self._streaming

    @streaming.setter
    def streaming(self, labels: frozenset) -> None:
        self._streaming, self._built = labels, None

    def pages(self) -> tuple[bytes, bytes]:
        """(/openapi.json, /docs)."""
        if self._built is None:
            from .docs import body_json_schema, docs_page, openapi_document

            document = openapi_document(self.title, [(e.route, body_json_schema(e.route)) for e in self.endpoints],
                                        auth=self.auth, streaming=self._streaming)
            self._built = json.dumps(document).encode(), docs_page(document).encode()
        return self._built


async def answer(app, method: str, path: str, scope, send) -> int:
    """A request no route serves: the endpoint's own paths, OPTIONS, or a 404 or 405 naming what exists."""
    if method == "OPTIONS":
        allow = allowed(app, path)
        if allow is None:
            return await app.refuse(send, errors.NotFound, f"no route {path}; see /docs")
        await send.send({"type": "http.response.start", "status": 204,
                         "headers": [(b"allow", allow.encode()), (b"x-request-id", send.request_id)]})
        await send.send({"type": "http.response.body", "body": b""})
        return 204
    asked = method  # named in the messages below
    if method == "HEAD":
        method = "GET"
    if path == "/ping" and method == "GET":
        if app.health is Health.READY:
            return await send_json(send, 200, b'{"status":"ready"}')
        return await send_json(send, 503, json.dumps({"status": app.health.value}).encode(), RETRY)
    if method == "GET":
        if path == "/metrics":
            if wants_json(scope):
                return await send_json(send, 200, json.dumps(summary(app)).encode())
            return await send_json(send, 200, app.metrics.text(), content_type=PROMETHEUS_TEXT)
        if path == "/openapi.json":
            return await send_json(send, 200, app.description.pages()[0])
        if path == "/docs":
            return await send_json(send, 200, app.description.pages()[1], content_type=b"text/html; charset=utf-8")
    stripped = path.rstrip("/")
    if stripped != path and stripped:
        return await app.refuse(send, errors.NotFound, f"no route {asked} {path}; did you mean {stripped}?")
    allow = allowed(app, path)
    if allow is not None:
        return await app.refuse(send, errors.MethodNotAllowed, f"{path} accepts {allow}, not {asked}",
                                 [(b"allow", allow.encode())])
    return await app.refuse(send, errors.NotFound, f"no route {asked} {path}; see /docs")

def allowed(app, path: str) -> str | None:
    """The Allow header's value for a path (HEAD wherever GET is), or None when nothing serves it."""
    if path == "/ping" or path in BUILTIN_GET:
        verbs = {"GET"}
    else:
        verbs = set(app.verbs_by_path.get(path, ()))
        if not verbs:
            return None
    if "GET" in verbs:
        verbs.add("HEAD")
    verbs.add("OPTIONS")
    return ", ".join(sorted(verbs))


def summary(app) -> dict:
    """/metrics as JSON for the control plane: every worker's counts summed; the limits are per worker."""
    return {
        "pid": os.getpid(),
        "status": app.health.value,
        "uptime_s": round(time.time() - app.started, 3),
        **app.metrics.totals(),
        "max_concurrency": app.pool.size,
        "max_queue": app.pool.max_queue,
        **scale_metrics(app.config.scale_file),
    }
