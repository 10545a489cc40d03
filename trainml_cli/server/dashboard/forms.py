"""The Create form: its fields checked by the platform's own rules, each problem tied to the field it is about.

The form sends what a person filled in:

    {"name": "...", "resources": {gpu_types, gpu_count, cpu_count, disk_size, max_price},
     "model": {"source": "directory" | "git" | "trainml", "directory", "source_uri", "git_ref", "model"},
     "routes": [route, ...],
     "environment": {"packages": {"pip": "scikit-learn, numpy>=1.20,<2"}, "python": "" | path | version,
                     "requirements": "" | "path/in/model", "secrets": [NAME, ...],
                     "credentials": ["aws" | "gcp" | "kaggle" | "azure" | "wasabi", ...]}}

Every check here is one the API or the CLI already makes (job names from models.py, resources from
resources.py, git URIs from sources.py, routes from routespec.py, route files from the CLI's own check, packages
and the requirements file from environment.py, the interpreter from the machine's list, secrets from the vault,
credentials from credentials.py as the CLI resolves them), called
section by section so that one mistake does not hide the next. Their sentences (`route 1 (POST /predict):
body[0].default_value: 'abc' is not a Python literal`) are for the CLI; the form reads the same problems as data
(UsageError.fields: the location in the payload and the message; a route's with its index), which `form_field`
and `route_field` turn into the form's field key (`resources.cpu_count`, `routes.0.body.0.default_value`) so the
page can show each message next to its input, whatever the wording.
The payload that is finally created goes through the API's own schema and `Jobs.create`, which checks it all
once more: the form never decides alone what is valid.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ...credentials import credential_env
from ...environment import DEFAULT_REQUIREMENTS_FILE, check_environment, check_requirements_file, split_pip_packages
from ...errors import FieldProblem, NotFound, RouteSpecError, TrainMLError, UsageError
from ...routespec import parse_routes
from .. import resources as res, sources
from ..models import check_name
from ..payload import check_scaling
from . import modelcode

SOURCES = ("upload", "directory", "git", "trainml")


@dataclass
class FieldError:
    field: str
    message: str

    def to_dict(self) -> dict:
        return {"field": self.field, "message": self.message}


class FormErrors(UsageError):
    """The form has problems; `fields` holds one FieldError per problem (422, like any usage error)."""

    def __init__(self, fields: list[FieldError]):
        super().__init__("\n".join(f.message for f in fields) or "the form is not valid",
                         details=[f.message for f in fields])
        self.fields = fields

    def to_dict(self) -> dict:
        return {**super().to_dict(), "fields": [f.to_dict() for f in self.fields]}


# The form's inputs, each named by the payload location it fills (a list's items share their list's input: one
# input holds every package, one group every secret); the Replicas input fills endpoint.replicas.
FIELDS = frozenset({"name", "replicas", "resources.gpu_types", "resources.gpu_count", "resources.cpu_count",
                    "resources.disk_size", "resources.max_price", "model.source", "model.upload", "model.directory",
                    "model.source_uri", "model.git_ref", "model.model", "environment.packages.pip",
                    "environment.python", "environment.requirements", "environment.secrets",
                    "environment.credentials"})
ALIASES = {("endpoint", "replicas"): "replicas"}


def route_field(problem: FieldProblem) -> FieldError:
    """A route-spec problem (route index, location in the route, message) -> the form's field key: route 1's
    ("body", 0, "type") -> `routes.0.body.0.type`; ("batch", "max_size") -> the route's `batch_max_size` input."""
    index, loc, message = problem.route, problem.loc, problem.message
    if index is None:
        return FieldError("routes", message)
    if not loc or loc == ("route",):
        return FieldError(f"routes.{index}", message)
    if loc[0] == "body" and len(loc) > 1:
        return FieldError(f"routes.{index}.body.{loc[1]}.{loc[2] if len(loc) > 2 else 'param'}", message)
    if loc[0] == "batch" and len(loc) > 1:
        return FieldError(f"routes.{index}.batch_{loc[1]}", message)
    return FieldError(f"routes.{index}.{loc[0]}", message)


def form_field(problem: FieldProblem, default: str) -> FieldError:
    """A problem the platform's checks located in the payload -> the form input for that location: the nearest
    enclosing location the form has an input for (`environment.packages.pip[2]` is the packages input's, and
    its message quotes the package). One the form has no input for goes beside `default`, with its location."""
    loc = problem.loc
    for end in range(len(loc), 0, -1):
        named = loc[:end]
        key = ALIASES.get(named) or (".".join(named) if all(isinstance(p, str) for p in named) else None)
        if key in FIELDS:
            return FieldError(key, problem.message)
    return FieldError(default, f"{problem.field}: {problem.message}" if loc else problem.message)


