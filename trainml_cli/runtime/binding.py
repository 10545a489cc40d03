"""Request body -> function arguments, validated as FastAPI validates request bodies, and stricter.

One pydantic model is built per route at start, from the route's body template, and its compiled validator
parses and checks the JSON in one step. Fields use internal names with the user's names as aliases, so a param
called `model_config` or `schema` cannot collide with pydantic's own attributes.

Stricter than FastAPI where a hostile or sloppy client could hurt the model or the endpoint:
- non-finite numbers (`NaN`, `Infinity`, `1e999`, `?x=nan`) are refused, also inside dict and list params,
  since the model's answer would then fail as JSON (500) or be silently wrong;
- an explicit `null` for an optional param means "use the default", as leaving it out does;
- a 422 lists at most MAX_ERRORS problems plus "... and N more": a body of a million unknown keys would
  otherwise get an answer ten times its size. For such a body the validator's own error list is never
  materialised (that alone held the GIL for seconds); see `_bounded`.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any, Optional
from urllib.parse import parse_qsl

import pydantic_core
from pydantic import ConfigDict, Field, ValidationError, create_model

from ..routespec import Route

ANNOTATIONS: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "dict": dict[str, Any],
    "list": list[Any],
}


MAX_ERRORS = 20  # problems listed in one 422; the rest are counted
# Past this many problems the validator's error list is not built: errors() makes a dict per problem, under
# the GIL (1.5 s for 883,071 unknown keys), which would stall the event loop's thread too.
_MANY_ERRORS = 1000
_PEEK_BYTES = 64 * 1024  # how much of a body is read again to name its first unknown keys


class InvalidRequest(Exception):
    """The request does not fit the route's body template; `errors` is FastAPI-shaped detail, at most
    MAX_ERRORS of `total` problems."""

    def __init__(self, errors: list[dict], total: int | None = None):
        total = len(errors) if total is None else total
        errors = errors[:MAX_ERRORS]
        message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        if total > len(errors):
            message += f"; ... and {total - len(errors):,} more"
        super().__init__(message)
        self.errors = errors
        self.total = total


class Binder:
    """Validates one route's requests and maps them to (args, kwargs) for the user's function."""

    def __init__(self, route: Route):
        self.route = route
        self.location = "body" if route.takes_body else "query"
        fields: dict[str, Any] = {}
        for index, param in enumerate(route.body):
            annotation = ANNOTATIONS[param.type]
            if param.optional:
                fields[f"p{index}"] = (Optional[annotation], Field(default=param.default, alias=param.name))
            else:
                fields[f"p{index}"] = (annotation, Field(alias=param.name))
        name = "".join(part.capitalize() for part in route.function.split("_")) + "Body"
        self.model = create_model(name, __config__=ConfigDict(extra="forbid", allow_inf_nan=False), **fields)
        self._validator = self.model.__pydantic_validator__
        self._lenient = None  # the same model ignoring unknown keys, built when a body has too many problems
        self._fields = fields
        self._attributes = [(f"p{i}", p.name) for i, p in enumerate(route.body)]
        self._names = {p.name for p in route.body}
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
            count = exc.error_count()
            if count > _MANY_ERRORS:
                raise self._bounded(body, count) from None
            raise InvalidRequest(self._errors(exc), count) from None
        return self._arguments(values)

    def _bounded(self, body: bytes, count: int) -> InvalidRequest:
        """The 422 for a body with very many problems, without building the validator's list of them.

        Beyond one per param (and one for a body that is not an object), problems can only be unknown keys. So
        the params' own problems come from a validator that ignores unknown keys, and the first unknown keys
        are named from the body's first 64 KiB, parsed as partial JSON.
        """
        if self._lenient is None:
            self._lenient = create_model(
                self.model.__name__, __config__=ConfigDict(extra="ignore", allow_inf_nan=False), **self._fields
            ).__pydantic_validator__
        try:
            self._lenient.validate_json(body)
            errors = []
        except ValidationError as exc:
            errors = self._errors(exc)
        try:
            head = pydantic_core.from_json(body[:_PEEK_BYTES], allow_partial=True)
        except ValueError:
            head = {}
        if isinstance(head, dict):
            for key in head:
                if len(errors) >= MAX_ERRORS:
                    break
                if key not in self._names:
                    errors.append({"loc": [self.location, key], "msg": "Extra inputs are not permitted",
                                   "type": "extra_forbidden"})
        return InvalidRequest(errors, count)

    def bind_query(self, query_string: bytes) -> tuple[tuple, dict]:
        """GET/DELETE: the same template from the query string; dict and list params are JSON text."""
        raw: dict[str, Any] = {}
        errors = []
        for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
            if key in self._json_params:
                try:
                    value = json.loads(value)
                except ValueError:
                    errors.append({"loc": ["query", key], "msg": "must be JSON text", "type": "json_invalid"})
            raw[key] = value
        if errors:
            raise InvalidRequest(errors)
        try:
            values = self._validator.validate_python(raw)
        except ValidationError as exc:
            raise InvalidRequest(self._errors(exc), exc.error_count()) from None
        return self._arguments(values)

    def _arguments(self, values) -> tuple[tuple, dict]:
        for attribute, name, default, mutable in self._defaults:
            if getattr(values, attribute) is None:
                setattr(values, attribute, copy.deepcopy(default) if mutable else default)
        for attribute, name in self._nested:
            where = _non_finite(getattr(values, attribute))
            if where is not None:
                loc = [self.location, name, *where]
                raise InvalidRequest([{"loc": loc, "msg": "Input should be a finite number", "type": "finite_number"}])
        if self.route.positional:
            return tuple(getattr(values, attribute) for attribute, _ in self._attributes), {}
        return (), {name: getattr(values, attribute) for attribute, name in self._attributes}

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


def _non_finite(value, _isfinite=math.isfinite) -> list | None:
    """Where in a JSON value a float is inf or nan (a path of keys and indexes), or None. Iterative: a deeply
    nested body must not exhaust the stack."""
    stack = [((), value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, float):
            if not _isfinite(item):
                return list(path)
        elif isinstance(item, dict):
            stack.extend(((*path, k), v) for k, v in item.items() if not isinstance(v, (str, int)))
        elif isinstance(item, list):
            stack.extend(((*path, i), v) for i, v in enumerate(item) if not isinstance(v, (str, int)))
    return None
