"""The Create form: its fields checked by the platform's own rules, each problem tied to the field it is about.

The form sends what a person filled in:

    {"name": "...", "resources": {gpu_types, gpu_count, cpu_count, disk_size, max_price},
     "model": {"source": "directory" | "git" | "trainml", "directory", "source_uri", "git_ref", "model"},
     "routes": [route, ...],
     "environment": {"packages": {"pip": "scikit-learn, numpy>=1.20,<2"}, "python": "" | path | version,
                     "requirements": "" | "path/in/model"}}

Every check here is one the API or the CLI already makes (job names from models.py, resources from
resources.py, git URIs from sources.py, routes from routespec.py, route files from the CLI's own check, packages
and the requirements file from environment.py, the interpreter from the machine's list), called
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

from ...environment import DEFAULT_REQUIREMENTS_FILE, check_environment, check_requirements_file, split_pip_packages
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
    if match and match.group(1).startswith("environment."):
        # One input holds every package: `environment.packages.pip[2]: ...` is that input's problem (the message
        # quotes the package, so which one stays clear).
        return FieldError(re.sub(r"\[\d+\].*$", "", match.group(1)), match.group(2))
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
    environment = _environment(platform, form.get("environment"), model, attempt)
    if problems:
        raise FormErrors(problems)
    return {
        "name": name,
        "type": "endpoint",
        "resources": resources,
        "model": model,
        "endpoint": {"routes": [r.to_dict() for r in routes], "auth": form.get("auth") is True},
        "environment": environment,
    }


def _environment(platform, raw, model: dict | None, attempt) -> dict:
    """The payload's environment: packages, requirements file and interpreter, each checked on its own so one
    mistake does not hide another. The interpreter is sent only when it is not the default."""
    raw = raw if isinstance(raw, dict) else {}
    packages = raw.get("packages") if isinstance(raw.get("packages"), dict) else {}
    pip = packages.get("pip")
    # The CLI's --pip-packages format: commas between packages, and between one package's version clauses.
    pip = split_pip_packages([pip]) if isinstance(pip, str) else pip or []
    checked = attempt("environment.packages.pip", lambda: check_environment({"packages": {"pip": pip}})["pip"])
    environment: dict = {"packages": {"pip": checked or []}}

    requirements = _text(raw.get("requirements"))
    if requirements:
        def check_requirements():
            named = check_environment({"requirements": requirements})["requirements"]
            if model and model.get("directory"):  # the folder is on this machine: look for the file now
                check_requirements_file({"requirements": named}, model["directory"])
            return named

        environment["requirements"] = attempt("environment.requirements", check_requirements)

    python = _text(raw.get("python"))
    if python:
        def check_python():
            request = check_environment({"python": python})["python"]
            return None if platform.environments.interpreters.resolve(request).default else request

        chosen = attempt("environment.python", check_python)
        if chosen:
            environment["python"] = chosen
    return environment


def _text(value):
    """A text field as typed, trimmed; anything else as it came, for the shared checks to name."""
    return value.strip() if isinstance(value, str) else value


def absolute_folder(text) -> Path:
    """A folder the form names on the server's machine: an absolute path (or ~), as the model folder must be."""
    text = (text or "").strip() if isinstance(text, str) else ""
    if not text:
        raise UsageError("model.directory: the folder with the model code is required")
    path = Path(text).expanduser()
    if not path.is_absolute():
        raise UsageError(f"model.directory: {text!r} must be an absolute path on the server's machine")
    return path


def requirements_found(folder: Path) -> bool:
    """Whether a folder holds the requirements.txt that environments install when the job names no file."""
    try:
        return (folder / DEFAULT_REQUIREMENTS_FILE).is_file()
    except OSError:  # unreadable: the form's folder check says so when it matters
        return False


def _resources(raw) -> dict:
    raw = dict(raw or {})
    if isinstance(raw.get("gpu_types"), str):
        raw["gpu_types"] = [t.strip() for t in raw["gpu_types"].split(",") if t.strip()]
    return raw


def _model(platform, model: dict) -> dict:
    source = model.get("source")
    if source == "directory":
        path = absolute_folder(model.get("directory"))
        text = str(path)
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