def check(platform, form: dict) -> dict:
    """The API payload the form describes; raises FormErrors listing every problem found. Creates nothing."""
    problems: list[FieldError] = []
    if not isinstance(form, dict):
        raise FormErrors([FieldError("form", "the form must be sent as a JSON object")])

    def attempt(default_field: str, step):
        try:
            return step()
        except RouteSpecError as exc:
            problems.extend(route_field(p) for p in exc.fields)
        except UsageError as exc:
            if exc.fields:  # each beside its own input (resources may have several at once)
                problems.extend(form_field(p, default_field) for p in exc.fields)
            else:
                problems.append(FieldError(default_field, exc.message))
        except TrainMLError as exc:
            problems.append(FieldError(default_field, exc.message))
        return None

    name = attempt("name", lambda: check_name(form.get("name"), "job"))

    def check_resources():
        resources = res.normalize(_resources(form.get("resources")))
        platform.jobs.backend.check_resources(resources)
        return resources

    resources = attempt("resources.gpu_types", check_resources)
    replicas = form.get("replicas")

    def check_replicas():
        scaling = check_scaling({"replicas": replicas})
        if resources is not None:
            platform.jobs.backend.check_resources(resources, scaling["replicas"])
        return scaling

    scaling = attempt("replicas", check_replicas) or {}
    routes = attempt("routes", lambda: parse_routes(form.get("routes") or []))
    model = attempt("model", lambda: _model(platform, form.get("model") or {}))
    if model:  # the files of the routes that are sound, even while another route has a problem
        sound = modelcode.sound_routes(form.get("routes"))
        attempt("routes", lambda: modelcode.check_model_code(platform, sound, model))
    environment = _environment(platform, form.get("environment"), model, attempt)
    if problems:
        raise FormErrors(problems)
    return {
        "name": name,
        "type": "endpoint",
        "resources": resources,
        "model": model,
        "endpoint": {"routes": [r.to_dict() for r in routes], "auth": form.get("auth") is True,
                     **({"replicas": scaling["replicas"]} if scaling.get("replicas") else {})},
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
            if model and model.get("upload_id") and named not in modelcode.uploaded_files(platform, model["upload_id"]):
                raise UsageError.at(("environment", "requirements"), f"{named!r} is not in the uploaded folder")
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

    secrets = raw.get("secrets")
    if secrets:  # names only; the job's endpoint gets the values, nothing else does
        environment["secrets"] = attempt("environment.secrets", lambda: platform.vault.check(secrets))
    kinds = raw.get("credentials")
    if kinds:
        # As the CLI does on the user's machine: this control plane runs there, as the user, so it finds the same
        # files (where the tools' variables point in its environment, else the default paths) and hands the
        # endpoint their paths. The CLI's wording too: the checkboxes are its --credential.
        found = attempt("environment.credentials", lambda: credential_env(kinds))
        if found:
            environment["env"] = found
    return environment


def _text(value):
    """A text field as typed, trimmed; anything else as it came, for the shared checks to name."""
    return value.strip() if isinstance(value, str) else value


def absolute_folder(text) -> Path:
    """A folder the form names on the server's machine: an absolute path (or ~), as the model folder must be."""
    text = (text or "").strip() if isinstance(text, str) else ""
    if not text:
        raise UsageError.at(("model", "directory"), "the folder with the model code is required")
    path = Path(text).expanduser()
    if not path.is_absolute():
        raise UsageError.at(("model", "directory"), f"{text!r} must be an absolute path on the server's machine")
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
            raise UsageError.at(("model", "directory"), f"{text} does not exist or is not a folder")
        if not os.access(path, os.R_OK | os.X_OK):
            raise UsageError.at(("model", "directory"), f"the control plane may not read {text}")
        return {"source_type": "local", "source_uri": str(path), "directory": str(path)}
    if source == "upload":
        upload_id = model.get("upload_id") or ""
        if not upload_id:
            raise UsageError.at(("model", "upload"), "pick a folder or drop an archive, and wait until it is uploaded")
        try:
            platform.uploads.path(upload_id)
        except (NotFound, UsageError) as exc:
            raise UsageError.at(("model", "upload"), f"{exc.message}; send the folder again") from None
        name = (model.get("upload_name") or "").strip()[:200] or "a folder"
        return {"source_type": "local", "source_uri": f"{name} (uploaded from the browser)", "upload_id": upload_id}
    if source == "git":
        return {"source_type": "git", "source_uri": sources.check_git_uri(model.get("source_uri") or ""),
                "git_ref": sources.check_git_ref((model.get("git_ref") or "").strip() or None)}
    if source == "trainml":
        ref = model.get("model") or ""
        if not ref:
            raise UsageError.at(("model", "model"), "choose a stored model (create one with `trainml model create`)")
        try:
            stored = platform.models.find(ref)
        except NotFound as exc:
            raise UsageError.at(("model", "model"), exc.message) from None
        return {"source_type": "trainml", "source_uri": stored["id"]}
    raise UsageError.at(("model", "source"), f"{source!r} is not one of {', '.join(SOURCES)}")


async def upload_directory(platform, directory: str) -> str:
    """Pack a folder on this machine as the SDK packs a client's folder, and store it as an upload; its id."""
    import asyncio

    from ...packing import pack  # the same skipping rules as `trainml job create --model-dir`

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
