"""The endpoint runtime's calls, in process: arguments as the route says, 422s naming the field, 415 and 413,
query strings for GET, and each way a call fails with its status and error kind."""

from __future__ import annotations

import asyncio

import pytest

from .conftest import error_of, param, route

pytestmark = pytest.mark.anyio

TYPES = [param("s", "str"), param("i", "int"), param("f", "float"), param("b", "bool"), param("d", "dict"),
         param("l", "list")]
GOOD = {"s": "text", "i": 3, "f": 2.5, "b": True, "d": {"k": [1]}, "l": [1, "a"]}


@pytest.fixture
async def types(endpoint):
    return await endpoint("types", [
        route("/echo", "echo", TYPES),
        route("/one", "echo", [param("text", "str")]),
        route("/defaults", "echo", [param("text", "str"), param("count", "int", optional=True, default_value="2"),
                                    param("tags", "list", optional=True, default_value="['a', 'b']"),
                                    param("note", "str", optional=True)]),
        route("/ordered", "ordered", [param("first", "str"), param("second", "int")], positional=True),
        route("/keywords", "keywords", [param("first", "str"), param("second", "int")]),
        route("/async", "async_echo", [param("text", "str")]),
        route("/items", "get_item", [param("item_id", "int"), param("verbose", "bool", optional=True,
                                                                     default_value="False")], verb="GET"),
        route("/items", "put_item", [param("item_id", "int"), param("verbose", "bool", optional=True,
                                                                     default_value="False")], verb="PUT"),
        route("/query", "echo", TYPES, verb="GET"),
        route("/pid", "pid", verb="DELETE"),
        route("/numbers", "echo", [param("f", "float", optional=True), param("d", "dict", optional=True),
                                   param("l", "list", optional=True)]),
    ])


async def test_every_type_reaches_the_function_as_its_python_type(types):
    answer = await types.post("/echo", json=GOOD)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"s": ["text", "str"], "i": [3, "int"], "f": [2.5, "float"], "b": [True, "bool"],
                             "d": [{"k": [1]}, "dict"], "l": [[1, "a"], "list"]}


async def test_an_int_is_a_valid_float_and_arrives_as_one(types):
    assert (await types.post("/echo", json={**GOOD, "f": 2})).json()["f"] == [2.0, "float"]


@pytest.mark.parametrize("field, bad", [("s", 5), ("i", "three"), ("i", 1.5), ("f", "x"),
                                        ("b", "maybe"), ("d", [1]), ("l", {"a": 1})])
async def test_a_wrong_type_is_422_naming_the_field(types, field, bad):
    answer = await types.post("/echo", json={**GOOD, field: bad})
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "invalid_request"
    assert [e["loc"] for e in body["detail"]] == [["body", field]]
    assert body["message"].startswith(f"body.{field}: ")


async def test_a_missing_param_is_422_naming_it(types):
    answer = await types.post("/one", json={})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "text"]
    assert answer.json()["message"] == "body.text: Field required"


async def test_an_unknown_param_is_422_naming_it(types):
    answer = await types.post("/one", json={"text": "a", "extra": 1})
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "extra"]


