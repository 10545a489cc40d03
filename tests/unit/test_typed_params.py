"""Typed params (paramspec.py, runtime/binding.py): a list's `items` and a value's `choices`, checked on every
request with a 422 naming the place, shown in /openapi.json, and checked in the route itself."""

from __future__ import annotations

import pytest

from trainml_cli.errors import RouteSpecError
from trainml_cli.routespec import parse_routes

from .conftest import error_of, param, route

pytestmark = pytest.mark.anyio

TYPED = [param("xs", "list", items="float"), param("tags", "list", items="str", optional=True),
         param("size", "str", choices=["small", "large"]),
         param("n", "int", optional=True, default_value="2", choices=[1, 2, 4]),
         param("t", "float", optional=True, choices=[0.5, 1])]


@pytest.fixture
async def typed(endpoint):
    return await endpoint("types", [route("/typed", "echo", TYPED), route("/typed", "echo", TYPED, verb="GET")])


async def test_values_of_the_declared_items_and_choices_arrive(typed):
    response = await typed.post("/typed", json={"xs": [1, 2.5], "tags": ["a"], "size": "large", "t": 1})
    assert response.status_code == 200, response.text
    values = {name: value for name, (value, _type) in response.json().items()}  # echo answers [value, type name]
    assert values == {"xs": [1.0, 2.5], "tags": ["a"], "size": "large", "n": 2, "t": 1.0}
    assert response.json()["t"][1] == "float"
    query = await typed.get("/typed", params={"xs": "[3]", "size": "small", "n": "4"})
    assert query.status_code == 200, query.text
    values = {name: value for name, (value, _type) in query.json().items()}
    assert values == {"xs": [3.0], "tags": None, "size": "small", "n": 4, "t": None}


@pytest.mark.parametrize("body, place, message", [
    ({"xs": [1, "a"], "size": "small"}, "body.xs[1]", "Input should be a valid number"),
    ({"xs": [], "tags": ["a", 3], "size": "small"}, "body.tags[1]", "Input should be a valid string"),
    ({"xs": [], "size": "medium"}, "body.size", "Input should be 'small' or 'large'"),
    ({"xs": [], "size": "small", "n": 3}, "body.n", "Input should be 1 or 2 or 4"),
    ({"xs": [], "size": "small", "t": 0.25}, "body.t", "Input should be 0.5 or 1.0"),
])
async def test_a_value_outside_the_items_or_choices_is_422_naming_its_place(typed, body, place, message):
    response = await typed.post("/typed", json=body)
    assert response.status_code == 422
    error = error_of(response)
    assert error["message"].startswith(f"{place}: {message}"), error["message"]


async def test_a_query_value_outside_the_choices_is_422_too(typed):
    response = await typed.get("/typed", params={"xs": "[]", "size": "small", "n": "3"})
    assert response.status_code == 422
    assert error_of(response)["message"] == "query.n: Input should be 1 or 2 or 4"


async def test_openapi_shows_items_and_enum(typed):
    document = (await typed.get("/openapi.json")).json()
    ref = document["paths"]["/typed"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    properties = document["components"]["schemas"][ref.rsplit("/", 1)[-1]]["properties"]
    assert properties["xs"]["items"] == {"type": "number"}
    assert properties["size"]["enum"] == ["small", "large"]
    assert properties["n"]["anyOf"][0]["enum"] == [1, 2, 4]
    parameters = {p["name"]: p for p in document["paths"]["/typed"]["get"]["parameters"]}
    assert parameters["size"]["schema"]["enum"] == ["small", "large"]


def test_the_route_keeps_items_and_choices_and_examples_use_them():
    [parsed] = parse_routes([route("/typed", "echo", TYPED)])
    assert parsed.to_dict()["body"][0] == {"name": "xs", "type": "list", "items": "float"}
    assert parsed.to_dict()["body"][4]["choices"] == [0.5, 1.0]
    assert parsed.example_body() == {"xs": [0.5], "tags": ["text"], "size": "small", "n": 2, "t": 0.5}
    assert [p.describe() for p in parsed.body][2:4] == ["size: str in ('small', 'large')", "n: int in (1, 2, 4) = 2"]


@pytest.mark.parametrize("bad, message", [
    (param("xs", "list", items="complex"), "body[0].items: 'complex' is not one of str, int, float, bool, dict"),
    (param("x", "int", items="int"), "body[0].items: only list params take items (this param is an int)"),
    (param("d", "dict", choices=["a"]), "body[0].choices: only str, int, float params take choices"),
    (param("b", "str", choices=[True]), "body[0].choices[0]: True is not string or number"),
    (param("n", "int", choices=[1, "2"]), "body[0].choices[1]: '2' is a str, not an int"),
    (param("n", "int", choices=[]), "body[0].choices"),
    (param("s", "str", optional=True, default_value="'c'", choices=["a", "b"]),
     "body[0].default_value: \"'c'\" is not one of the choices 'a', 'b'"),
])
def test_a_bad_items_or_choices_is_a_route_error(bad, message):
    with pytest.raises(RouteSpecError) as info:
        parse_routes([route("/p", "echo", [bad])])
    assert message in str(info.value), str(info.value)


BODIES = [b'{"s": "x", "i": 1, "f": 1.5, "b": true}', b'{"s": "x", "i": "2", "f": "1e3", "b": "yes", "c": "b"}',
          b'{"s": 1, "i": 1.5, "f": "nan", "b": 2}', b'{"s": "x", "i": 1, "f": 1e999, "b": true}', b'[1]', b'{}',
          b'{"s": "x", "i": 1, "f": 1, "b": true, "c": "z", "xs": [1, "a"], "zz": 1}', b'{"p0": "x"}',
          b'{"s": "x", "i": 1, "f": 1, "b": true, "d": null, "xs": null, "c": null}']


def test_the_validator_and_the_docs_model_accept_and_refuse_the_same_bodies():
    """Calls are validated by pydantic-core from binding.body_schema (no pydantic import at a worker's start); /docs
    describes pydantic's model of the same template (docs.body_model). Both must say the same of every body."""
    from pydantic import ValidationError

    from trainml_cli.runtime.binding import Binder, InvalidRequest
    from trainml_cli.runtime.docs import body_model

    (spec,) = parse_routes([route("/t", "t", [
        param("s", "str"), param("i", "int"), param("f", "float"), param("b", "bool"),
        param("d", "dict", optional=True, default_value="{'k': [1]}"),
        param("xs", "list", items="float", optional=True),
        param("c", "str", choices=["a", "b"], optional=True, default_value="'a'")])])
    binder, model = Binder(spec), body_model(spec)
    for body in BODIES:
        try:
            _, kwargs = binder.bind_json(body)
            ours = ("ok", kwargs)
        except InvalidRequest as exc:
            ours = ("refused", [(e["loc"][1:], e["type"]) for e in exc.errors if e["type"] != "model_type"])
        try:
            values = model.model_validate_json(body)
            theirs = ("ok", {p.name: getattr(values, f"p{i}") for i, p in enumerate(spec.body)})
            theirs[1].update({k: v for k, v in ours[1].items() if theirs[1][k] is None} if ours[0] == "ok" else {})
        except ValidationError as exc:
            theirs = ("refused", [(list(e["loc"]), e["type"]) for e in exc.errors()
                                  if e["type"] not in ("model_type", "model_attributes_type")])
        if body == b'{"p0": "x"}':  # the model's own field name, which it ignored; the validator refuses it too
            theirs[1].insert(0, (["p0"], "extra_forbidden"))
        assert ours == theirs, body
