"""Request body -> function arguments, validated as FastAPI validates request bodies, and stricter.

One validator is built per route at start, from the route's body template, and parses and checks the JSON in one
step: pydantic's own validator (pydantic-core), given the schema pydantic would build for the route's model, so
the answers are pydantic's (FastAPI's) without importing pydantic itself, which with its first model would cost
every worker's start (a cold start waits for it) about three times pydantic-core's import. The body is a typed
dict of the user's names, so a param called `model_config` or `schema` collides with nothing. The same template
as a pydantic model gives /docs its JSON schema (docs.py), when it is first asked for.

Stricter than FastAPI where a hostile or sloppy client could hurt the model or the endpoint:
- non-finite numbers (`NaN`, `Infinity`, `1e999`, `?x=nan`) are refused, also inside dict and list params,
  since the model's answer would then fail as JSON (500) or be silently wrong;
- an explicit `null` for an optional param means "use the default", as leaving it out does;
- a 422 lists at most MAX_ERRORS problems plus "... and N more": a body of a million unknown keys would
  otherwise get an answer ten times its size, and never reaches pydantic (see bind_large_json);
- a body nested deeper than MAX_DEPTH (jsonbody.py) is a 422 naming the bound, however deep: pydantic's parser
  stops at 200 levels with an error we rename, the walk over dict and list params counts the levels below that,
  and the scan of a large body (json's C scanner, which recurses) turns its RecursionError into the same 422.
"""

from __future__ import annotations

import copy
import json
import math
import operator
import re
from json.decoder import scanstring
from typing import Any
from urllib.parse import parse_qsl

from pydantic_core import PydanticCustomError, SchemaValidator, ValidationError, core_schema

from .. import jsonbody
from ..jsonbody import MAX_DEPTH, MAX_ERRORS, TOO_DEEP
from ..paramspec import Param
from ..routespec import Route

# What pydantic builds for each type annotation (docs.py's ANNOTATIONS); floats refuse inf and nan as the model's
# allow_inf_nan=False made them.
CORE: dict[str, Any] = {
    "str": core_schema.str_schema,
    "int": core_schema.int_schema,
    "float": lambda: core_schema.float_schema(allow_inf_nan=False),
    "bool": core_schema.bool_schema,
    "dict": lambda: core_schema.dict_schema(core_schema.str_schema(), core_schema.any_schema()),
    "list": lambda: core_schema.list_schema(core_schema.any_schema()),
    "file": core_schema.str_schema,  # base64 or a data: URL in JSON, a placeholder for a multipart part (uploads.py)
}


def value_schema(param: Param) -> dict:
    """The core schema of a param's value: a list of its `items`, or its type limited to its `choices`."""
    if param.items is not None:
        return core_schema.list_schema(CORE[param.items]())
    if param.choices is None:
        return CORE[param.type]()
    # Checked after the type's own (lax) validation, not as a Literal: `?size=2` is the int 2, as for any int.
    return core_schema.no_info_after_validator_function(choice_check(param), CORE[param.type]())


def choice_check(param: Param):
    allowed = frozenset(param.choices)
    expected = {"expected": " or ".join(map(repr, param.choices))}

    def check(value):
        if value not in allowed:
            raise PydanticCustomError("enum", "Input should be {expected}", expected)
        return value

    return check


def body_schema(route: Route) -> dict:
    """The route's body as pydantic builds a model with extra="forbid" and allow_inf_nan=False: each param
    required, or optional with its default (an explicit null allowed, and taken as the default in _arguments)."""
    fields = {}
    for param in route.body:
        schema = value_schema(param)
        if param.optional:
            schema = core_schema.with_default_schema(core_schema.nullable_schema(schema), default=param.default)
        fields[param.name] = core_schema.model_field(schema)
    return core_schema.model_fields_schema(fields, extra_behavior="forbid")