@pytest.mark.parametrize("body, expected", [
    (b"{not json", "JSON"), (b"[1, 2]", "JSON object"), (b'"text"', "JSON object"),
], ids=["malformed", "a-list", "a-string"])
async def test_a_body_that_is_no_json_object_is_422(types, body, expected):
    answer = await types.post("/one", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 422 and answer.json()["error"] == "invalid_request"
    assert expected in answer.json()["message"]


@pytest.mark.parametrize("body, loc", [
    (b'{"f": NaN}', ["body", "f"]), (b'{"f": Infinity}', ["body", "f"]), (b'{"f": 1e999}', ["body", "f"]),
    (b'{"d": {"x": NaN}}', ["body", "d", "x"]), (b'{"l": [1, -Infinity]}', ["body", "l", 1]),
    (b'{"l": [[0.5, 1.5], [2.5, NaN]]}', ["body", "l", 1, 1]), (b'{"l": [1e308, 1e308, "x", NaN]}', ["body", "l", 3]),
], ids=["nan", "infinity", "overflow", "nan-in-dict", "infinity-in-list", "nan-in-a-matrix", "nan-after-a-big-sum"])
async def test_non_finite_numbers_are_422_naming_where(types, body, loc):
    answer = await types.post("/numbers", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == loc
    assert (await types.post("/numbers", json={"f": 1.5, "d": {"x": 1}, "l": [2]})).status_code == 200


async def test_a_vector_of_finite_numbers_passes_whole_even_when_its_sum_overflows(types):
    for vector in ([0.25] * 256, [1e308, 1e308, -1.5], [[1.0, 2], [3, 4.5]], [True, 2, 3.5], []):
        answer = await types.post("/numbers", json={"f": 1.5, "d": {}, "l": vector})
        assert answer.status_code == 200, (vector, answer.text)


async def test_optional_params_take_their_literal_defaults_and_null_means_default(types):
    assert (await types.post("/defaults", json={"text": "x"})).json() == {
        "text": ["x", "str"], "count": [2, "int"], "tags": [["a", "b"], "list"], "note": [None, "NoneType"]}
    given = await types.post("/defaults", json={"text": "x", "count": 5, "note": "n"})
    assert given.json()["count"] == [5, "int"] and given.json()["note"] == ["n", "str"]
    assert (await types.post("/defaults", json={"text": "x", "count": None})).json()["count"] == [2, "int"]


async def test_positional_routes_pass_arguments_in_the_templates_order(types):
    assert (await types.post("/ordered", json={"second": 2, "first": "a"})).json() == ["a", 2, None]
    assert (await types.post("/keywords", json={"second": 2, "first": "a"})).json() == {"first": "a", "second": 2}


async def test_async_functions_are_awaited(types):
    assert (await types.post("/async", json={"text": "a"})).json() == {"async": "a"}


async def test_get_reads_the_query_string_as_the_routes_types(types):
    answer = await types.get("/items", params={"item_id": "7", "verbose": "true"})
    assert answer.json() == {"item_id": 7, "verbose": True, "via": "GET"}
    assert (await types.get("/items", params={"item_id": "7"})).json()["verbose"] is False
    query = await types.get("/query", params={"s": "t", "i": "3", "f": "0.5", "b": "false", "d": '{"k": 1}',
                                              "l": "[1, 2]"})
    assert query.json() == {"s": ["t", "str"], "i": [3, "int"], "f": [0.5, "float"], "b": [False, "bool"],
                            "d": [{"k": 1}, "dict"], "l": [[1, 2], "list"]}


@pytest.mark.parametrize("query, loc", [
    ("item_id=seven", ["query", "item_id"]), ("", ["query", "item_id"]),
    ("item_id=1&verbose=maybe", ["query", "verbose"]),
    ("item_id=1&other=2", ["query", "other"]),
], ids=["not-an-int", "missing", "not-a-bool", "unknown"])
async def test_a_bad_query_is_422_naming_the_param(types, query, loc):
    answer = await types.get("/items?" + query)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == loc


@pytest.mark.parametrize("query", ["f=nan", "f=inf", "f=-Infinity", "f=1e999", "l=[NaN]"])
async def test_non_finite_numbers_in_a_query_are_422(types, query):
    answer = await types.get("/query?s=t&i=1&b=true&d={}&l=[]&f=1&" + query)
    assert answer.status_code == 422


async def test_the_same_path_serves_two_verbs_and_refuses_a_third_with_405(types):
    assert (await types.put("/items", json={"item_id": 8})).json() == {"item_id": 8, "verbose": False, "via": "PUT"}
    wrong = await types.delete("/items")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET, HEAD, OPTIONS, PUT"
    assert error_of(wrong) == {"error": "method_not_allowed",
                               "message": "/items accepts GET, HEAD, OPTIONS, PUT, not DELETE"}


async def test_a_verb_without_a_body_ignores_content_type_rules(types):
    assert (await types.delete("/pid")).status_code == 200


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
async def test_a_body_that_does_not_say_json_is_415_naming_the_type(types, content_type):
    headers = {"content-type": content_type} if content_type else {}
    answer = await types.post("/one", content=b'{"text": "x"}', headers=headers)
    assert answer.status_code == 415
    body = answer.json()
    assert body["error"] == "unsupported_media_type"
    given = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
    assert body["message"].endswith(f"this request has {given}")
    assert "Content-Type: application/json" in body["message"]


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON",
                                          "application/vnd.api+json"])
async def test_json_content_types_are_accepted(types, content_type):
    answer = await types.post("/one", content=b'{"text": "x"}', headers={"content-type": content_type})
    assert answer.status_code == 200 and answer.json() == {"text": ["x", "str"]}


