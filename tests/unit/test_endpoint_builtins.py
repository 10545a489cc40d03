"""What every endpoint serves beside the user's routes (/ping, /openapi.json, /docs, /metrics, HEAD and OPTIONS),
its key (runtime/auth.py), loading and load failures, and batched routes: in process."""

from __future__ import annotations

import asyncio
import os

import pytest
from prometheus_client.parser import text_string_to_metric_families

from trainml_cli.errors import UsageError

from .conftest import param, route

pytestmark = pytest.mark.anyio

KEY = "k" * 8 + "-endpoint-key-0123"
IDS = (param("request_id", "int"), param("text", "str"))


def batched(path, function, body=IDS, max_size=8, max_wait_ms=None, **extra):
    spec = route(path, function, body, **extra)
    spec["batch"] = {"max_size": max_size}
    if max_wait_ms is not None:
        spec["batch"]["max_wait_ms"] = max_wait_ms
    return spec


@pytest.fixture
async def echo(endpoint):
    return await endpoint("types", [route("/echo", "echo", [param("text", "str"), param("n", "int", optional=True,
                                                                                        default_value="1")]),
                                    route("/items", "get_item", [param("item_id", "int")], verb="GET")])


def samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_ping_is_200_ready_once_loaded(echo):
    ping = await echo.get("/ping")
    assert (ping.status_code, ping.json()) == (200, {"status": "ready"})
    assert (await echo.head("/ping")).status_code == 200


async def test_openapi_describes_each_route_with_its_types(echo):
    document = (await echo.get("/openapi.json")).json()
    assert document["info"]["title"] == "types endpoint"
    post = document["paths"]["/echo"]["post"]
    ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert schema["properties"]["text"]["type"] == "string" and schema["properties"]["n"]["default"] == 1
    assert schema["required"] == ["text"]
    [query] = document["paths"]["/items"]["get"]["parameters"]
    assert (query["name"], query["in"], query["required"]) == ("item_id", "query", True)
    assert "401" not in post["responses"] and {"413", "415", "422", "503", "504"} <= set(post["responses"])


async def test_docs_is_an_html_page_naming_every_route(echo):
    docs = await echo.get("/docs")
    assert docs.status_code == 200 and docs.headers["content-type"] == "text/html; charset=utf-8"
    assert "POST /echo" in docs.text and "GET /items" in docs.text


async def test_options_lists_the_verbs_of_a_path_and_404s_an_unknown_one(echo):
    options = await echo.options("/items")
    assert options.status_code == 204 and options.headers["allow"] == "GET, HEAD, OPTIONS"
    assert (await echo.options("/ping")).headers["allow"] == "GET, HEAD, OPTIONS"
    assert (await echo.options("/echo")).headers["allow"] == "OPTIONS, POST"
    assert (await echo.options("/nowhere")).status_code == 404


async def test_metrics_count_each_route_and_status_in_prometheus_text(echo):
    for body in ({"text": "a"}, {"text": "b"}, {"text": 1}):
        await echo.post("/echo", json=body)
    await echo.get("/nowhere")
    await echo.get("/ping")  # health checks and scrapes are not traffic
    scrape = await echo.get("/metrics")
    assert scrape.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    found = samples(scrape.text)
    assert found[("trainml_requests_total", (("route", "POST /echo"), ("status", "200")))] == 2
    assert found[("trainml_requests_total", (("route", "POST /echo"), ("status", "422")))] == 1
    assert found[("trainml_requests_total", (("route", "unmatched"), ("status", "404")))] == 1
    assert found[("trainml_rejected_total", (("reason", "invalid_request"),))] == 1
    assert found[("trainml_request_duration_seconds_count", (("route", "POST /echo"),))] == 3
    assert not any(labels and dict(labels).get("route") == "GET /ping" for _, labels in found)


@pytest.mark.parametrize("how", [{"params": {"format": "json"}}, {"headers": {"Accept": "application/json"}}],
                         ids=["query", "accept"])
async def test_metrics_as_json_sum_what_the_control_plane_charts(echo, how):
    await echo.post("/echo", json={"text": "a"})
    await echo.post("/echo", content=b"x", headers={"content-type": "text/plain"})
    summary = (await echo.get("/metrics", **how)).json()
    assert summary["status"] == "ready" and summary["pid"] == os.getpid()
    assert summary["requests"] == 2 and summary["responses"] == {"200": 1, "415": 1}
    assert summary["rejected_by_reason"] == {"unsupported_media_type": 1}
    assert summary["errors"] == 0 and summary["max_concurrency"] == echo.app.pool.size
    assert sum(summary["latency_buckets"]) == 2


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "key"
    path.write_text(KEY + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
async def keyed(endpoint, key_file):
    return await endpoint("types", [route("/echo", "echo", [param("text", "str")])], key_file=str(key_file))


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key-0123456789", f"Basic {KEY}", KEY, "Bearer"],
                         ids=["none", "wrong", "basic", "no-scheme", "empty"])
