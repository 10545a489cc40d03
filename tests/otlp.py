"""An OTLP/HTTP trace receiver for tests: a small HTTP server on loopback that keeps every span POSTed to
/v1/traces, as JSON (the endpoint runtime's encoder) or protobuf (the OpenTelemetry SDK's exporter)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """`url` is the OTLP endpoint to configure (no /v1/traces); `spans` every span received, as dicts:
    {trace_id, span_id, parent_id, name, kind, start, end, attributes, service, error}."""

    def __init__(self):
        self.spans: list[dict] = []
        self.posts = 0
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                kind = self.headers.get("content-type", "")
                spans = _from_json(json.loads(body)) if "json" in kind else _from_protobuf(body)
                with receiver.changed:
                    receiver.spans.extend(spans)
                    receiver.posts += 1
                    receiver.changed.notify_all()
                self.send_response(200)
                self.send_header("content-type", kind or "application/json")
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, test, timeout: float = 30.0) -> list[dict]:
        """The spans once test(spans) holds; AssertionError naming what came if it does not within timeout."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not test(self.spans):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"spans received: {[(s['name'], s['service']) for s in self.spans]}")
                self.changed.wait(left)
            return list(self.spans)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def children(spans: list[dict], parent: dict) -> list[dict]:
    return sorted((s for s in spans if s["parent_id"] == parent["span_id"] and s["trace_id"] == parent["trace_id"]),
                  key=lambda s: s["start"])


def _value(value: dict):
    for kind in ("stringValue", "boolValue", "doubleValue"):
        if kind in value:
            return value[kind]
    if "intValue" in value:
        return int(value["intValue"])
    return None


def _from_json(body: dict) -> list[dict]:
    out = []
    for resource_spans in body["resourceSpans"]:
        resource = {a["key"]: _value(a["value"]) for a in resource_spans["resource"]["attributes"]}
        for scope in resource_spans["scopeSpans"]:
            for span in scope["spans"]:
                out.append({"trace_id": span["traceId"], "span_id": span["spanId"],
                            "parent_id": span.get("parentSpanId") or None, "name": span["name"],
                            "kind": span["kind"], "start": int(span["startTimeUnixNano"]),
                            "end": int(span["endTimeUnixNano"]),
                            "attributes": {a["key"]: _value(a["value"]) for a in span.get("attributes", [])},
                            "service": resource.get("service.name"), "resource": resource,
                            "error": span.get("status", {}).get("code") == 2})
    return out


def _from_protobuf(body: bytes) -> list[dict]:
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    data = MessageToDict(ExportTraceServiceRequest.FromString(body))
    for resource_spans in data.get("resourceSpans", []):  # protobuf's JSON gives ids as base64, OTLP/JSON as hex
        for scope in resource_spans.get("scopeSpans", []):
            for span in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if span.get(key):
                        import base64

                        span[key] = base64.b64decode(span[key]).hex()
                kind = span.get("kind", 0)
                span["kind"] = {"SPAN_KIND_INTERNAL": 1, "SPAN_KIND_SERVER": 2}.get(kind, kind)
                if span.get("status", {}).get("code") == "STATUS_CODE_ERROR":
                    span["status"]["code"] = 2
    return _from_json(data)
