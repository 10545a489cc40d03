"""The job payload, as trainML shapes it, checked and completed before anything is created.

    {name, type: "endpoint", resources: {gpu_types, gpu_count, cpu_count, disk_size, max_price},
     model: {source_type: local|git|trainml, source_uri, git_ref?, upload_id?},
     endpoint: {routes: [...], max_concurrency?, max_queue?, timeout?, replicas?, min_replicas?, max_replicas?,
                capture?, capture_max_bytes?, capture_size?, upscale_delay?, downscale_delay?, target_ongoing?,
                ray_actor_options?},
     environment: {env: [{key, value}], packages: {pip: [...]}, requirements?, python?, type?}}

`check_job` returns the job's spec with defaults filled in (what the job record keeps), or raises a UsageError
naming the field (422): routes through the shared route spec (one line per route and field), resources
against the price table and this machine's GPUs, the model source (an existing upload, a safe git URI, a
stored model), and the environment (variable names, no overriding what the platform sets; packages and the
interpreter through the shared environment module, the interpreter found on this machine; no requirement
leading out of the model folder, where the model's files are at hand: localpaths.py).
"""

from __future__ import annotations

import re

from .. import frameworks, localpaths
from ..actoroptions import check_actor_options
from ..environment import DEFAULT_REQUIREMENTS_FILE, check_environment
from ..errors import UsageError
from ..launchspec import CAPTURE_OPTIONS
from ..limits import MAX_CONCURRENCY, MAX_QUEUE
from ..replicaspec import check_scaling
from ..routespec import parse_routes
from . import archives, resources as res, sources
from .interpreters import Interpreters
from .models import Models

ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PLATFORM_ENV = ("CUDA_VISIBLE_DEVICES",)  # set by the platform from the job's GPUs; a job may not override it


def check_job(payload: dict, backend, uploads: archives.Uploads, models: Models,
              interpreters: Interpreters, carried_model: dict | None = None) -> dict:
    """The payload's spec with defaults filled in; raises UsageError (422) naming the field. Creates nothing.
    `carried_model`: the model of the revision an update starts from (already checked), when it names none."""
    if payload.get("type", "endpoint") != "endpoint":
        raise UsageError.at(("type",), f"{payload.get('type')!r} is not supported; this platform runs 'endpoint' jobs")
    endpoint = dict(payload.get("endpoint") or {})
    routes = parse_routes(endpoint.get("routes") or [])
    for key, high, why in (("max_concurrency", MAX_CONCURRENCY, "threads per worker"),
                           ("max_queue", MAX_QUEUE, "requests waiting per worker")):
        value = endpoint.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < (key == "max_concurrency")):
            raise UsageError.at(("endpoint", key),
                                f"{value!r} must be a whole number of at least {int(key == 'max_concurrency')}")
        if value is not None and value > high:
            raise UsageError.at(("endpoint", key), f"{value} is more than {high:,} ({why})")
    timeout = endpoint.get("timeout")
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise UsageError.at(("endpoint", "timeout"), f"{timeout!r} must be a positive number of seconds")
    capture = check_capture(endpoint)
    auth = endpoint.get("auth", False)
    if not isinstance(auth, bool):
        raise UsageError.at(("endpoint", "auth"), f"{auth!r} must be true or false")
    resources = res.normalize(payload.get("resources"))
    scaling = check_scaling(endpoint)
    actor_options = check_actor_options(endpoint.get("ray_actor_options"))
    backend.check_resources(resources, scaling["replicas"])  # what this backend can ever give (GPUs, CPUs here)
    backend.check_features({**scaling, "ray_actor_options": actor_options}, auth, payload.get("environment") or {})
    env = []
    for i, item in enumerate((payload.get("environment") or {}).get("env") or []):
        key, value = item.get("key"), item.get("value")
        if not isinstance(key, str) or not ENV_KEY.match(key):
            raise UsageError.at(("environment", "env", i, "key"),
                                f"{key!r} must be letters, digits and _, not starting with a digit")
        if key in PLATFORM_ENV:
            raise UsageError.at(("environment", "env", i, "key"), f"{key} is set by the platform from the job's GPUs")
        if not isinstance(value, str):
            raise UsageError.at(("environment", "env", i, "value"), f"{value!r} must be a string")
        env.append({"key": key, "value": value})
    build = check_environment(payload.get("environment"))
    if carried_model is not None:
        model = carried_model
    else:
        model = _check_model(payload.get("model") or {}, uploads, models)
        _check_local_paths(model, build, uploads, models)
    return {
        "type": "endpoint",
        "resources": resources,
        "model": model,
        "endpoint": {
            "routes": [r.to_dict() for r in routes],
            "max_concurrency": endpoint.get("max_concurrency"),
            "max_queue": endpoint.get("max_queue"),
            "timeout": timeout,
            **capture,
            "auth": auth,  # the key itself is a secret of the job's, never in its spec (endpointkeys.py)
            **scaling,
            **({"ray_actor_options": actor_options} if actor_options else {}),
        },
        "environment": {"env": env, "packages": {"pip": build["pip"]}, "requirements": build["requirements"],
                        "python": build["python"], "type": build["type"],
                        **({"framework_packages": build["framework_packages"]} if build["type"] else {}),
                        **_interpreter(build, interpreters)},
    }


