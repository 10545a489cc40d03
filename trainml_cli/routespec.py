"""The route spec: how a route is written, checked and understood, shared by the CLI, SDK, server and runtime.

A route maps an HTTP verb and path to a function in a file of the user's model code, with a body template that
says which parameters the function takes. The JSON Schema below catches the shape; `parse_routes` then adds
the checks a schema cannot express (uniqueness, reserved paths, safe module paths; each param in paramspec.py) and
returns frozen `Route` objects. Every problem is reported as one line naming the route and the field:

    route 2 (POST /predict): body[0].type: 'string' is not one of str, int, float, bool, dict, list, file

This module must stay light: the CLI and the runtime import it on every start, so jsonschema is imported only
for a route that schemafit.py cannot vouch for.
"""

from __future__ import annotations

import json
import keyword
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import RouteSpecError, UsageError
from .limits import MAX_BATCH_SIZE, MAX_BATCH_WAIT_MS
from .paramspec import PARAM_SCHEMA, Param, build_params, example_value
from .schemafit import fits

VERBS = ("GET", "POST", "PUT", "PATCH", "DELETE")
BODY_VERBS = frozenset({"POST", "PUT", "PATCH"})  # the others take the template from the query string
# Served by the runtime itself on every endpoint.
RESERVED_PATHS = ("/ping", "/docs", "/openapi.json", "/metrics")

_TOKEN = r"[A-Za-z0-9!#$&^_.+-]+"
# Ends with (?!.) over any character, not $: Python's $ matches before a last newline, which a header must not hold.
MEDIA_TYPE = rf'^{_TOKEN}/{_TOKEN}( *; *{_TOKEN}=({_TOKEN}|"[^"\\\x00-\x1f]*"))*(?![\s\S])'

BATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["max_size"],
    "properties": {
        "max_size": {"type": "integer", "minimum": 1, "maximum": MAX_BATCH_SIZE},
        "max_wait_ms": {"type": "number", "minimum": 0, "maximum": MAX_BATCH_WAIT_MS, "default": 0},
    },
}

ROUTE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "trainML endpoint route",
    "type": "object",
    "additionalProperties": False,
    "required": ["verb", "path", "file", "function"],
    "properties": {
        "verb": {"type": "string", "enum": list(VERBS)},
        "path": {"type": "string", "pattern": r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$"},
        "file": {"type": "string", "minLength": 1},
        "function": {"type": "string", "minLength": 1},
        "positional": {"type": "boolean", "default": False},
        "body": {"type": "array", "items": PARAM_SCHEMA, "default": []},
        "batch": {"oneOf": [{"type": "null"}, BATCH_SCHEMA]},
        # The type of a `bytes` answer (else application/octet-stream); sent as a header, so no CR or LF.
        "content_type": {"type": "string", "maxLength": 255, "pattern": MEDIA_TYPE},
    },
}

ROUTES_SCHEMA: dict[str, Any] = {"type": "array", "items": ROUTE_SCHEMA}


@dataclass(frozen=True)
class Batch:
    """A batched route: the function gets up to `max_size` requests at once, as one list per param."""

    max_size: int
    max_wait_ms: float = 0

    def to_dict(self) -> dict:
        return {"max_size": self.max_size, "max_wait_ms": self.max_wait_ms}


@dataclass(frozen=True)
class Route:
    verb: str
    path: str
    file: str
    function: str
    positional: bool = False
    body: tuple[Param, ...] = field(default_factory=tuple)
    batch: Batch | None = None
    content_type: str | None = None

    @property
    def label(self) -> str:
        return f"{self.verb} {self.path}"

    @property
    def takes_body(self) -> bool:
        return self.verb in BODY_VERBS

    @property
    def module_parts(self) -> tuple[str, ...]:
        return module_parts(self.file)

    @property
    def module_name(self) -> str:
        return ".".join(self.module_parts)

    @property
    def relative_file(self) -> str:
        return "/".join(self.module_parts) + ".py"

    def source_file(self, model_dir: str | os.PathLike) -> Path:
        """The route's file inside `model_dir`; refuses one that a link leads out of the directory."""
        root = Path(model_dir).resolve()
        target = (root / self.relative_file).resolve()
        if root != target and root not in target.parents:
            raise UsageError(f"route {self.label}: file '{self.file}' resolves outside the model directory")
        return target

    def example_body(self) -> dict:
        """A body with a plausible value of the right type for every param (for curl examples)."""
        return {p.name: example_value(p) for p in self.body}

    def to_dict(self) -> dict:
        data = {
            "verb": self.verb,
            "path": self.path,
            "file": self.file,
            "function": self.function,
            "positional": self.positional,
            "body": [p.to_dict() for p in self.body],
        }
        if self.batch is not None:  # absent rather than null, so unbatched routes read as they always did
            data["batch"] = self.batch.to_dict()
        if self.content_type is not None:
            data["content_type"] = self.content_type
        return data


