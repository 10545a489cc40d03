"""Request body -> function arguments, validated as FastAPI validates request bodies.

One pydantic model is built per route at start, from the route's body template, and its compiled validator
parses and checks the JSON in one step. Fields use internal names with the user's names as aliases, so a param
called `model_config` or `schema` cannot collide with pydantic's own attributes.
"""

from __future__ import annotations

import json
from typing import Any, Optional
from urllib.parse import parse_qsl

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


class InvalidRequest(Exception):
    """The request does not fit the route's body template; `errors` is FastAPI-shaped detail."""

    def __init__(self, errors: list[dict]):
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors


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
        self.model = create_model(name, __config__=ConfigDict(extra="forbid"), **fields)
        self._validator = self.model.__pydantic_validator__
        self._attributes = [(f"p{i}", p.name) for i, p in enumerate(route.body)]
        self._json_params = {p.name for p in route.body if p.type in ("dict", "list")}
        self._empty = not route.body

    def json_schema(self) -> dict:
        return self.model.model_json_schema(by_alias=True)

    def bind_json(self, body: bytes) -> tuple[tuple, dict]:
        if not body.strip():
            body = b"{}"
        try:
            values = self._validator.validate_json(body)
        except ValidationError as exc:
            raise InvalidRequest(self._errors(exc)) from None
        return self._arguments(values)

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
            raise InvalidRequest(self._errors(exc)) from None
        return self._arguments(values)

    def _arguments(self, values) -> tuple[tuple, dict]:
        if self.route.positional:
            return tuple(getattr(values, attribute) for attribute, _ in self._attributes), {}
        return (), {name: getattr(values, attribute) for attribute, name in self._attributes}

    def _errors(self, exc: ValidationError) -> list[dict]:
        errors = []
        for error in exc.errors(include_url=False, include_context=False, include_input=False):
            loc = [self.location, *error["loc"]]
            if error["type"] == "model_type" or error["type"] == "model_attributes_type":
                msg = "must be a JSON object with the route's params"
            else:
                msg = error["msg"]
            errors.append({"loc": loc, "msg": msg, "type": error["type"]})
        return errors