def place(loc) -> str:
    """`body.xs[1].k`: where in the request a problem is (an index in brackets, as the value is written)."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


# A large body with more unknown keys than this is refused from a scan, never given to pydantic: see
# bind_large_json.
_MANY_ERRORS = 1000
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_SCAN = json.JSONDecoder().scan_once  # the C scanner: one JSON value from a position


class InvalidRequest(Exception):
    """The request does not fit the route's body template; `errors` is FastAPI-shaped detail, at most
    MAX_ERRORS of `total` problems."""

    def __init__(self, errors: list[dict], total: int | None = None):
        total = len(errors) if total is None else total
        errors = errors[:MAX_ERRORS]
        super().__init__(jsonbody.summary([f"{place(e['loc'])}: {e['msg']}" for e in errors], total))
        self.errors = errors
        self.total = total


class Binder:
    """Validates one route's requests and maps them to (args, kwargs) for the user's function."""

    def __init__(self, route: Route):
        self.route = route
        self.location = "body" if route.takes_body else "query"
        self._validator = SchemaValidator(body_schema(route), core_schema.CoreConfig(allow_inf_nan=False))
        self._names = [p.name for p in route.body]
        self._known = frozenset(self._names)
        # A positional route's arguments in one C call: itemgetter of several names returns their tuple.
        if not route.positional:
            self._positional = None
        elif len(self._names) == 1:
            self._positional = lambda values, get=operator.itemgetter(self._names[0]): (get(values),)
        else:
            self._positional = operator.itemgetter(*self._names) if self._names else lambda values: ()
        self._json_params = {p.name for p in route.body if p.type in ("dict", "list")}
        # dict and list params hold any JSON, which pydantic does not check for finiteness: we walk them.
        self._nested = [p.name for p in route.body if p.type in ("dict", "list")]
        # Optional params whose default is not None: an explicit null there means the default.
        self._defaults = [(p.name, p.default, isinstance(p.default, (dict, list)))
                          for p in route.body if p.optional and p.default is not None]

    def bind_json(self, body: bytes) -> tuple[tuple, dict]:
        if not body.strip():
            body = b"{}"
        try:
            values = self._validator.validate_json(body)[0]
        except ValidationError as exc:
            raise self._invalid(exc) from None
        return self._arguments(values)

    def bind_large_json(self, body: bytes) -> tuple[tuple, dict]:
        """bind_json for a large body, on a thread of its own; its cost stays bounded for the event loop.

        pydantic holds the GIL while it parses an object of many keys (about a second for 10 MiB of them), which
        would stall the event loop's thread as well. Such a body is refused from a scan of its top-level keys
        in Python instead, which yields the GIL every few milliseconds: past _MANY_ERRORS unknown keys it can
        only be a 422, and the scan has counted them and named the first. Only a body with many colons is
        scanned; large lists, strings and nested values go to pydantic at once.
        """
        if body.count(b":") > _MANY_ERRORS:
            problems = self._scan_top_level(body)
            if problems is not None:
                raise problems
        return self.bind_json(body)

    def _scan_top_level(self, body: bytes) -> InvalidRequest | None:
        try:
            text = body.decode()
        except UnicodeDecodeError:
            return None  # pydantic says what is wrong
        match, scan = _WHITESPACE.match, _SCAN
        i = match(text, 0).end()
        if text[i:i + 1] != "{":
            return None
        i = match(text, i + 1).end()
        seen, unknown, first_unknown = set(), 0, []
        try:  # json's scanner recurses per level: its RecursionError is a body nested past MAX_DEPTH
            while text[i:i + 1] == '"':
                key, i = scanstring(text, i + 1)
                i = match(text, i).end()
                if text[i:i + 1] != ":":
                    return None
                _value, i = scan(text, match(text, i + 1).end())
                if key in self._known:
                    seen.add(key)
                else:
                    unknown += 1
                    if len(first_unknown) < MAX_ERRORS:
                        first_unknown.append(key)
                i = match(text, i).end()
                if text[i:i + 1] != ",":
                    break
                i = match(text, i + 1).end()
        except (StopIteration, ValueError):
            return None
        except RecursionError:
            return _too_deep(self.location)
        if unknown <= _MANY_ERRORS:
            return None
        errors = [{"loc": [self.location, p.name], "msg": "Field required", "type": "missing"}
                  for p in self.route.body if not p.optional and p.name not in seen]
        errors += [{"loc": [self.location, key], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
                   for key in first_unknown]
        return InvalidRequest(errors, len(errors) - len(first_unknown) + unknown)

    def bind_query(self, query_string: bytes) -> tuple[tuple, dict]:
        """GET/DELETE: the same template from the query string; dict and list params are JSON text."""
        return self.bind_fields(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))

    def bind_fields(self, pairs) -> tuple[tuple, dict]:
        """(name, text) pairs, from a query string or a form: converted to the params' types, dict and list params
        from JSON text; the last of a repeated name wins."""
        raw: dict[str, Any] = {}
        errors = []
        where = self.location
        for key, value in pairs:
            if key in self._json_params:
                try:
                    value = jsonbody.loads(value)
                except jsonbody.TooDeep:
                    errors.append({"loc": [where, key], "msg": TOO_DEEP, "type": "too_deep"})
                except ValueError:
                    errors.append({"loc": [where, key], "msg": "must be JSON text", "type": "json_invalid"})
            raw[key] = value
        if errors:
            raise InvalidRequest(errors)
        try:
            values = self._validator.validate_python(raw)[0]
        except ValidationError as exc:
            raise self._invalid(exc) from None
        return self._arguments(values)

    def _arguments(self, values: dict) -> tuple[tuple, dict]:
        for name, default, mutable in self._defaults:
            if values[name] is None:
                values[name] = copy.deepcopy(default) if mutable else default
        for name in self._nested:
            found = _nested_problem(values[name])
            if found is not None:
                where, too_deep = found
                if too_deep:  # the param names it: a path of a hundred indexes would not help more
                    raise _too_deep(self.location, (name,))
                loc = [self.location, name, *where]
                raise InvalidRequest([{"loc": loc, "msg": "Input should be a finite number", "type": "finite_number"}])
        if self._positional is not None:
            return self._positional(values), {}
        return (), values

    def _invalid(self, exc: ValidationError) -> InvalidRequest:
        errors = self._errors(exc)
        # pydantic's parser stops at 200 levels: past our bound either way, and said in our words
        if errors[0]["type"] == "json_invalid" and "recursion limit" in errors[0]["msg"]:
            return _too_deep(self.location)
        return InvalidRequest(errors, exc.error_count())

    def _errors(self, exc: ValidationError) -> list[dict]:
        errors = []
        for error in exc.errors(include_url=False, include_context=False, include_input=False)[:MAX_ERRORS]:
            loc = [self.location, *error["loc"]]
            kind, msg = error["type"], error["msg"]
            if kind == "model_attributes_type" or kind == "model_type":  # the body itself is not an object
                kind, msg = "model_type", "must be a JSON object with the route's params"
            errors.append({"loc": loc, "msg": msg, "type": kind})
        return errors


def _too_deep(location: str, loc=()) -> InvalidRequest:
    return InvalidRequest([{"loc": [location, *loc], "msg": TOO_DEEP, "type": "too_deep"}])


# A param's value sits at level 2 of the body (the body's object is level 1): its containers may go this deep.
_PARAM_DEPTH = MAX_DEPTH - 2


def _nested_problem(value, _isfinite=math.isfinite) -> tuple[list, bool] | None:
    """In a dict or list param's value: where a float is inf or nan, or a container sits past MAX_DEPTH (a path of
    keys and indexes, and whether it is the depth), or None. Iterative: a deep value must not exhaust the stack."""
    stack = [((), value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, float):
            if not _isfinite(item):
                return list(path), False
        elif isinstance(item, dict):
            if len(path) > _PARAM_DEPTH:
                return list(path), True
            stack.extend(((*path, k), v) for k, v in item.items() if not isinstance(v, (str, int)))
        elif isinstance(item, list):
            if len(path) > _PARAM_DEPTH:
                return list(path), True
            if _finite_numbers(item):
                continue
            stack.extend(((*path, i), v) for i, v in enumerate(item) if not isinstance(v, (str, int)))
    return None


def _finite_numbers(items: list, _isfinite=math.isfinite) -> bool:
    """True for a list of numbers that are all finite, in one pass in C: the vectors most bodies carry (256 floats
    walked one by one cost about 100 us, their sum 1 us). Anything else (a str or a container among the items,
    a nan, an inf, or finite numbers whose sum overflows) is False, and walked item by item."""
    try:
        return _isfinite(sum(items))
    except (TypeError, OverflowError):
        return False