def module_parts(file: str) -> tuple[str, ...]:
    """`predict`, `predict.py`, `pkg/predict` -> the module path inside the model dir. Raises ValueError."""
    text = file[:-3] if file.endswith(".py") else file
    if text.startswith("/") or "\\" in text:
        raise ValueError("must be a path inside the model directory, not an absolute path")
    parts = tuple(text.replace(".", "/").split("/")) if "/" not in text else tuple(text.split("/"))
    for part in parts:
        if part in ("", ".", ".."):
            raise ValueError("must be a path inside the model directory (no '..', no empty parts)")
        if not part.isidentifier() or keyword.iskeyword(part):
            raise ValueError(f"'{part}' is not a valid Python module name")
    return parts


def _schema_problem(error) -> tuple[tuple, str]:
    """Turn one jsonschema error into (location in the route, message) in our words."""
    loc = tuple(error.absolute_path)
    last = loc[-1] if loc else None
    validator = error.validator
    if validator == "enum":
        choices = ", ".join(str(c) for c in error.validator_value)
        return loc, f"{error.instance!r} is not one of {choices}"
    if validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return (*loc, missing), "is required"
    if validator == "additionalProperties":
        allowed = ", ".join(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return loc or ("route",), f"unknown field {', '.join(repr(e) for e in extra)} (allowed: {allowed})"
    if validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        names = {"string": "a string", "boolean": "true or false", "array": "a list", "object": "an object",
                 "integer": "a whole number", "number": "a number"}
        if last == "default_value":
            return loc, (f"{json.dumps(error.instance)} is not a string: write the Python literal as a string, "
                         f"e.g. \"{error.instance!r}\"")
        return loc, f"{error.instance!r} is not {names.get(expected, expected)}"
    if validator == "pattern" and loc == ("path",):
        return loc, f"{error.instance!r} must start with '/' and use only URL path characters"
    if validator in ("pattern", "maxLength") and loc == ("content_type",):
        return loc, f"{error.instance!r} is not a media type like image/png or text/plain; charset=utf-8"
    if validator == "minLength":
        return loc, "must not be empty"
    if validator in ("minimum", "maximum"):
        word = "less" if validator == "minimum" else "more"
        return loc, f"{error.instance!r} is {word} than {error.validator_value} (allowed: {_range(last)})"
    if validator == "oneOf" and loc == ("batch",):
        return _batch_problem(error.instance)
    return loc, error.message


def _range(key) -> str:
    bounds = BATCH_SCHEMA["properties"].get(key, {})
    return f"{bounds.get('minimum')} to {bounds.get('maximum')}" if bounds else "see the route spec"


def _batch_problem(batch: Any) -> tuple[tuple, str]:
    """The batch field failed oneOf (null or an object): find the one thing wrong, in our words."""
    from jsonschema import Draft202012Validator

    if not isinstance(batch, dict):
        return ("batch",), f"{batch!r} is not an object like {{\"max_size\": 32, \"max_wait_ms\": 5}}"
    errors = sorted(Draft202012Validator(BATCH_SCHEMA).iter_errors(batch),
                    key=lambda e: list(map(str, e.absolute_path)))
    if not errors:
        return ("batch",), "is not valid"
    loc, message = _schema_problem(errors[0])
    if loc == ("route",):
        loc = ()
    return ("batch", *loc), message


def route_label(index: int, raw: Any) -> str:
    label = f"route {index + 1}"
    if isinstance(raw, dict) and isinstance(raw.get("verb"), str) and isinstance(raw.get("path"), str):
        label += f" ({raw['verb'].upper()} {raw['path']})"
    return label


def _normalize(raw: Any) -> Any:
    # Verbs are case-insensitive in practice; accept "post" rather than make users guess.
    if isinstance(raw, dict) and isinstance(raw.get("verb"), str):
        raw = {**raw, "verb": raw["verb"].upper()}
    return raw


def parse_routes(raws: Iterable[Any]) -> list[Route]:
    """Validate raw route dicts and build Routes; raises RouteSpecError listing every problem found."""
    validator = None  # jsonschema, imported only for a route that may not fit (schemafit.py)
    routes: list[Route] = []
    found: list[tuple[int | None, str, tuple, str]] = []  # (route index, its label, location in it, message)
    seen: dict[tuple[str, str], int] = {}
    raws = list(raws)
    if not raws:
        raise RouteSpecError.of([(None, "", (), "at least one route is required")])
    for index, raw in enumerate(raws):
        raw = _normalize(raw)
        label = route_label(index, raw)
        if not isinstance(raw, dict):
            found.append((index, label, (), f"must be a JSON object, got {type(raw).__name__}"))
            continue
        errors = []
        if not fits(ROUTE_SCHEMA, raw):
            if validator is None:
                from jsonschema import Draft202012Validator

                validator = Draft202012Validator(ROUTE_SCHEMA)
            errors = sorted(validator.iter_errors(raw), key=lambda e: list(map(str, e.absolute_path)))
        if errors:
            reported: set[tuple] = set()
            for error in errors:
                where, message = _schema_problem(error)
                if where in reported:  # one message per field: `"verb": 5` is not a string, so not a verb either
                    continue
                reported.add(where)
                found.append((index, label, where, message))
            # The fields the schema passed are still checked: one look shows every problem of the route.
            _check_sound_fields(raw, {where[0] for where in reported if where},
                                lambda field, message, i=index, name=label: found.append((i, name, field, message)))
            continue
        route_problems: list[tuple[tuple, str]] = []
        # this route's list bound as a default, so the callback can never append to a later route's
        route = _build_route(raw, lambda field, message, into=route_problems: into.append((field, message)))
        key = (raw["verb"], raw["path"])
        if key in seen:
            route_problems.append((("path",),
                                   f"{raw['verb']} {raw['path']} is already served by route {seen[key] + 1}"))
        else:
            seen[key] = index
        found.extend((index, label, field, message) for field, message in route_problems)
        if route is not None and not route_problems:
            routes.append(route)
    if found:
        raise RouteSpecError.of(found)
    return routes


def _check_sound_fields(raw: dict, faulty: set, problem) -> None:
    """The checks beyond the schema, on the fields of a route the schema found nothing wrong with."""
    for key, check in (("file", module_parts), ("function", _check_function)):
        value = raw.get(key)
        if key not in faulty and isinstance(value, str) and value:
            try:
                check(value)
            except ValueError as exc:
                problem((key,), f"{value!r} {exc}")
    body = raw.get("body", [])
    if "body" not in faulty and isinstance(body, list):
        build_params(body, raw.get("positional") is True, problem)


def _check_function(function: str) -> None:
    if not function.isidentifier() or keyword.iskeyword(function):
        raise ValueError("is not a valid Python function name")


def _build_route(raw: dict, problem) -> Route | None:
    if raw["path"].rstrip("/") in RESERVED_PATHS or raw["path"] in RESERVED_PATHS:
        problem(("path",), f"{raw['path']} is reserved (the endpoint serves {', '.join(RESERVED_PATHS)} itself)")
    try:
        module_parts(raw["file"])
    except ValueError as exc:
        problem(("file",), f"{raw['file']!r} {exc}")
    function = raw["function"]
    try:
        _check_function(function)
    except ValueError as exc:
        problem(("function",), f"{function!r} {exc}")
    positional = raw.get("positional", False)
    params = build_params(raw.get("body", []), positional, problem)
    for i, param in enumerate(params):
        if param.type == "file" and raw["verb"] not in BODY_VERBS:
            problem(("body", i, "type"), f"a file param needs a body: use POST, PUT or PATCH, not {raw['verb']}")
    batch = None
    if raw.get("batch") is not None:
        batch = Batch(int(raw["batch"]["max_size"]), float(raw["batch"].get("max_wait_ms", 0)))
        if not params:  # the function learns how many requests it got from the length of its columns
            problem(("batch",),
                    "a batched route needs at least one body param (each arrives as a list, one item per request)")
    return Route(raw["verb"], raw["path"], raw["file"], function, positional, tuple(params), batch,
                 raw.get("content_type"))


def parse_route_json(text: str, index: int = 0) -> dict:
    """Parse one route given as JSON text; a syntax error shows the text and where it broke."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        pointer = " " * exc.colno + "^"
        line = text.splitlines()[exc.lineno - 1] if text.splitlines() else text
        raise UsageError(
            f"route {index + 1}: not valid JSON: {exc.msg} at line {exc.lineno} column "
            f"{exc.colno}\n  {line}\n {pointer}"
        ) from None
    if not isinstance(value, dict):
        raise UsageError(f"route {index + 1}: must be a JSON object, got {type(value).__name__}")
    return value


def read_route_file(path: str | os.PathLike) -> list[dict]:
    """Read a JSON or YAML file holding a list of routes (or one route)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"route file {path}: {exc.strerror or exc}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UsageError(f"route file {path}: not valid YAML: {exc}") from None
    elif not text.strip():
        data = None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"route file {path}: not valid JSON: {exc.msg} at line "
                             f"{exc.lineno} column {exc.colno}") from None
    if data is None:  # an empty file (JSON or YAML) holds no routes, as `[]` does: the caller says so once
        return []
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise UsageError(f"route file {path}: must hold a list of routes")
    return data


def routes_to_json(routes: Iterable[Route]) -> str:
    return json.dumps([r.to_dict() for r in routes])


def check_route_files(routes: Iterable[Route], model_dir: str | os.PathLike) -> None:
    """Every route's file is in the model dir (and no link leads out of it); RouteSpecError listing the rest.

    Checked by the CLI and SDK before a local folder is uploaded, and by the runtime before it imports anything.
    """
    folder = Path(model_dir)
    if not folder.is_dir():
        raise UsageError(f"model folder {model_dir} does not exist or is not a folder")
    found = []
    for index, route in enumerate(routes):
        label = f"route {index + 1} ({route.label})"
        try:
            path = route.source_file(folder)
        except UsageError:
            found.append((index, label, ("file",), f"{route.file!r} resolves outside the model directory"))
            continue
        if not path.is_file():
            found.append((index, label, ("file",),
                          f"{route.file!r} not found in {model_dir} (looked for {route.relative_file})"))
    if found:
        raise RouteSpecError.of(found)
