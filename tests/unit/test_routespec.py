"""The route spec's messages: each names the route, the field and what to do."""

from __future__ import annotations

import pytest

from trainml_cli.errors import RouteSpecError, UsageError
from trainml_cli.routespec import ROUTE_SCHEMA, parse_route_json, parse_routes, read_route_file


def good(**overrides):
    return {"verb": "POST", "path": "/predict", "file": "predict", "function": "predict", **overrides}


def problems(*routes):
    with pytest.raises(RouteSpecError) as info:
        parse_routes(list(routes))
    return info.value.problems


def test_a_full_route_parses_with_literal_defaults():
    [route] = parse_routes([good(verb="post", positional=True, body=[
        {"name": "filename", "type": "str"},
        {"name": "threshold", "type": "float", "optional": True, "default_value": "1"},
        {"name": "labels", "type": "dict", "optional": True, "default_value": "{'a': [1, 2]}"},
        {"name": "note", "type": "str", "optional": True},
    ])])
    assert route.verb == "POST" and route.positional
    assert [p.default for p in route.body] == [None, 1.0, {"a": [1, 2]}, None]
    assert route.to_dict()["body"][1] == {"name": "threshold", "type": "float", "optional": True, "default_value": "1"}
    assert parse_routes([route.to_dict()]) == [route]


def test_schema_errors_name_route_and_field():
    assert problems(good(path="/a"), good(body=[{"name": "a", "type": "string"}])) == [
        "route 2 (POST /predict): body[0].type: 'string' is not one of str, int, float, bool, dict, list, file"
    ]
    assert problems({"path": "/a", "file": "f", "function": "g"}) == ["route 1: verb: is required"]
    assert problems(good(extra=1))[0].startswith("route 1 (POST /predict): route: unknown field 'extra'")
    assert problems(good(positional="yes")) == ["route 1 (POST /predict): positional: 'yes' is not true or false"]
    assert problems("x") == ["route 1: must be a JSON object, got str"]


@pytest.mark.parametrize(
    "route, message",
    [
        (good(path="predict"), "path: 'predict' must start with '/'"),
        (good(path="/ping"), "path: /ping is reserved"),
        (good(file="../secrets"), "file: '../secrets' must be a path inside the model directory"),
        (good(file="/etc/passwd"), "not an absolute path"),
        (good(file="my-model"), "'my-model' is not a valid Python module name"),
        (good(function="os.system"), "function: 'os.system' is not a valid Python function name"),
        (good(body=[{"name": "a", "type": "str"}, {"name": "a", "type": "int"}]), "body[1].name: 'a' appears twice"),
        (good(body=[{"name": "class", "type": "str"}]), "body[0].name: 'class' is not a valid Python parameter name"),
        (good(body=[{"name": "a", "type": "int", "default_value": "1"}]), "only optional params take a default"),
        (good(body=[{"name": "a", "type": "int", "optional": True, "default_value": "1.5"}]),
         "body[0].default_value: '1.5' is a float, not an int"),
        (good(body=[{"name": "a", "type": "int", "optional": True, "default_value": "True"}]), "is a bool, not an int"),
        (good(body=[{"name": "a", "type": "str", "optional": True, "default_value": "hello"}]),
         "'hello' is not a Python literal (write strings with quotes, e.g. \"'hello'\")"),
        (good(body=[{"name": "a", "type": "list", "optional": True, "default_value": "[" * 5000 + "]" * 5000}]),
         "is not a Python literal"),
        (good(positional=True, body=[{"name": "a", "type": "str", "optional": True}, {"name": "b", "type": "int"}]),
         "body[1]: required param 'b' comes after an optional one in a positional route"),
    ],
    ids=["relative-path", "reserved", "traversal", "absolute", "dash", "dotted-function", "duplicate-param",
         "keyword-param", "default-on-required", "float-for-int", "bool-for-int", "unquoted-string",
         "deep-literal", "positional-order"],
)
def test_rule_violations(route, message):
    [problem] = problems(route)
    assert problem.startswith(f"route 1 ({route['verb']} {route['path']}): ")
    assert message in problem


def test_default_value_is_never_evaluated(tmp_path):
    marker = tmp_path / "ran"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    problems(good(body=[{"name": "a", "type": "str", "optional": True, "default_value": code}]))
    assert not marker.exists()


def test_duplicate_verb_and_path_and_every_problem_reported_at_once():
    found = problems(good(), good(), good(verb="GET", function="bad name"))
    assert found == [
        "route 2 (POST /predict): path: POST /predict is already served by route 1",
        "route 3 (GET /predict): function: 'bad name' is not a valid Python function name",
    ]


def test_json_text_errors_show_where():
    with pytest.raises(UsageError) as info:
        parse_route_json('{"verb": "POST", "path": }', index=1)
    assert str(info.value).startswith("route 2: not valid JSON: Expecting value at line 1 column 26")
    assert "^" in str(info.value)


