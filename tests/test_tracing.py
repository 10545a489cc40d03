"""Traces from a real control plane and its endpoint, received by an OTLP/HTTP collector inside the test: the API's
calls continue the caller's traceparent, a job's start-up steps are spans under the call that created it, and the
endpoint's calls reach the same collector under the job's own service name."""

from __future__ import annotations

import pytest
import requests

from conftest import MODELS, route, run
from otlp import Receiver, children

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


@pytest.fixture
def receiver():
    found = Receiver()
    yield found
    found.close()


def test_api_calls_job_steps_and_endpoint_calls_are_spans_in_one_collector(start_control_plane, receiver):
    plane = start_control_plane("--otlp-endpoint", receiver.url, env={"OTEL_BSP_SCHEDULE_DELAY": "200"})

    async def scenario():
        async with plane.client() as client:
            job = await client.jobs.create("echo", model={"source_type": "local", "source_uri": str(MODELS / "echo")},
                                           endpoint={"routes": [route()]})
            await job.wait_for("running", timeout=60)
            return job.id, job.url

    job_id, url = run(scenario())
    headers = {"Authorization": f"Bearer {plane.token}", "traceparent": TRACEPARENT}
    assert requests.get(plane.url + f"/api/jobs/{job_id}", headers=headers, timeout=10).ok
    answer = requests.post(url + "/predict", json={"text": "hi"}, headers={"traceparent": TRACEPARENT}, timeout=10)
    assert answer.json() == {"echo": "hi"}

    def complete(spans):
        names = {(s["service"], s["name"]) for s in spans}
        return {("trainml-control-plane", "start"), ("trainml-control-plane", "GET /api/jobs/{job}"),
                ("trainml-endpoint-echo", "POST /predict")} <= names

    spans = receiver.wait_for(complete, timeout=60)
    plane_spans = [s for s in spans if s["service"] == "trainml-control-plane"]

    # the job's start-up, under the API call that created it, a span per step
    [startup] = [s for s in plane_spans if s["name"] == "job start-up"]
    assert startup["attributes"]["trainml.job_id"] == job_id and not startup["error"]
    [create] = [s for s in plane_spans if s["span_id"] == startup["parent_id"]]
    assert create["name"] == "POST /api/jobs" and create["kind"] == 2
    assert create["attributes"]["http.response.status_code"] == 201
    steps = children(spans, startup)
    assert [s["name"] for s in steps] == ["fetch", "resources", "environment build", "start"]
    assert steps[-1]["attributes"]["trainml.backend"] == "local"
    assert all(startup["start"] <= s["start"] <= s["end"] <= startup["end"] for s in steps)

    # an API call continues its caller's trace, named after its route's template
    [get] = [s for s in plane_spans if s["name"] == "GET /api/jobs/{job}"]
    assert (get["trace_id"], get["parent_id"]) == (CALLER_TRACE, CALLER_SPAN)
    assert get["attributes"]["url.path"] == f"/api/jobs/{job_id}"

    # the endpoint's call, from its own process, to the collector the control plane named
    [call] = [s for s in spans if s["service"] == "trainml-endpoint-echo" and s["name"] == "POST /predict"]
    assert (call["trace_id"], call["parent_id"]) == (CALLER_TRACE, CALLER_SPAN)
    assert call["resource"]["trainml.job_id"] == job_id
    assert [s["name"] for s in children(spans, call)] == ["queue wait", "call"]