async def test_an_endpoint_with_a_key_refuses_calls_without_it(keyed, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    answer = await keyed.post("/echo", json={"text": "x"}, headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Bearer realm="trainml endpoint"'
    assert answer.json()["error"] == "unauthorized"
    assert "Authorization: Bearer KEY" in answer.json()["message"] and KEY not in answer.text


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_the_key_opens_every_route_whatever_the_schemes_case(keyed, scheme):
    answer = await keyed.post("/echo", json={"text": "x"}, headers={"Authorization": f"{scheme} {KEY}"})
    assert answer.status_code == 200 and answer.json() == {"text": ["x", "str"]}


@pytest.mark.parametrize("path, status", [("/ping", 200), ("/metrics", 200), ("/docs", 401), ("/openapi.json", 401),
                                          ("/nowhere", 401)])
async def test_only_health_and_metrics_are_open_without_the_key(keyed, path, status):
    assert (await keyed.get(path)).status_code == status


async def test_a_keyed_endpoints_openapi_lists_the_401_and_never_the_key(keyed):
    document = (await keyed.get("/openapi.json", headers={"Authorization": f"Bearer {KEY}"})).json()
    assert "Authorization: Bearer KEY" in document["paths"]["/echo"]["post"]["responses"]["401"]["description"]
    assert KEY not in str(document)


async def test_a_rotated_key_replaces_the_old_one_within_seconds(keyed, key_file):
    new = "n" * 20
    partial = key_file.with_name("key.partial")
    partial.write_text(new)
    os.replace(partial, key_file)  # as the control plane rotates it
    for _ in range(500):
        answer = await keyed.post("/echo", json={"text": "x"}, headers={"Authorization": f"Bearer {new}"})
        if answer.status_code == 200:
            break
        await asyncio.sleep(0.01)
    answer = await keyed.post("/echo", json={"text": "x"}, headers={"Authorization": f"Bearer {new}"})
    assert answer.status_code == 200
    answer = await keyed.post("/echo", json={"text": "x"}, headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 401


@pytest.mark.parametrize("content, message", [(None, "No such file or directory"), ("short", "at least 16 characters")],
                         ids=["missing", "too-short"])
async def test_a_key_file_missing_or_too_short_is_refused_naming_it(endpoint, tmp_path, content, message):
    path = tmp_path / "key"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UsageError) as info:
        await endpoint("types", [route("/echo", "echo", [param("text", "str")])], key_file=str(path))
    assert str(info.value).startswith(f"--key-file {path}: ") and message in str(info.value)


async def test_calls_wait_for_a_slow_load_with_503_loading(endpoint, tmp_path, monkeypatch):
    gate = tmp_path / "loaded"
    monkeypatch.setenv("TEST_LOAD_GATE", str(gate))
    ep = await endpoint("slow_load", [route("/predict", "predict", [param("text", "str")])], wait=False)
    ping = await ep.get("/ping")
    assert (ping.status_code, ping.json(), ping.headers["retry-after"]) == (503, {"status": "loading"}, "1")
    early = await ep.post("/predict", json={"text": "x"})
    assert early.status_code == 503 and early.json()["error"] == "loading"
    gate.touch()
    assert (await ep.wait_loaded()).status_code == 200
    assert (await ep.post("/predict", json={"text": "x"})).json() == {"loaded": "x"}


@pytest.mark.parametrize("model, routes, message", [
    ("import_error", [route("/predict", "predict", [param("text", "str")])],
     "route POST /predict: importing predict.py failed:"),
    ("no_function", [route("/predict", "predict", [param("text", "str")])],
     "route POST /predict: predict.py has no function 'predict' (it defines: predict_image)"),
    ("types", [route("/p", "ordered", [param("x", "str")])],
     "route POST /p: ordered(first, second, third=None) cannot take the body params (x) as keyword arguments"),
    ("batched", [batched("/p", "wrong_signature")],
     "cannot take the body params (request_id, text) as keyword arguments, one list each (the route is batched)"),
    ("types", [route("/p", "echo", file="missing")], "route 1 (POST /p): file: 'missing' not found in"),
], ids=["import-error", "no-function", "signature", "batched-signature", "no-file"])
async def test_a_load_failure_is_reported_by_ping_and_names_the_route(endpoint, model, routes, message):
    ep = await endpoint(model, routes)
    ping = await ep.get("/ping")
    assert (ping.status_code, ping.json()) == (503, {"status": "failed"})
    assert message in ep.app.load_error
    call = await ep.post(routes[0]["path"], json={})
    assert call.status_code == 503 and call.json()["error"] == "failed"


async def test_an_import_failure_shows_the_users_traceback_only(endpoint):
    ep = await endpoint("import_error", [route("/predict", "predict", [param("text", "str")])])
    assert "import helper_that_does_not_exist" in ep.app.load_error
    assert "ModuleNotFoundError" in ep.app.load_error and "importlib" not in ep.app.load_error


async def burst(ep, path, bodies):
    return await asyncio.gather(*(ep.post(path, json=body) for body in bodies))


async def test_concurrent_calls_share_a_batch_and_each_gets_its_own_answer(endpoint):
    ep = await endpoint("batched", [batched("/echo", "echo", max_size=4, max_wait_ms=1000)])
    answers = await burst(ep, "/echo", [{"request_id": i, "text": f"t{i}"} for i in range(8)])
    assert [a.status_code for a in answers] == [200] * 8
    assert [(a.json()["id"], a.json()["text"]) for a in answers] == [(i, f"t{i}") for i in range(8)]
    assert [a.json()["batch"] for a in answers] == [4] * 8
    found = samples((await ep.get("/metrics")).text)
    assert found[("trainml_batch_size_count", (("route", "POST /echo"),))] == 2
    assert found[("trainml_batch_size_sum", (("route", "POST /echo"),))] == 8


async def test_a_bad_body_gets_its_own_422_and_never_joins_the_batch(endpoint):
    ep = await endpoint("batched", [batched("/echo", "echo", max_size=3, max_wait_ms=1000)])
    answers = await burst(ep, "/echo", [{"request_id": 0, "text": "a"}, {"request_id": "one", "text": "b"},
                                        {"request_id": 2, "text": "c"}, {"request_id": 3, "text": "d"}])
    assert answers[1].status_code == 422 and answers[1].json()["detail"][0]["loc"] == ["body", "request_id"]
    assert [a.json()["id"] for i, a in enumerate(answers) if i != 1] == [0, 2, 3]
    assert {a.json()["batch"] for i, a in enumerate(answers) if i != 1} == {3}


async def test_positional_and_async_batched_functions(endpoint):
    ep = await endpoint("batched", [batched("/ordered", "ordered", positional=True, max_size=3, max_wait_ms=1000),
                                    batched("/async", "async_echo", [param("request_id", "int")], max_size=3,
                                            max_wait_ms=1000)])
    ordered = await burst(ep, "/ordered", [{"text": f"t{i}", "request_id": i} for i in range(3)])
    assert [a.json() for a in ordered] == [f"{i}:t{i}" for i in range(3)]
    together = await burst(ep, "/async", [{"request_id": i} for i in range(3)])
    assert [a.json() for a in together] == [{"id": i, "batch": 3} for i in range(3)]


@pytest.mark.parametrize("function, message", [
    ("short", "route POST /p: short() returned 2 results for a batch of 3; a batched function returns one result "
              "per request, in order"),
    ("not_a_list", "route POST /p: not_a_list() returned a dict for a batch of 3; a batched function returns a list, "
                   "tuple or array with one result per request, in order"),
    ("fails", "cannot handle a batch of 3"),
], ids=["wrong-length", "not-a-sequence", "exception"])
async def test_a_failed_batch_answers_500_to_each_of_its_requests(endpoint, function, message):
    spec = batched("/p", function, [param("request_id", "int")], max_size=3, max_wait_ms=1000)
    ep = await endpoint("batched", [spec])
    answers = await burst(ep, "/p", [{"request_id": i} for i in range(3)])
    assert [a.status_code for a in answers] == [500] * 3
    assert all(a.json()["error"] == "model_error" and a.json()["message"] == message for a in answers)


async def test_a_lone_request_goes_at_once_without_max_wait(endpoint):
    ep = await endpoint("batched", [batched("/now", "echo", max_size=4)])
    assert (await ep.post("/now", json={"request_id": 1, "text": "a"})).json()["batch"] == 1


async def test_calls_arriving_while_a_batch_runs_wait_for_it_and_go_as_one_batch(endpoint):
    # Free threads do not start a pass per arrival beside the running one (each would cost a full pass): what
    # arrives meanwhile forms one batch, which goes once the running batch ends or a batch's time has passed.
    ep = await endpoint("batched", [batched("/slow", "slow_echo", [param("request_id", "int"),
                                                                   param("delay", "float")], max_size=32)])
    assert (await ep.post("/slow", json={"request_id": 0, "delay": 0.5})).json()["batch"] == 1  # a batch's time
    running = asyncio.ensure_future(ep.post("/slow", json={"request_id": 1, "delay": 1.0}))
    await asyncio.sleep(0.1)  # the first free thread takes it at once: nothing else is queued or running

    async def arrive(number):
        await asyncio.sleep(0.02 * number)
        return await ep.post("/slow", json={"request_id": 10 + number, "delay": 0.0})

    behind = await asyncio.gather(*(arrive(n) for n in range(6)))
    assert [a.json() for a in behind] == [{"id": 10 + n, "batch": 6} for n in range(6)]
    assert (await running).json() == {"id": 1, "batch": 1}


async def test_the_openapi_of_a_batched_route_shows_one_requests_body(endpoint):
    ep = await endpoint("batched", [batched("/echo", "echo", max_size=4, max_wait_ms=5)])
    document = (await ep.get("/openapi.json")).json()
    post = document["paths"]["/echo"]["post"]
    schema = document["components"]["schemas"][post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                                               .rsplit("/", 1)[1]]
    assert schema["properties"]["request_id"]["type"] == "integer"
    assert post["description"].startswith("Batched: up to 4 requests are answered by one call")