async def test_an_empty_body_needs_no_content_type_and_is_422_for_its_missing_params(types):
    answer = await types.post("/one", content=b"")
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "text"]


async def test_a_body_over_the_cap_is_413_by_its_length_and_when_streamed(endpoint):
    ep = await endpoint("types", [route("/one", "echo", [param("text", "str")])], max_body_size=100)
    assert (await ep.post("/one", json={"text": "a" * 50})).status_code == 200
    big = await ep.post("/one", json={"text": "a" * 500})
    assert big.status_code == 413
    assert error_of(big) == {"error": "body_too_large",
                          "message": "request body is larger than the endpoint's limit of 100 bytes (--max-body-size)"}
    assert big.headers["connection"] == "close"

    async def chunks():  # no Content-Length: the cap holds while the body is read
        for _ in range(10):
            yield b" " * 50

    streamed = await ep.post("/one", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413


@pytest.fixture
async def raises(endpoint):
    return await endpoint("raises", [route("/fail", "fail", [param("text", "str")]), route("/exit", "exits"),
                                     route("/object", "not_json"), route("/ok", "ok", [param("text", "str")])])


async def test_a_user_exception_is_500_with_its_type_and_message_and_no_traceback(raises, capsys):
    failed = await raises.post("/fail", json={"text": "x"})
    assert failed.status_code == 500
    assert error_of(failed) == {"error": "model_error", "type": "ValueError", "message": "cannot handle 'x'"}
    # The traceback goes to the endpoint's log (stderr), for its owner: never in the answer.
    assert 'raise ValueError(f"cannot handle' in capsys.readouterr().err


async def test_sys_exit_in_a_call_is_a_500_and_the_endpoint_keeps_serving(raises):
    exited = await raises.post("/exit", json={})
    assert exited.status_code == 500 and exited.json()["type"] == "SystemExit"
    assert (await raises.post("/ok", json={"text": "fine"})).json() == {"ok": "fine"}
    assert (await raises.get("/ping")).status_code == 200


async def test_a_result_that_is_not_json_is_500_saying_so(raises):
    answer = await raises.post("/object", json={})
    assert answer.status_code == 500 and "cannot be sent as JSON" in answer.json()["message"]


async def test_a_call_past_the_timeout_is_504_naming_the_option(endpoint):
    ep = await endpoint("blocking", [route("/sleep", "sleep", [param("seconds", "float")])], timeout=0.2)
    answer = await ep.post("/sleep", json={"seconds": 0.8})
    assert answer.status_code == 504
    assert answer.json()["error"] == "timeout"
    assert "timeout of 0.2s (--timeout, or endpoint.timeout in a job)" in answer.json()["message"]
    assert ep.app.pool.running == 1  # the function still runs: its slot stays taken until it returns
    for _ in range(500):
        if ep.app.pool.admitted == 0:
            break
        await asyncio.sleep(0.01)
    assert ep.app.pool.admitted == 0


async def test_past_capacity_each_call_is_503_at_once_and_ping_answers(endpoint, tmp_path):
    gate = tmp_path / "gate"
    ep = await endpoint("blocking", [route("/wait", "wait", [param("gate", "str")])], max_concurrency=1, max_queue=1)
    admitted = [asyncio.ensure_future(ep.post("/wait", json={"gate": str(gate)})) for _ in range(2)]
    for _ in range(200):  # both admitted: one running, one queued
        if ep.app.pool.admitted == 2:
            break
        await asyncio.sleep(0.01)
    assert ep.app.pool.admitted == 2
    assert (await ep.get("/ping")).status_code == 200
    refused = await ep.post("/wait", json={"gate": str(gate)})
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    report = refused.json()
    assert report["error"] == "overloaded" and (report["running"], report["waiting"]) == (1, 1)
    assert "max_concurrency 1" in report["message"] and "max_queue 1" in report["message"]
    gate.touch()
    assert [(await call).status_code for call in admitted] == [200, 200]
    assert (await ep.get("/metrics", params={"format": "json"})).json()["rejected"] == 1


@pytest.mark.parametrize("path, message", [
    ("/nowhere", "no route GET /nowhere; see /docs"),
    ("/items/", "no route GET /items/; did you mean /items?"),
], ids=["unknown", "trailing-slash"])
async def test_unknown_paths_are_404_with_a_hint(types, path, message):
    answer = await types.get(path)
    assert answer.status_code == 404
    assert error_of(answer) == {"error": "not_found", "message": message}
