"""Metrics as operators scrape them: Prometheus text summed over worker processes, service discovery, JSON.

Parsed with prometheus_client's own parser, against real endpoint processes and a real control plane.
"""

from __future__ import annotations

import glob
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import MODELS, route as cp_route, run, wait_until
from endpoint_process import param, route, start
from trainml_cli.contracts import flatten_totals, sum_totals


@pytest.fixture
def serve(tmp_path):
    started = []

    def _serve(model, routes, *args):
        endpoint = start(model, routes, *args, tmp_path=tmp_path)
        started.append(endpoint)
        return endpoint.wait_ready()

    yield _serve
    for endpoint in started:
        endpoint.stop()


def samples(text: str) -> dict:
    """{(sample name, frozenset of labels): value} for every sample in a scrape."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def _pids_answering(ep, count):
    # With two workers on one socket, which worker accepts a connection is up to the kernel: keep opening
    # connections, several at once, until each worker has answered (the second may still be loading).
    pids = set()
    with ThreadPoolExecutor(8) as pool:
        for _ in range(50):
            answers = pool.map(lambda _: requests.post(ep.url + "/pid", json={}, timeout=10), range(16))
            pids.update(a.json() for a in answers if a.status_code == 200)
            if len(pids) == count:
                break
            time.sleep(0.1)
    return pids


def test_prometheus_counts_every_request_across_two_workers(serve):
    ep = serve("types", [route("/sync", "shout", [param("text", "str")]), route("/pid", "pid")], "--workers", "2")
    assert len(_pids_answering(ep, 2)) == 2, "both workers should have answered"

    def call(i):
        body = {"text": f"t{i}"} if i % 10 else {"text": i}  # every tenth is a bad body: 422
        return requests.post(ep.url + "/sync", json=body, timeout=10).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(call, range(200)))
    assert statuses.count(200) == 180 and statuses.count(422) == 20
    ep.get("/nowhere")

    def settled():  # the other worker's counts arrive within its flush interval (0.5 s)
        found = samples(ep.get("/metrics").text)
        return found if value(found, "trainml_requests_total", route="POST /sync", status="200") == 180 else None

    found = wait_until(settled, timeout=10, message="both workers' counts in one scrape")
    assert value(found, "trainml_requests_total", route="POST /sync", status="422") == 20
    assert value(found, "trainml_requests_total", route="unmatched", status="404") == 1
    assert value(found, "trainml_rejected_total", reason="invalid_request") == 20
    assert value(found, "trainml_request_duration_seconds_count", route="POST /sync") == 200
    assert value(found, "trainml_request_duration_seconds_bucket", route="POST /sync", le="+Inf") == 200
    assert 0 < value(found, "trainml_request_duration_seconds_sum", route="POST /sync") < 200 * 10
    assert value(found, "trainml_requests_in_flight") == 0 and value(found, "trainml_queue_depth") == 0
    # Each worker flushes all its counts at once: by now the /pid calls both answered are in too.
    pid_calls = int(value(found, "trainml_requests_total", route="POST /pid", status="200"))
    assert pid_calls >= 2

    # The control plane's view, as JSON: the same totals.
    summary = ep.get("/metrics", headers={"Accept": "application/json"}).json()
    assert summary["responses"]["200"] >= 180 + pid_calls and summary["responses"]["422"] == 20
    assert summary["errors"] == 0 and summary["status"] == "ready"
    assert ep.get("/metrics?format=json").json()["responses"]["422"] == 20

    # What a Ray replica publishes (flat fields) sums back to the same shape: two replicas count twice.
    twice = sum_totals([flatten_totals(summary), flatten_totals(summary)])
    assert twice["responses"] == {k: 2 * v for k, v in summary["responses"].items()}
    assert twice["latency_buckets"] == [2 * n for n in summary["latency_buckets"]]
    assert twice["requests"] == 2 * summary["requests"] and "status" not in twice


def test_in_flight_queue_depth_and_overload_show_in_the_scrape(serve, tmp_path):
    gate = tmp_path / "gate"
    ep = serve("blocking", [route("/wait", "wait", [param("gate", "str")])], "--max-concurrency", "1",
               "--max-queue", "1")
    with ThreadPoolExecutor(2) as pool:
        admitted = [pool.submit(requests.post, ep.url + "/wait", json={"gate": str(gate)}, timeout=20)
                    for _ in range(2)]
        # Admitted first, then taken by the thread: wait for the moment both are in and one runs.
        wait_until(lambda: (f := samples(ep.get("/metrics").text)) and value(f, "trainml_requests_in_flight") == 2
                   and value(f, "trainml_queue_depth") == 1, message="2 in flight, 1 of them waiting")
        assert ep.post("/wait", {"gate": str(gate)}).status_code == 503
        gate.touch()
        assert [f.result().status_code for f in admitted] == [200, 200]
    found = samples(ep.get("/metrics").text)
    assert value(found, "trainml_rejected_total", reason="overloaded") == 1
    assert value(found, "trainml_requests_total", route="POST /wait", status="503") == 1
    assert ep.get("/metrics", headers={"Accept": "application/json"}).json()["rejected"] == 1


def test_service_discovery_lists_running_endpoints_and_the_control_plane(control_plane):
    async def scenario():
        async with control_plane.client() as client:
            job = await client.jobs.create("two-workers",
                                           model={"source_type": "local", "source_uri": str(MODELS / "echo")},
                                           endpoint={"routes": [cp_route()]}, resources={"cpu_count": 2}, wait=True)
            for _ in range(20):
                await job.call("/predict", {"text": "m"})
            return job

    job = run(scenario())
    groups = control_plane.api("GET", "/api/prometheus/targets").json()
    host_port = control_plane.url.split("://")[1]
    assert groups[0] == {"targets": [host_port],
                         "labels": {"__metrics_path__": "/metrics", "__scheme__": "http", "component": "control-plane"}}
    endpoint_url = job.url
    [endpoint] = groups[1:]
    assert endpoint["targets"] == [endpoint_url.split("://")[1]]
    assert endpoint["labels"] == {"__metrics_path__": "/metrics", "__scheme__": "http", "component": "endpoint",
                                  "job_id": job.id, "job_name": "two-workers"}

    # Every target answers Prometheus text; the control plane's needs no token (scrapes must not carry it).
    for group in groups:
        scrape = requests.get(f"http://{group['targets'][0]}/metrics", timeout=10)
        assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
        list(text_string_to_metric_families(scrape.text))
    own = samples(requests.get(control_plane.url + "/metrics", timeout=10).text)
    assert value(own, "trainml_jobs", status="running") == 1

    # The control plane's counters are right with two workers: all 20 calls, whichever worker answered.
    counted = wait_until(lambda: (m := control_plane.api("GET", f"/api/jobs/{job.id}/metrics").json()["metrics"])
                         and m["responses"].get("200") == 20 and m, message="20 requests counted")
    # No call met a worker still loading (503 "loading"): a group's workers accept only once loaded.
    assert counted["responses"] == {"200": 20}, counted["responses"]
    assert counted["requests"] == 20 and counted["latency_ms_sum"] > 0

    control_plane.api("POST", f"/api/jobs/{job.id}/stop")
    wait_until(lambda: control_plane.api("GET", f"/api/jobs/{job.id}").json()["status"] == "stopped")
    assert len(control_plane.api("GET", "/api/prometheus/targets").json()) == 1


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_metrics_directory_goes_when_the_endpoint_stops(serve, tmp_path, workers):
    ep = serve("types", [route("/sync", "shout", [param("text", "str")])], "--workers", workers)
    pattern = os.path.join(tempfile.gettempdir(), f"trainml-metrics-{ep.proc.pid}-*")
    assert len(glob.glob(pattern)) == 1
    ep.stop()
    assert glob.glob(pattern) == []
    # One left by a process that was killed outright is removed by the next endpoint to start.
    left = tempfile.mkdtemp(prefix="trainml-metrics-999999999-")
    serve("types", [route("/sync", "shout", [param("text", "str")])])
    assert not os.path.exists(left)
