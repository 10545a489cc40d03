"""Batched routes as a user meets them: real endpoint processes, concurrent clients, ids echoed back."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from endpoint_process import MODELS, param, route, start

IDS = [param("request_id", "int"), param("text", "str")]


def batched(path, function, body=IDS, max_size=8, max_wait_ms=None, **extra):
    spec = route(path, function, body, **extra)
    spec["batch"] = {"max_size": max_size}
    if max_wait_ms is not None:
        spec["batch"]["max_wait_ms"] = max_wait_ms
    return spec


@pytest.fixture
def serve(tmp_path):
    started = []

    def _serve(routes, *args, ready=True):
        endpoint = start("batched", routes, *args, tmp_path=tmp_path)
        started.append(endpoint)
        return endpoint.wait_ready() if ready else endpoint

    yield _serve
    for endpoint in started:
        endpoint.stop()


def burst(ep, path, bodies, workers=32):
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda body: requests.post(ep.url + path, json=body, timeout=30), bodies))


def test_batches_form_under_concurrency_and_each_answer_goes_to_its_request(serve):
    ep = serve([batched("/slow", "slow_echo", [param("request_id", "int"), param("delay", "float")], max_size=8)],
               "--max-concurrency", "1")
    answers = burst(ep, "/slow", [{"request_id": i, "delay": 0.05} for i in range(48)])
    assert [a.status_code for a in answers] == [200] * 48
    assert [a.json()["id"] for a in answers] == list(range(48))
    sizes = [a.json()["batch"] for a in answers]
    assert max(sizes) > 1 and max(sizes) <= 8  # one thread: requests queue while it runs, and go together


def test_a_bad_body_in_a_burst_gets_its_own_422_and_never_joins_a_batch(serve):
    ep = serve([batched("/echo", "echo", max_wait_ms=100)])
    bodies = [{"request_id": i, "text": f"t{i}"} for i in range(16)]
    bodies[5] = {"request_id": "five", "text": "x"}
    bodies[9] = {"request_id": 9}
    answers = burst(ep, "/echo", bodies)
    assert answers[5].status_code == 422 and answers[5].json()["detail"][0]["loc"] == ["body", "request_id"]
    assert answers[9].status_code == 422 and answers[9].json()["detail"][0]["loc"] == ["body", "text"]
    good = [a for i, a in enumerate(answers) if i not in (5, 9)]
    assert [a.status_code for a in good] == [200] * 14
    assert [(a.json()["id"], a.json()["text"]) for a in good] == [(i, f"t{i}") for i in range(16) if i not in (5, 9)]
    assert max(a.json()["batch"] for a in good) > 1


def test_positional_routes_get_the_lists_in_template_order(serve):
    ep = serve([batched("/ordered", "ordered", positional=True, max_wait_ms=50)])
    answers = burst(ep, "/ordered", [{"text": f"t{i}", "request_id": i} for i in range(8)])
    assert [a.json() for a in answers] == [f"{i}:t{i}" for i in range(8)]


def test_async_batch_functions(serve):
    ep = serve([batched("/async", "async_echo", [param("request_id", "int")], max_wait_ms=100)])
    answers = burst(ep, "/async", [{"request_id": i} for i in range(12)])
    assert [a.json()["id"] for a in answers] == list(range(12))
    assert max(a.json()["batch"] for a in answers) > 1


def test_numpy_rows_answer_one_request_each(serve):
    pytest.importorskip("numpy")
    ep = serve([batched("/rows", "numpy_rows", [param("x", "float")], max_wait_ms=100)])
    answers = burst(ep, "/rows", [{"x": i} for i in range(6)])
    assert [a.json() for a in answers] == [[float(i), 2.0 * i] for i in range(6)]


@pytest.mark.parametrize("function, message", [
    ("short", "route POST /p: short() returned 3 results for a batch of 4; a batched function returns one result "
              "per request, in order"),
    ("not_a_list", "route POST /p: not_a_list() returned a dict for a batch of 4; a batched function returns a list, "
                   "tuple or array with one result per request, in order"),
    ("fails", "cannot handle a batch of 4"),
], ids=["wrong-length", "not-a-sequence", "exception"])
def test_a_failed_batch_answers_500_to_each_of_its_requests(serve, function, message):
    # max_wait_ms 1000 and four requests at once: one batch of exactly 4 (it goes as soon as it is full).
    ep = serve([batched("/p", function, [param("request_id", "int")], max_size=4, max_wait_ms=1000)])
    answers = burst(ep, "/p", [{"request_id": i} for i in range(4)], workers=4)
    assert [a.status_code for a in answers] == [500] * 4
    for answer in answers:
        body = answer.json()
        assert body["error"] == "model_error" and body["message"] == message
        assert "Traceback" not in answer.text
    assert message.split(";")[0] in ep.log()


def test_max_wait_ms_holds_a_lone_request_to_fill_its_batch(serve):
    ep = serve([batched("/wait", "echo", max_size=4, max_wait_ms=400), batched("/now", "echo", max_size=4)])
    began = time.monotonic()
    alone = ep.post("/wait", {"request_id": 1, "text": "a"})
    assert time.monotonic() - began >= 0.39  # waited for company that never came
    assert alone.json()["batch"] == 1
    # Two requests 50 ms apart, inside the window: one batch.
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(ep.post, "/wait", {"request_id": 2, "text": "b"})
        time.sleep(0.05)
        second = pool.submit(ep.post, "/wait", {"request_id": 3, "text": "c"})
        assert (first.result().json()["batch"], second.result().json()["batch"]) == (2, 2)
    # Without max_wait_ms a lone request goes at once.
    began = time.monotonic()
    assert ep.post("/now", {"request_id": 4, "text": "d"}).json()["batch"] == 1
    assert time.monotonic() - began < 0.39


def test_max_queue_counts_waiting_requests_and_max_concurrency_counts_batches(serve):
    ep = serve([batched("/slow", "slow_echo", [param("request_id", "int"), param("delay", "float")], max_size=4)],
               "--max-concurrency", "1", "--max-queue", "3")
    with ThreadPoolExecutor(8) as pool:
        running = pool.submit(ep.post, "/slow", {"request_id": 0, "delay": 1.5})
        _until(lambda: ep.get("/metrics?format=json").json()["running"] == 1)
        queued = [pool.submit(ep.post, "/slow", {"request_id": i, "delay": 0.1}) for i in (1, 2, 3)]
        _until(lambda: ep.get("/metrics?format=json").json()["waiting"] == 3)
        refused = ep.post("/slow", {"request_id": 4, "delay": 0.1})
        assert refused.status_code == 503 and "max_queue 3" in refused.json()["message"]
        assert running.result().json() == {"id": 0, "batch": 1}
        assert [q.result().json() for q in queued] == [{"id": i, "batch": 3} for i in (1, 2, 3)]


def test_the_timeout_applies_to_the_batchs_call(serve):
    ep = serve([batched("/slow", "slow_echo", [param("request_id", "int"), param("delay", "float")], max_size=4,
                        max_wait_ms=1000)], "--timeout", "0.5")
    answers = burst(ep, "/slow", [{"request_id": i, "delay": 2.0} for i in range(4)], workers=4)
    assert [a.status_code for a in answers] == [504] * 4


def test_batch_sizes_are_in_the_prometheus_scrape_and_openapi_shows_one_request(serve):
    ep = serve([batched("/echo", "echo", max_size=4, max_wait_ms=1000)])
    answers = burst(ep, "/echo", [{"request_id": i, "text": "x"} for i in range(8)], 8)
    assert [a.status_code for a in answers] == [200] * 8
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(ep.get("/metrics").text) for s in family.samples}
    assert samples[("trainml_batch_size_sum", (("route", "POST /echo"),))] == 8
    assert samples[("trainml_batch_size_count", (("route", "POST /echo"),))] == 2
    assert samples[("trainml_batch_size_bucket", (("le", "4.0"), ("route", "POST /echo")))] == 2
    document = ep.get("/openapi.json").json()
    ref = document["paths"]["/echo"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert schema["properties"]["request_id"]["type"] == "integer"  # one request's body, not lists
    description = document["paths"]["/echo"]["post"]["description"]
    assert description.startswith("Batched: up to 4 requests are answered by one call")


def test_a_function_that_cannot_take_the_columns_is_refused_at_start(serve):
    ep = serve([batched("/p", "wrong_signature")], ready=False)
    assert ep.wait_exit() == 3
    assert "cannot take the body params (request_id, text) as keyword arguments, one list each (the route is " \
           "batched)" in ep.log()


def _until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def test_a_job_serves_a_batched_route_through_the_control_plane(control_plane):
    from conftest import run

    spec = batched("/echo", "echo", max_size=8, max_wait_ms=200)

    async def scenario():
        async with control_plane.client() as client:
            return await client.jobs.create("batched",
                                            model={"source_type": "local", "source_uri": str(MODELS / "batched")},
                                            endpoint={"routes": [spec]}, wait=True)

    job = run(scenario())
    assert control_plane.api("GET", f"/api/jobs/{job.id}").json()["endpoint"]["routes"][0]["batch"] == {
        "max_size": 8, "max_wait_ms": 200.0}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: requests.post(job.url + "/echo", json={"request_id": i, "text": "x"},
                                                        timeout=30), range(8)))
    assert [a.json()["id"] for a in answers] == list(range(8))
    assert max(a.json()["batch"] for a in answers) > 1
    page = requests.Session()
    assert "batched, up to 8 per call, waiting up to 200 ms" in _job_page(control_plane, job.id, page)


def _job_page(control_plane, job_id, session) -> str:
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "TRAINML_API_URL": control_plane.url, "TRAINML_API_TOKEN": control_plane.token,
           "TRAINML_HOME": str(control_plane.home)}
    link = json.loads(subprocess.run([sys.executable, "-m", "trainml_cli", "server", "dashboard", "--format", "json"],
                                     env=env, capture_output=True, text=True, timeout=30, check=True).stdout)["url"]
    session.get(link, timeout=10)
    return session.get(f"{control_plane.url}/dashboard/jobs/{job_id}", timeout=10).text