def test_route_files_in_json_and_yaml(tmp_path):
    (tmp_path / "routes.yaml").write_text("- verb: POST\n  path: /p\n  file: predict\n  function: f\n")
    (tmp_path / "routes.json").write_text('[{"verb": "GET", "path": "/g", "file": "predict", "function": "g"}]')
    assert parse_routes(read_route_file(tmp_path / "routes.yaml"))[0].path == "/p"
    assert parse_routes(read_route_file(tmp_path / "routes.json"))[0].verb == "GET"
    with pytest.raises(UsageError, match="route file .*missing.json"):
        read_route_file(tmp_path / "missing.json")


def test_schema_is_a_valid_json_schema():
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(ROUTE_SCHEMA)


def test_a_default_given_as_a_json_number_says_to_write_it_as_a_string():
    [problem] = problems(good(body=[{"name": "t", "type": "float", "optional": True, "default_value": 0.1}]))
    assert problem == ('route 1 (POST /predict): body[0].default_value: 0.1 is not a string: '
                       'write the Python literal as a string, e.g. "0.1"')


@pytest.mark.parametrize("batch, message", [
    ({"max_size": 2000}, "batch.max_size: 2000 is more than 1024 (allowed: 1 to 1024)"),
    ({"max_size": 0}, "batch.max_size: 0 is less than 1 (allowed: 1 to 1024)"),
    ({"max_size": 8, "max_wait_ms": 5000}, "batch.max_wait_ms: 5000 is more than 1000 (allowed: 0 to 1000)"),
    ({"max_size": 8, "max_wait_ms": -1}, "batch.max_wait_ms: -1 is less than 0 (allowed: 0 to 1000)"),
    ({"max_wait_ms": 5}, "batch.max_size: is required"),
    ({"max_size": "8"}, "batch.max_size: '8' is not a whole number"),
    ({"max_size": 8, "size": 1}, "batch: unknown field 'size' (allowed: max_size, max_wait_ms)"),
    (32, 'batch: 32 is not an object like {"max_size": 32, "max_wait_ms": 5}'),
], ids=["too-big", "zero", "wait-too-long", "negative-wait", "no-size", "string", "unknown-field", "not-object"])
def test_batch_problems_name_the_route_and_the_limit(batch, message):
    body = [{"name": "text", "type": "str"}]
    assert problems(good(body=body, batch=batch)) == [f"route 1 (POST /predict): {message}"]


def test_a_batched_route_round_trips_and_needs_a_param():
    [route] = parse_routes([good(body=[{"name": "text", "type": "str"}], batch={"max_size": 32, "max_wait_ms": 5})])
    assert (route.batch.max_size, route.batch.max_wait_ms) == (32, 5.0)
    assert route.to_dict()["batch"] == {"max_size": 32, "max_wait_ms": 5.0}
    assert parse_routes([route.to_dict()]) == [route]
    assert "batch" not in parse_routes([good()])[0].to_dict()  # unbatched routes read as they always did
    assert parse_routes([good(batch=None)])[0].batch is None
    assert problems(good(batch={"max_size": 4})) == [
        "route 1 (POST /predict): batch: a batched route needs at least one body param (each arrives as a list, one "
        "item per request)"]


ODD_VALUES = [None, True, False, 0, 1, -1, 32, 32.0, 1.5, 10**9, "", "x", "POST", "post", "/p", "/a b", "/p\n",
              "text/plain", "a/b\r\nX: y", "x" * 300, [], ["x"], [1], {}, {"max_size": 8}, {"max_size": 8.0},
              {"max_size": 0}, {"max_size": 8, "max_wait_ms": 2.5}, {"max_size": 8, "extra": 1}]
ODD_PARAMS = [{"name": "x", "type": "str"}, {"name": "x", "type": "list", "items": "float"},
              {"name": "x", "type": "str", "choices": ["a", 1.5]}, {"name": "x", "type": "str", "choices": []},
              {"name": "x", "type": "string"}, {"name": "", "type": "str"}, {"name": "x"},
              {"name": "x", "type": "int", "optional": 1}, {"name": "x", "type": "int", "default_value": None},
              {"name": "x", "type": "int", "default_value": 3}, {"name": "x", "type": "str", "other": 1}, "x", None]


def _variants():
    base = good(body=[{"name": "text", "type": "str"}], batch={"max_size": 32, "max_wait_ms": 5}, positional=True,
                content_type="text/plain")
    yield base
    for key in (*base, "extra"):
        yield {k: v for k, v in base.items() if k != key}
        for value in ODD_VALUES:
            yield {**base, key: value}
    for param in ODD_PARAMS:
        yield {**base, "body": [param]}
        yield {**base, "body": [{"name": "a", "type": "int"}, param]}


def test_the_quick_check_never_passes_a_route_the_schema_refuses():
    """schemafit lets the runtime start without jsonschema: what it passes, jsonschema must pass too."""
    from jsonschema import Draft202012Validator

    from trainml_cli.schemafit import fits

    validator = Draft202012Validator(ROUTE_SCHEMA)
    passed = 0
    for raw in _variants():
        if fits(ROUTE_SCHEMA, raw):
            passed += 1
            assert validator.is_valid(raw), raw
    assert passed > 20  # sound routes take the quick path (else the runtime would import jsonschema after all)
