"""The endpoint runtime as a user meets it: real processes, real HTTP on loopback, tiny model files."""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from endpoint_process import MODELS as MODELS_DIR, param, route, start

TYPES = [
    param("s", "str"),
    param("i", "int"),
    param("f", "float"),
    param("b", "bool"),
    param("d", "dict"),
    param("l", "list"),
]


@pytest.fixture
def serve(tmp_path):
    started = []

    def _serve(model, routes, *args, ready=True, env=None):
        endpoint = start(model, routes, *args, tmp_path=tmp_path, env=env)
        started.append(endpoint)
        return endpoint.wait_ready() if ready else endpoint

    yield _serve
    for endpoint in started:
        endpoint.stop()


@pytest.fixture(scope="module")
def typed(tmp_path_factory):
    """One endpoint with POST /echo taking every type, for the tests that only call it."""
    endpoint = start("types", [route("/echo", "echo", TYPES)], tmp_path=tmp_path_factory.mktemp("typed"))
    try:
        yield endpoint.wait_ready()
    finally:
        endpoint.stop()


def test_every_type_is_passed_as_the_python_type(typed):
    body = {"s": "text", "i": 3, "f": 2.5, "b": True, "d": {"k": [1]}, "l": [1, "a"]}
    answer = typed.post("/echo", body)
    assert answer.status_code == 200
    assert answer.json() == {
        "s": ["text", "str"], "i": [3, "int"], "f": [2.5, "float"], "b": [True, "bool"],
        "d": [{"k": [1]}, "dict"], "l": [[1, "a"], "list"],
    }
    # As FastAPI does: an int is a valid float, and is passed as a float.
    assert typed.post("/echo", {**body, "f": 2}).json()["f"] == [2.0, "float"]


@pytest.mark.parametrize(
    "field, bad",
    [("s", 5), ("i", "three"), ("i", 1.5), ("f", "x"), ("b", "maybe"), ("d", [1]), ("l", {"a": 1})],
)
def test_each_type_rejects_a_wrong_value_naming_the_field(typed, field, bad):
    body = {"s": "text", "i": 3, "f": 2.5, "b": True, "d": {}, "l": []}
    answer = typed.post("/echo", {**body, field: bad})
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert [e["loc"] for e in detail] == [["body", field]]
    assert f"body.{field}:" in answer.json()["message"]