def check_capture(endpoint: dict) -> dict:
    """The capture settings given ({capture, capture_max_bytes, capture_size}: launchspec.OPTIONS' rows and bounds),
    only those given, so that a spec without them stays what it was."""
    given = {}
    for option in CAPTURE_OPTIONS:
        value = endpoint.get(option.dest)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                option.kind is int and not isinstance(value, int)):
            raise UsageError.at(("endpoint", option.dest), f"{value!r} must be a {option.kind.__name__}")
        problem = option.problem(value)
        if problem:
            raise UsageError.at(("endpoint", option.dest), problem.replace(option.flag + ": ", ""))
        given[option.dest] = value
    return given


def _interpreter(build: dict, interpreters: Interpreters) -> dict:
    """{interpreter: {path, version} or None (the default), note?}: `python` must exist here; a trainML
    environment type picks its Python version when this machine has it, else the default with a note."""
    chosen, note = None, None
    if build["python"]:
        chosen = interpreters.resolve(build["python"])
        if build["type"]:
            note = f"environment {build['type']}: running on Python {chosen.version}, as python asks"
    elif build["type"]:
        default = interpreters.default()
        wanted = frameworks.python_of(build["type"])
        try:
            chosen = interpreters.resolve(wanted) if wanted else None
        except UsageError:
            chosen = None
        if chosen is not None:
            note = f"environment {build['type']}: running on Python {chosen.version} ({chosen.path})"
        else:
            asked = f"asks for Python {wanted}, which this machine lacks" if wanted else "names no Python version"
            note = (f"environment {build['type']} {asked}; running on the default Python {default.version} "
                    f"({default.path})")
    if note is not None:
        note += _adds(build)
    if chosen is not None and chosen.default:
        chosen = None  # the default interpreter needs no environment of its own
    return {"interpreter": {"path": chosen.path, "version": chosen.version} if chosen else None, "note": note}


def _adds(build: dict) -> str:
    """What the environment name adds to the job's packages, for the note (the job log, `job create`)."""
    if frameworks.find(build["type"]) is None:
        return "; not one of trainML's environment names, so it adds no packages"
    text = ("; adds " + ", ".join(build["framework_packages"])) if build["framework_packages"] else "; adds nothing"
    if build["replaced"]:
        text += f" (the job's own pins replace {', '.join(build['replaced'])})"
    return text


def _check_local_paths(model: dict, build: dict, uploads: archives.Uploads, models: Models) -> None:
    """Refuse a requirement leading out of the model folder now, before anything is created, when the model's
    files are at hand: an upload's requirements files (kept as it was received; an upload holds no links, so
    the paths are checked as written) or a stored model's folder. A git model is checked once it is cloned."""
    if model["source_type"] == "local":
        texts = uploads.texts(model["upload_id"])
        if texts is None:
            return
        file = build["requirements"] or (DEFAULT_REQUIREMENTS_FILE if DEFAULT_REQUIREMENTS_FILE in texts else None)
        # A file not kept (large, or not .txt/.in) reads as empty here: the job checks its own copy in full.
        localpaths.references(file, build["pip"], lambda name, where: texts.get(name, ""))
    elif model["source_type"] == "trainml":
        folder = models.path(model["model_id"])
        file = build["requirements"] or (DEFAULT_REQUIREMENTS_FILE if (folder / DEFAULT_REQUIREMENTS_FILE).is_file()
                                         else None)
        if folder.is_dir():
            localpaths.local_digest(folder, file, build["pip"], hash_contents=False)


def _check_model(model: dict, uploads: archives.Uploads, models: Models) -> dict:
    kind, uri = model.get("source_type"), model.get("source_uri")
    if kind == "local":
        upload_id = model.get("upload_id")
        if not upload_id:
            raise UsageError.at(("model", "upload_id"),
                                "required for source_type local (POST the packed folder to /api/uploads)")
        uploads.path(upload_id)
        return {"source_type": kind, "source_uri": uri or "", "upload_id": upload_id}
    if kind == "git":
        return {"source_type": kind, "source_uri": sources.check_git_uri(uri),
                "git_ref": sources.check_git_ref(model.get("git_ref"))}
    if kind == "trainml":
        if not uri:
            raise UsageError.at(("model", "source_uri"),
                                "the id or name of a stored model is required for source_type trainml")
        stored = models.find(uri)
        return {"source_type": kind, "source_uri": uri, "model_id": stored["id"]}
    raise UsageError.at(("model", "source_type"), f"{kind!r} is not one of local, git, trainml")
