"""What an endpoint tells about its calls beyond the answer: metrics per route and status class, queue waits, and
traces sent to an OTLP/HTTP collector (an in-test receiver on loopback). In process."""

from __future__ import annotations

import asyncio

import pytest

from otlp import Receiver, children

from .conftest import param, route
from .test_endpoint_builtins import IDS, batched, samples

pytestmark = pytest.mark.anyio

PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def receiver(monkeypatch):
    found = Receiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", found.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "echo-endpoint")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    yield found
    found.close()


TEXT = [param("text", "str")]


async def test_metrics_count_answers_by_route_and_status_class_and_queue_waits(endpoint):
    ep = await endpoint("raises", [route("/ok", "ok", TEXT), route("/boom", "fail", TEXT)])
    for path in ("/ok", "/ok", "/boom"):
        await ep.post(path, json={"text": "a"})
    await ep.post("/ok", json={"unknown": 1})
    found = samples((await ep.get("/metrics")).text)
    assert found[("trainml_responses_total", (("class", "2xx"), ("route", "POST /ok")))] == 2
    assert found[("trainml_responses_total", (("class", "4xx"), ("route", "POST /ok")))] == 1
    assert found[("trainml_responses_total", (("class", "5xx"), ("route", "POST /boom")))] == 1
    # a call that reached a thread waited in the queue, a refused one (422) did not
    assert found[("trainml_queue_wait_seconds_count", (("route", "POST /ok"),))] == 2
    assert found[("trainml_queue_wait_seconds_count", (("route", "POST /boom"),))] == 1
    summary = (await ep.get("/metrics", params={"format": "json"})).json()
    assert summary["route_requests"] == {"POST /ok": 3, "POST /boom": 1}
    assert summary["route_errors"] == {"POST /boom": 1}


async def test_a_batched_call_counts_its_queue_wait_per_request(endpoint):
    ep = await endpoint("batched", [batched("/echo", "echo", IDS, max_size=4, max_wait_ms=1000)])
    await asyncio.gather(*(ep.post("/echo", json={"request_id": i, "text": "t"}) for i in range(4)))
    found = samples((await ep.get("/metrics")).text)
    assert found[("trainml_queue_wait_seconds_count", (("route", "POST /echo"),))] == 4


async def test_no_collector_configured_means_no_tracer(endpoint, monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    ep = await endpoint("types", [route("/echo", "echo", TEXT)])
    assert ep.app.tracer is None
    assert (await ep.post("/echo", json={"text": "a"})).status_code == 200


async def test_a_call_is_a_span_continuing_the_callers_traceparent_with_queue_and_call_children(endpoint, receiver):
    ep = await endpoint("types", [route("/echo", "echo", TEXT)])
    answer = await ep.post("/echo", json={"text": "a"},
                           headers={"traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01", "x-request-id": "r-1"})
    assert answer.status_code == 200
    spans = receiver.wait_for(lambda spans: len(spans) >= 3)
    [root] = [s for s in spans if s["parent_id"] == PARENT_SPAN]
    assert root["trace_id"] == PARENT_TRACE and root["name"] == "POST /echo" and root["kind"] == 2
    assert root["service"] == "echo-endpoint"
    assert root["attributes"]["http.response.status_code"] == 200
    assert root["attributes"]["trainml.request_id"] == "r-1"
    queue, call = children(spans, root)
    assert (queue["name"], call["name"]) == ("queue wait", "call")
    assert call["attributes"]["code.function"] == "echo"
    assert root["start"] <= queue["start"] <= queue["end"] <= call["start"] <= call["end"] <= root["end"]


async def test_a_batched_call_has_a_batch_formation_span(endpoint, receiver):
    ep = await endpoint("batched", [batched("/echo", "echo", IDS, max_size=2, max_wait_ms=1000)])
    await asyncio.gather(*(ep.post("/echo", json={"request_id": i, "text": "t"}) for i in range(2)))
    spans = receiver.wait_for(lambda spans: len(spans) >= 8)
    roots = [s for s in spans if s["parent_id"] is None]
    assert len(roots) == 2 and len({r["trace_id"] for r in roots}) == 2  # no traceparent: a new trace each
    for root in roots:
        assert [s["name"] for s in children(spans, root)] == ["queue wait", "batch formation", "call"]


async def test_an_error_answer_marks_its_span_and_a_refusal_has_no_children(endpoint, receiver):
    ep = await endpoint("raises", [route("/boom", "fail", TEXT)])
    await ep.post("/boom", json={"text": "a"})
    await ep.post("/boom", json={"unknown": 1})
    spans = receiver.wait_for(lambda spans: sum(s["parent_id"] is None for s in spans) >= 2)
    failed = next(s for s in spans if s["attributes"].get("http.response.status_code") == 500)
    refused = next(s for s in spans if s["attributes"].get("http.response.status_code") == 422)
    assert failed["error"] and not refused["error"]
    assert [s["name"] for s in children(spans, failed)] == ["queue wait", "call"]
    assert children(spans, refused) == []


async def test_a_trace_the_caller_does_not_sample_sends_nothing(endpoint, receiver):
    ep = await endpoint("types", [route("/echo", "echo", TEXT)])
    await ep.post("/echo", json={"text": "a"}, headers={"traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-00"})
    await ep.post("/echo", json={"text": "b"})  # sampled: its spans come after the first call's would have
    spans = receiver.wait_for(lambda spans: len(spans) >= 3)
    assert all(s["trace_id"] != PARENT_TRACE for s in spans)
