"""Request body -> function arguments, validated as FastAPI validates request bodies, and stricter.

One pydantic model is built per route at start, from the route's body template, and its compiled validator
parses and checks the JSON in one step. Fields use internal names with the user's names as aliases, so a param
called `model_config` or `schema` cannot collide with pydantic's own attributes.

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
from typing import Annotated, Any, Optional
from urllib.parse import parse_qsl

from pydantic import AfterValidator, ConfigDict, Field, ValidationError, WithJsonSchema, create_model
from pydantic_core import PydanticCustomError

from .. import jsonbody
from ..jsonbody import MAX_DEPTH, MAX_ERRORS, TOO_DEEP
from ..paramspec import Param
from ..routespec import Route

ANNOTATIONS: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "dict": dict[str, Any],
    "list": list[Any],
    "file": str,  # base64 or a data: URL in JSON, a placeholder for a multipart part (uploads.py makes the Path)
}
_SCHEMA_TYPES = {"str": "string", "int": "integer", "float": "number"}


def annotation(param: Param) -> Any:
    """The pydantic type of a param's value: a list of its `items`, or its type limited to its `choices`."""
    if param.items is not None:
        return list[ANNOTATIONS[param.items]]  # type: ignore[misc]
    if param.choices is None:
        return ANNOTATIONS[param.type]
    # Checked after the type's own (lax) validation, not as a Literal: `?size=2` is the int 2, as for any int.
    allowed = frozenset(param.choices)
    expected = {"expected": " or ".join(map(repr, param.choices))}

    def check(value):
        if value not in allowed:
            raise PydanticCustomError("enum", "Input should be {expected}", expected)
        return value

    schema = {"type": _SCHEMA_TYPES[param.type], "enum": list(param.choices)}
    return Annotated[ANNOTATIONS[param.type], AfterValidator(check), WithJsonSchema(schema)]


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
        fields: dict[str, Any] = {}
        for index, param in enumerate(route.body):
            kind = annotation(param)
            if param.optional:
                fields[f"p{index}"] = (Optional[kind], Field(default=param.default, alias=param.name))
            else:
                fields[f"p{index}"] = (kind, Field(alias=param.name))
        name = "".join(part.capitalize() for part in route.function.split("_")) + "Body"
        self.model = create_model(name, __config__=ConfigDict(extra="forbid", allow_inf_nan=False), **fields)
        self._validator = self.model.__pydantic_validator__
        self._attributes = [(f"p{i}", p.name) for i, p in enumerate(route.body)]
        self._names = {p.name for p in route.body}
        # A positional route's arguments in one C call: attrgetter of several names returns their tuple.
        attributes = [attribute for attribute, _ in self._attributes]
        if not route.positional:
            self._positional = None
        elif len(attributes) == 1:
            self._positional = lambda values, get=operator.attrgetter(attributes[0]): (get(values),)
        else:
            self._positional = operator.attrgetter(*attributes) if attributes else lambda values: ()
        self._json_params = {p.name for p in route.body if p.type in ("dict", "list")}
        # dict and list params hold any JSON, which pydantic does not check for finiteness: we walk them.
        self._nested = [(f"p{i}", p.name) for i, p in enumerate(route.body) if p.type in ("dict", "list")]
        # Optional params whose default is not None: an explicit null there means the default.
        self._defaults = [(f"p{i}", p.name, p.default, isinstance(p.default, (dict, list)))
                          for i, p in enumerate(route.body) if p.optional and p.default is not None]

    def json_schema(self) -> dict:
        return self.model.model_json_schema(by_alias=True)

    def bind_json(self, body: bytes) -> tuple[tuple, dict]:
        if not body.strip():
            body = b"{}"
        try:
            values = self._validator.validate_json(body)
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
                if key in self._names:
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
            values = self._validator.validate_python(raw)
        except ValidationError as exc:
            raise self._invalid(exc) from None
        return self._arguments(values)

    def _arguments(self, values) -> tuple[tuple, dict]:
        for attribute, _name, default, mutable in self._defaults:
            if getattr(values, attribute) is None:
                setattr(values, attribute, copy.deepcopy(default) if mutable else default)
        for attribute, name in self._nested:
            found = _nested_problem(getattr(values, attribute))
            if found is not None:
                where, too_deep = found
                if too_deep:  # the param names it: a path of a hundred indexes would not help more
                    raise _too_deep(self.location, (name,))
                loc = [self.location, name, *where]
                raise InvalidRequest([{"loc": loc, "msg": "Input should be a finite number", "type": "finite_number"}])
        if self._positional is not None:
            return self._positional(values), {}
        return (), {name: getattr(values, attribute) for attribute, name in self._attributes}

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
            if error["type"] == "model_type" or error["type"] == "model_attributes_type":
                msg = "must be a JSON object with the route's params"
            else:
                msg = error["msg"]
            errors.append({"loc": loc, "msg": msg, "type": error["type"]})
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