def test_missing_unknown_and_malformed_bodies_are_422(serve):
    ep = serve("types", [route("/echo", "echo", [param("text", "str")])])
    missing = ep.post("/echo", {})
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "text"]
    unknown = ep.post("/echo", {"text": "a", "extra": 1})
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["body", "extra"]
    broken = ep.session.post(ep.url + "/echo", data=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 422
    not_object = ep.post("/echo", [1, 2])
    assert not_object.status_code == 422 and "JSON object" in not_object.json()["message"]


def test_optional_params_take_their_literal_defaults(serve):
    params = [
        param("text", "str"),
        param("count", "int", optional=True, default_value="2"),
        param("tags", "list", optional=True, default_value="['a', 'b']"),
        param("note", "str", optional=True),
    ]
    ep = serve("types", [route("/echo", "echo", params)])
    assert ep.post("/echo", {"text": "x"}).json() == {
        "text": ["x", "str"], "count": [2, "int"], "tags": [["a", "b"], "list"], "note": [None, "NoneType"],
    }
    assert ep.post("/echo", {"text": "x", "count": 5, "note": "n"}).json()["count"] == [5, "int"]


def test_positional_routes_pass_arguments_in_template_order(serve):
    ep = serve("types", [
        route("/ordered", "ordered", [param("first", "str"), param("second", "int")], positional=True),
        route("/keywords", "keywords", [param("first", "str"), param("second", "int")]),
    ])
    # JSON key order must not matter: the template's order does.
    assert ep.post("/ordered", {"second": 2, "first": "a"}).json() == ["a", 2, None]
    assert ep.post("/keywords", {"first": "a", "second": 2}).json() == {"first": "a", "second": 2}


def test_same_path_with_two_verbs_and_query_params_for_get(serve):
    body = [param("item_id", "int"), param("verbose", "bool", optional=True, default_value="False")]
    ep = serve("types", [
        route("/items", "get_item", body, verb="GET"),
        route("/items", "put_item", body, verb="PUT"),
    ])
    assert ep.get("/items", params={"item_id": "7", "verbose": "true"}).json() == {
        "item_id": 7, "verbose": True, "via": "GET"}
    assert ep.session.put(ep.url + "/items", json={"item_id": 8}).json() == {
        "item_id": 8, "verbose": False, "via": "PUT"}
    bad = ep.get("/items", params={"item_id": "seven"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "item_id"]
    wrong_verb = ep.session.delete(ep.url + "/items")
    assert wrong_verb.status_code == 405 and "GET, HEAD, OPTIONS, PUT" in wrong_verb.json()["message"]
    assert ep.get("/nowhere").status_code == 404


def test_sync_and_async_functions(serve):
    ep = serve("types", [
        route("/async", "async_echo", [param("text", "str")]),
        route("/sync", "shout", [param("text", "str")]),
    ])
    assert ep.post("/async", {"text": "a"}).json() == {"async": "a"}
    assert ep.post("/sync", {"text": "a"}).json() == "A"


def test_numpy_return_values_are_sent_as_json(serve):
    pytest.importorskip("numpy")
    ep = serve("types", [route("/np", "numpy_array", [param("n", "int")])])
    assert ep.post("/np", {"n": 3}).json() == {"array": [0, 1, 2], "mean": 1.5}


def test_user_exception_is_a_500_and_the_endpoint_keeps_serving(serve):
    ep = serve("raises", [
        route("/fail", "fail", [param("text", "str")]),
        route("/exit", "exits"),
        route("/object", "not_json"),
        route("/ok", "ok", [param("text", "str")]),
    ])
    failed = ep.post("/fail", {"text": "x"})
    assert failed.status_code == 500
    assert failed.json() == {"error": "model_error", "type": "ValueError", "message": "cannot handle 'x'",
                             "request_id": failed.headers["x-request-id"]}
    assert "Traceback" not in failed.text
    exited = ep.post("/exit")
    assert exited.status_code == 500 and exited.json()["type"] == "SystemExit"
    unsendable = ep.post("/object")
    assert unsendable.status_code == 500 and "cannot be sent as JSON" in unsendable.json()["message"]
    assert ep.post("/ok", {"text": "fine"}).json() == {"ok": "fine"}
    time.sleep(0.3)  # the access log is flushed every 100 ms
    log = ep.log()
    assert 'raise ValueError(f"cannot handle' in log  # the traceback goes to the log
    assert "POST /fail 500" in log and "POST /ok 200" in log


def _metrics(ep):
    return ep.get("/metrics", headers={"Accept": "application/json"}).json()  # the control plane's view


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def test_exactly_the_excess_requests_get_503_and_ping_still_answers(serve, tmp_path):
    gate = tmp_path / "gate"
    ep = serve("blocking", [route("/wait", "wait", [param("gate", "str")])], "--max-concurrency", "2",
               "--max-queue", "3")
    with ThreadPoolExecutor(8) as pool:
        admitted = [pool.submit(requests.post, ep.url + "/wait", json={"gate": str(gate)}, timeout=20)
                    for _ in range(5)]
        _wait_for(lambda: (m := _metrics(ep))["running"] == 2 and m["waiting"] == 3)
        # Saturated: /ping still answers at once, and every further call is refused at once.
        assert ep.get("/ping", timeout=2).status_code == 200
        for _ in range(3):
            refused = ep.post("/wait", {"gate": str(gate)}, timeout=2)
            assert refused.status_code == 503
            assert refused.headers["Retry-After"] == "1"
            report = refused.json()
            assert report["running"] == 2 and report["waiting"] == 3
            assert "max_concurrency 2" in report["message"] and "max_queue 3" in report["message"]
        gate.touch()
        assert [f.result().status_code for f in admitted] == [200] * 5
    assert _metrics(ep)["rejected"] == 3


def test_queue_is_fifo_and_timeout_counts_running_time_only(serve):
    ep = serve("blocking", [route("/sleep", "sleep", [param("seconds", "float")])],
               "--max-concurrency", "1", "--max-queue", "4", "--timeout", "1.5")
    order = []
    lock = threading.Lock()

    def call(i):
        answer = requests.post(ep.url + "/sleep", json={"seconds": 0.5}, timeout=20)
        with lock:
            order.append(i)
        return answer.status_code

    with ThreadPoolExecutor(3) as pool:
        futures = []
        for i in range(3):
            futures.append(pool.submit(call, i))
            _wait_for(lambda started=i + 1: (m := _metrics(ep))["running"] + m["waiting"] == started)
        # The third waits about 1 s in the queue, then runs 0.5 s: over 1.5 s in all, yet no 504.
        assert [f.result() for f in futures] == [200, 200, 200]
    assert order == [0, 1, 2]
    too_slow = ep.post("/sleep", {"seconds": 3})
    assert too_slow.status_code == 504
    assert "--timeout" in too_slow.json()["message"]


def test_body_over_the_limit_gets_413(serve):
    ep = serve("types", [route("/echo", "echo", [param("text", "str")])], "--max-body-size", "100")
    assert ep.post("/echo", {"text": "a" * 50}).status_code == 200
    big = ep.post("/echo", {"text": "a" * 500})
    assert big.status_code == 413 and "100 bytes" in big.json()["message"]


def test_ping_says_loading_while_the_model_loads(serve, tmp_path):
    gate = tmp_path / "loaded"
    ep = serve("slow_load", [route("/predict", "predict", [param("text", "str")])], ready=False,
               env={"TEST_LOAD_GATE": str(gate)})
    _wait_for(lambda: _try_status(ep, "/ping") == 503)
    assert ep.get("/ping").json() == {"status": "loading"}
    early = ep.post("/predict", {"text": "x"})
    assert early.status_code == 503 and early.headers["Retry-After"] == "1"
    gate.touch()
    ep.wait_ready()
    assert ep.post("/predict", {"text": "x"}).json() == {"loaded": "x"}


def _try_status(ep, path):
    try:
        return ep.get(path, timeout=1).status_code
    except requests.RequestException:
        return None


def test_openapi_and_docs_describe_every_route(serve):
    ep = serve("types",
               [route("/echo", "echo", TYPES), route("/items", "get_item", [param("item_id", "int")], verb="GET")])
    document = ep.get("/openapi.json").json()
    post = document["paths"]["/echo"]["post"]
    schema_name = post["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    schema = document["components"]["schemas"][schema_name]
    assert schema["properties"]["i"]["type"] == "integer" and set(schema["required"]) == {"s", "i", "f", "b", "d", "l"}
    assert document["paths"]["/items"]["get"]["parameters"][0]["name"] == "item_id"
    docs = ep.get("/docs")
    assert docs.headers["content-type"].startswith("text/html") and "POST /echo" in docs.text


def test_access_log_has_one_line_per_request(serve):
    ep = serve("types", [route("/sync", "shout", [param("text", "str")])])
    ep.post("/sync", {"text": "hello"})
    ep.post("/sync", {"text": 1})
    ep.get("/ping")
    _wait_for(lambda: "POST /sync 422" in ep.log())
    # Health checks and metrics polls are neither logged nor counted as traffic.
    assert " /ping " not in ep.log() and " /metrics " not in ep.log()
    assert _metrics(ep)["requests"] == 2
    lines = [line for line in ep.log().splitlines() if " /sync " in line]
    assert len(lines) == 2
    stamp, verb, path, status, latency, request_id = lines[0].split()
    assert stamp.endswith("Z") and (verb, path, status) == ("POST", "/sync", "200") and latency.endswith("ms")
    assert request_id
    assert "model says: hello" in ep.log()


def test_several_workers_serve_the_same_port(serve):
    ep = serve("types", [route("/sync", "shout", [param("text", "str")])], "--workers", "2")
    assert ep.post("/sync", {"text": "a"}).json() == "A"
    _wait_for(lambda: len(_children(ep.proc.pid)) == 2)


def test_a_worker_still_loading_takes_no_call_while_another_serves(serve, tmp_path):
    """A group is running once one worker answers; a call must never meet a worker of it still loading (a 503
    "loading" from an endpoint that says it runs)."""
    gate = tmp_path / "gate"
    env = {"TEST_FIRST_MARK": str(tmp_path / "first"), "TEST_LOAD_GATE": str(gate)}
    ep = serve("second_slow", [route("/pid", "pid", verb="GET")], "--workers", "2", env=env)
    _wait_for(lambda: len(_children(ep.proc.pid)) == 2)
    answers = [requests.get(ep.url + "/pid", timeout=10) for _ in range(30)]  # a new connection each
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers if a.status_code != 200][:2]
    assert len({a.json() for a in answers}) == 1, "only the loaded worker answered"
    gate.touch()
    pids = set()
    _wait_for(lambda: pids.add(requests.get(ep.url + "/pid", timeout=10).json()) or len(pids) == 2)


def _children(pid):
    path = f"/proc/{pid}/task/{pid}/children"
    return open(path).read().split() if os.path.exists(path) else []


# -- failures at start ---------------------------------------------------------------------------------------


def test_import_error_exits_with_the_route_and_the_users_traceback(serve):
    ep = serve("import_error", [route("/predict", "predict", [param("text", "str")])], ready=False)
    assert ep.wait_exit() == 3
    log = ep.log()
    assert "route POST /predict: importing predict.py failed" in log
    assert "ModuleNotFoundError: No module named 'helper_that_does_not_exist'" in log
    assert "import helper_that_does_not_exist" in log
    assert "importlib" not in log and "trainml_cli" not in log


def test_missing_function_and_missing_file_exit_naming_the_route(serve):
    missing_function = serve("no_function", [route("/predict", "predict")], ready=False)
    assert missing_function.wait_exit() == 3
    assert "predict.py has no function 'predict' (it defines: predict_image)" in missing_function.log()
    missing_file = serve("no_function", [route("/predict", "predict_image", file="model")], ready=False)
    assert missing_file.wait_exit() == 3
    assert "route 1 (POST /predict): file: 'model' not found in" in missing_file.log()
    assert "(looked for model.py)" in missing_file.log()


def test_function_that_cannot_take_the_template_is_refused_at_start(serve):
    ep = serve("no_function", [route("/predict", "predict_image", [param("image", "str")])], ready=False)
    assert ep.wait_exit() == 3
    assert "cannot take the body params (image)" in ep.log()


@pytest.mark.parametrize(
    "bad_route, message",
    [
        (route("/p", "predict", file="../sideeffect/predict"), "file: '../sideeffect/predict' must be a path inside"),
        (route("/p", "predict", file="/etc/passwd"), "not an absolute path"),
        (route("/p", "predict", [param("text", "str", optional=True,
                                       default_value="__import__('os').system('true')")]),
         "body[0].default_value: \"__import__('os').system('true')\" is not a Python literal"),
    ],
    ids=["traversal", "absolute", "code-as-default"],
)
def test_unsafe_routes_are_refused_before_any_code_runs(serve, tmp_path, bad_route, message):
    marker = tmp_path / "imported"
    ep = serve("sideeffect", [bad_route], ready=False, env={"TEST_MARKER": str(marker)})
    assert ep.wait_exit() == 2
    assert message in ep.log()
    assert not marker.exists()


def test_link_out_of_the_model_dir_is_refused(serve, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    outside = tmp_path / "outside.py"
    outside.write_text("def predict():\n    return 1\n")
    (model / "predict.py").symlink_to(outside)
    ep = serve(model, [route("/p", "predict")], ready=False)
    assert ep.wait_exit() == 3
    assert "resolves outside the model directory" in ep.log()


def test_runtime_imports_only_the_leaves_and_its_server_libraries():
    import subprocess
    import sys

    probe = ("import trainml_cli.runtime.__main__, trainml_cli.runtime.app, sys, json; "
             "print(json.dumps(sorted(sys.modules)))")
    modules = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                        check=True, timeout=60).stdout)
    forbidden = ("fastapi", "starlette", "requests", "click", "rich", "jinja2",
                 "trainml_cli.cli", "trainml_cli.sdk", "trainml_cli.server")
    assert [m for m in modules if m.split(".")[0] in forbidden or m.startswith(forbidden)] == []


def test_a_linked_package_of_the_same_name_cannot_stand_in_for_the_route_file(serve, tmp_path):
    # Python imports a package `predict/` before a module `predict.py`: the checked file must be the one imported.
    model = tmp_path / "model"
    model.mkdir()
    (model / "predict.py").write_text("def predict():\n    return 'inside'\n")
    outside = tmp_path / "outside_pkg"
    outside.mkdir()
    marker = tmp_path / "imported"
    (outside / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n\n"
                                         "def predict():\n    return 'outside'\n")
    (model / "predict").symlink_to(outside)
    ep = serve(model, [route("/p", "predict", [])], ready=False)
    assert ep.wait_exit() == 3
    assert "resolves outside the model directory: Python would import 'predict' from" in ep.log()
    assert not marker.exists()


def test_a_port_in_use_is_a_usage_error_naming_it(tmp_path):
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "trainml_cli", "endpoint", "serve", "--model-dir", str(MODELS_DIR / "types"),
             "--port", str(port), "--route", json.dumps(route("/sync", "shout", [param("text", "str")]))],
            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"Error: 127.0.0.1:{port} is already in use; "
                                     "choose another --port (0: any free one)")
