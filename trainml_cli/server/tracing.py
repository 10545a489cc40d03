"""The control plane's traces: each API call a span, and a job's steps (fetch, environment build, start) spans
under the call that started them, sent to an OTLP/HTTP collector with the OpenTelemetry SDK.

On when `--otlp-endpoint URL` is given (or OTEL_EXPORTER_OTLP_ENDPOINT is set where the control plane starts);
the SDK and its exporter come with the `otel` extra (`pip install trainml_cli[otel]`). Off, nothing of
OpenTelemetry is imported and every hook is a shared no-op: `Tracing.step()` hands back a null context.

The endpoints trace too: the control plane passes the collector to each job's environment (OTEL_EXPORTER_OTLP_ENDPOINT,
OTEL_SERVICE_NAME), where the runtime sends its spans itself (runtime/tracing.py says why without the SDK).
A caller's W3C `traceparent` is continued by the API's spans as by the endpoint's.
"""

from __future__ import annotations

import contextlib
import logging

from ..errors import UsageError

log = logging.getLogger("trainml.server")

SERVICE = "trainml-control-plane"
_PROPAGATED = (b"traceparent", b"tracestate")  # W3C trace context: what a caller's span hands on
_API = ("/api/",)  # the paths whose calls are spans: the API (the dashboard's pages and assets are not)


class Tracing:
    """Off: every hook does nothing. `Tracing.start(url)` returns the one that traces."""

    endpoint: str | None = None
    middleware = None  # an ASGI middleware class taking (app, tracing=...), when on

    def step(self, name: str, **attributes):
        """A span around a step of the current task, a child of the task's current span."""
        return contextlib.nullcontext()

    def begin(self, name: str, *, current: bool = False, **attributes) -> Opened:
        """A span ended later, maybe by another task (`Opened.end`); `current`: the rest of this task's spans
        are its children."""
        return NOTHING_OPEN

    def close(self) -> None:
        pass

    def endpoint_env(self, job_name: str) -> dict[str, str]:
        """What a job's endpoint needs in its environment to send its spans to the same collector."""
        if self.endpoint is None:
            return {}
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint, "OTEL_SERVICE_NAME": f"trainml-endpoint-{job_name}"}

    @staticmethod
    def start(endpoint: str | None) -> Tracing:
        if not endpoint:
            return OFF
        return _Traced(endpoint)


class Opened:
    """Spans begun and not yet ended; `end` ends them once (the last begun first), whoever calls it first."""

    def __init__(self, spans=()):
        self.spans = list(spans)

    def add(self, opened: Opened) -> None:
        self.spans += opened.spans

    def end(self, failure: str | None = None) -> None:
        spans, self.spans = self.spans, []
        if failure is not None and spans:
            from opentelemetry.trace import Status, StatusCode

            for span in spans:
                span.set_status(Status(StatusCode.ERROR, failure))
        for span in reversed(spans):
            span.end()


OFF = Tracing()
NOTHING_OPEN = Opened()


class _Traced(Tracing):
    def __init__(self, endpoint: str):
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            raise UsageError("--otlp-endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT) needs the OpenTelemetry SDK and its "
                             "OTLP exporter: pip install 'trainml_cli[otel]'") from None
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.endpoint = endpoint.rstrip("/")
        # A provider of our own, not the global one: another library in this process keeps its own settings.
        self.provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=self.endpoint + "/v1/traces")))
        self.tracer = self.provider.get_tracer("trainml_cli.server")
        self.propagator = TraceContextTextMapPropagator()
        self.middleware = _Middleware
        log.info("tracing to %s", self.endpoint)

    def step(self, name: str, **attributes):
        return self.tracer.start_as_current_span(name, attributes=attributes)

    def begin(self, name: str, *, current: bool = False, **attributes) -> Opened:
        from opentelemetry import context, trace

        span = self.tracer.start_span(name, attributes=attributes)
        if current:  # never detached: the task ends with its context
            context.attach(trace.set_span_in_context(span))
        return Opened([span])

    def close(self) -> None:
        self.provider.shutdown()  # sends what is pending


class _Middleware:
    """ASGI: an API call is a SERVER span named after its route template, continuing the caller's traceparent.
    Tasks the call starts (a job's driver) copy its context, so their spans are its children."""

    def __init__(self, app, tracing: _Traced):
        self.app = app
        self.tracing = tracing

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(_API):
            return await self.app(scope, receive, send)
        from opentelemetry.trace import SpanKind, Status, StatusCode

        carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
                   if name in _PROPAGATED}
        parent = self.tracing.propagator.extract(carrier)
        method = scope["method"]
        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        with self.tracing.tracer.start_as_current_span(f"{method} {scope['path']}", context=parent,
                                                       kind=SpanKind.SERVER) as span:
            span.set_attribute("http.request.method", method)
            span.set_attribute("url.path", scope["path"])
            try:
                await self.app(scope, receive, send_status)
            finally:
                route = scope.get("route")
                template = getattr(route, "path", None)
                if template:  # /api/jobs/{job}, not one name per job
                    span.update_name(f"{method} {template}")
                    span.set_attribute("http.route", template)
                span.set_attribute("http.response.status_code", status[0])
                if status[0] >= 500:
                    span.set_status(Status(StatusCode.ERROR))
