"""The Create form: its fields checked by the platform's own rules, each problem tied to the field it is about.

The form sends what a person filled in:

    {"name": "...", "resources": {gpu_types, gpu_count, cpu_count, disk_size, max_price},
     "model": {"source": "directory" | "git" | "trainml", "directory", "source_uri", "git_ref", "model"},
     "routes": [route, ...]}

Every check here is one the API or the CLI already makes (job names from models.py, resources from
resources.py, git URIs from sources.py, routes from routespec.py, route files from the CLI's own check), called
section by section so that one mistake does not hide the next. Their messages name a route and a field
(`route 1 (POST /predict): body[0].default_value: 'abc' is not a Python literal`); `field_of` turns that into
the form's field key (`routes.0.body.0.default_value`) so the page can show each message next to its input.
The payload that is finally created goes through the API's own schema and `Jobs.create`, which checks it all
once more: the form never decides alone what is valid.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ...errors import NotFound, RouteSpecError, TrainMLError, UsageError
from ...routespec import parse_routes
from .. import resources as res
from .. import sources
from ..models import check_name

SOURCES = ("directory", "git", "trainml")
_ROUTE_FIELD = re.compile(r"^(verb|path|file|function|positional|body|batch)(?:\[(\d+)\](?:\.(\w+))?|\.(\w+))?: (.*)$", re.S)
_PREFIX = re.compile(r"^([a-z_]+(?:\.[a-z_]+)*(?:\[\d+\](?:\.[a-z_]+)?)?): (.*)$", re.S)


@dataclass
class FieldError:
    field: str
    message: str

    def to_dict(self) -> dict:
        return {"field": self.field, "message": self.message}


class FormErrors(UsageError):
    """The form has problems; `fields` holds one FieldError per problem (422, like any usage error)."""

    def __init__(self, fields: list[FieldError]):
        super().__init__("\n".join(f.message for f in fields) or "the form is not valid", details=[f.message for f in fields])
        self.fields = fields

    def to_dict(self) -> dict:
        return {**super().to_dict(), "fields": [f.to_dict() for f in self.fields]}


def route_fields(problem: str, raws: list) -> FieldError:
    """`route 2 (POST /p): body[0].type: ...` -> FieldError("routes.1.body.0.type", "...")."""
    match = re.match(r"^route (\d+)", problem)
    if not match:
        return FieldError("routes", problem)
    index = int(match.group(1)) - 1
    raw = raws[index] if 0 <= index < len(raws) and isinstance(raws[index], dict) else {}
    rest = problem[match.end():]
    label = f" ({str(raw.get('verb', '')).upper()} {raw.get('path', '')})"
    if rest.startswith(label):  # the label's path may itself hold ': ', so strip it by what it must be
        rest = rest[len(label):]
    rest = rest[2:] if rest.startswith(": ") else rest
    found = _ROUTE_FIELD.match(rest)
    if not found:
        return FieldError(f"routes.{index}", rest)
    part, param, attribute, batch_field, message = found.groups()
    if part == "batch" and batch_field:  # batch.max_size -> the route's "batch_max_size" input
        return FieldError(f"routes.{index}.batch_{batch_field}", message)
    if part != "body" or param is None:
        return FieldError(f"routes.{index}.{part}", message)
    return FieldError(f"routes.{index}.body.{param}.{attribute or 'param'}", message)


def field_of(error: TrainMLError, default: str) -> FieldError:
    """A usage error from the platform's checks (`resources.cpu_count: ...`) as a form field and message."""
    text = error.message
    if text.startswith("job name: "):
        return FieldError("name", text[len("job name: "):])
    match = _PREFIX.match(text)
    if match and (match.group(1).startswith(("resources.", "model.")) or match.group(1) == "name"):
        return FieldError(match.group(1), match.group(2))
    return FieldError(default, text)


def check(platform, form: dict) -> dict:
    """The API payload the form describes; raises FormErrors listing every problem found. Creates nothing."""
    problems: list[FieldError] = []
    if not isinstance(form, dict):
        raise FormErrors([FieldError("form", "the form must be sent as a JSON object")])

    def attempt(default_field: str, step):
        try:
            return step()
        except RouteSpecError as exc:
            raws = form.get("routes") if isinstance(form.get("routes"), list) else []
            problems.extend(route_fields(p, raws) for p in exc.problems)
        except TrainMLError as exc:
            problems.append(field_of(exc, default_field))
        return None

    name = attempt("name", lambda: check_name(form.get("name"), "job"))

    def check_resources():
        resources = res.normalize(_resources(form.get("resources")))
        platform.pool.check(resources)
        return resources

    resources = attempt("resources.gpu_types", check_resources)
    routes = attempt("routes", lambda: parse_routes(form.get("routes") or []))
    model = attempt("model", lambda: _model(platform, form.get("model") or {}))
    if routes and model and model.get("directory"):
        from ...routespec import check_route_files

        attempt("routes", lambda: check_route_files(routes, model["directory"]))
    if problems:
        raise FormErrors(problems)
    return {
        "name": name,
        "type": "endpoint",
        "resources": resources,
        "model": model,
        "endpoint": {"routes": [r.to_dict() for r in routes]},
    }


def _resources(raw) -> dict:
    raw = dict(raw or {})
    if isinstance(raw.get("gpu_types"), str):
        raw["gpu_types"] = [t.strip() for t in raw["gpu_types"].split(",") if t.strip()]
    return raw


def _model(platform, model: dict) -> dict:
    source = model.get("source")
    if source == "directory":
        text = (model.get("directory") or "").strip()
        if not text:
            raise UsageError("model.directory: the folder with the model code is required")
        path = Path(text).expanduser()
        if not path.is_absolute():
            raise UsageError(f"model.directory: {text!r} must be an absolute path on the server's machine")
        if not path.is_dir():
            raise UsageError(f"model.directory: {text} does not exist or is not a folder")
        if not os.access(path, os.R_OK | os.X_OK):
            raise UsageError(f"model.directory: the control plane may not read {text}")
        return {"source_type": "local", "source_uri": str(path), "directory": str(path)}
    if source == "git":
        return {"source_type": "git", "source_uri": sources.check_git_uri(model.get("source_uri") or ""),
                "git_ref": sources.check_git_ref((model.get("git_ref") or "").strip() or None)}
    if source == "trainml":
        ref = model.get("model") or ""
        if not ref:
            raise UsageError("model.model: choose a stored model (create one with `trainml model create`)")
        try:
            stored = platform.models.find(ref)
        except NotFound as exc:
            raise UsageError(f"model.model: {exc.message}") from None
        return {"source_type": "trainml", "source_uri": stored["id"]}
    raise UsageError(f"model.source: {source!r} is not one of {', '.join(SOURCES)}")


async def upload_directory(platform, directory: str) -> str:
    """Pack a folder on this machine as the SDK packs a client's folder, and store it as an upload; its id."""
    import asyncio

    from ...sdk.packing import pack  # the same skipping rules as `trainml job create --model-dir`

    archive = await asyncio.to_thread(pack, directory)

    async def chunks():
        while True:
            block = await asyncio.to_thread(archive.read, 1024 * 1024)
            if not block:
                return
            yield block

    try:
        upload = await platform.uploads.receive(chunks())
    finally:
        archive.close()
    return upload["id"]
