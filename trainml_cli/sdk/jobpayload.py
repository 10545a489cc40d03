"""What `jobs.create` and `job.update` send: a job's payload from trainML's arguments, checked here before
anything is sent (routes, environment, scaling), with a local model folder uploaded first.

trainML's arguments for training jobs (`worker_commands`, `workers`, `data`, checkpoints) are taken when empty,
as trainML's own defaults send them, and refused with a message otherwise.
"""

from __future__ import annotations

from pathlib import Path

from ..actoroptions import check_actor_options
from ..credentials import credential_env
from ..environment import check_environment, check_requirements_file
from ..errors import UsageError
from ..replicaspec import check_scaling
from ..routespec import check_route_files, parse_routes
from .models import git_uri

_EMPTY = (None, [], "", {}, ())


async def create_payload(client, name: str, type: str, *, model: dict | None, endpoint: dict | None,
                         environment: dict | None, python: str | None, resources: dict, unused: dict) -> dict:
    """The POST /api/jobs body; `unused`: trainML's arguments that mean nothing for an endpoint."""
    _refuse_unused(unused, model or {})
    resources = dict(resources)
    gpu_type = resources.pop("gpu_type", None) or resources.pop("gpu_type_id", None)
    if gpu_type is not None and not resources.get("gpu_types"):
        resources["gpu_types"] = [gpu_type]
    if isinstance(resources.get("gpu_types"), str):
        resources["gpu_types"] = [resources["gpu_types"]]
    elif resources.get("gpu_types") is not None:
        resources["gpu_types"] = list(resources["gpu_types"])
    if resources.get("gpu_types") == []:  # trainML's default: none asked for
        del resources["gpu_types"]
    environment = dict(environment or {})
    if python is not None:
        environment["python"] = python
    kinds = [*(environment.pop("worker_key_types", None) or []), *(environment.pop("credentials", None) or [])]
    if kinds:  # the user's own credential files, found here, handed over by path (credentials.py)
        found = credential_env(kinds, "environment.worker_key_types", ("environment", "worker_key_types"))
        environment["env"] = list(environment.get("env") or []) + found
    check_environment(environment)  # refused packages and malformed requirements, before anything is sent
    endpoint = dict(endpoint or {})
    routes = parse_routes(endpoint.get("routes") or [])  # RouteSpecError before anything is sent
    check_scaling(endpoint)  # replicas, autoscaling settings and Ray's replica options: UsageError before sending
    check_actor_options(endpoint.get("ray_actor_options"))
    model = dict(model or {})
    model.pop("checkpoints", None)  # trainML's default []; anything in it was refused above
    if model.get("source_type") == "local":
        folder = Path(model.get("source_uri") or "").expanduser()
        check_route_files(routes, folder)
        check_requirements_file(environment, folder)
        upload = await client.upload(folder)
        model = {"source_type": "local", "source_uri": str(folder.resolve()), "upload_id": upload["id"]}
    elif model.get("source_type") == "git":
        model["source_uri"] = git_uri(model.get("source_uri"))
    payload = {"name": name, "type": type, "model": model, "endpoint": endpoint}
    if resources:
        payload["resources"] = resources
    if environment:
        payload["environment"] = environment
    return payload


def _refuse_unused(unused: dict, model: dict) -> None:
    """trainML arguments that mean nothing for a local endpoint are accepted when empty, refused otherwise."""
    data = unused.pop("data", None)
    if isinstance(data, dict) and any(v not in _EMPTY for v in data.values()):
        raise UsageError(f"data: {sorted(k for k, v in data.items() if v)} is not supported: endpoints read "
                         "their data themselves (datasets and outputs are training-job features)")
    for key in ("workers", "worker_commands"):
        if unused.pop(key, None) not in _EMPTY:
            raise UsageError(f"{key}: worker commands are for training jobs; an endpoint serves its routes")
    for key in ("checkpoints", "checkpoint"):
        if model.get(key):
            raise UsageError(f"model.{key}: checkpoints are not supported; put the files in the model code")
    given = sorted(k for k, v in unused.items() if v is not None)
    if given:
        raise UsageError(f"jobs.create: {', '.join(given)} {'is' if len(given) == 1 else 'are'} not supported here")


async def update_payload(client, model: dict | None, endpoint: dict | None, environment: dict | None,
                          resources: dict | None) -> dict:
    """An update's payload, checked here as create's is (routes, environment) and a local folder uploaded."""
    payload: dict = {}
    endpoint = dict(endpoint or {})
    routes = parse_routes(endpoint["routes"]) if endpoint.get("routes") else None
    if endpoint:
        check_scaling(endpoint)
        payload["endpoint"] = endpoint
    if environment:
        check_environment(environment)
        payload["environment"] = dict(environment)
    if resources:
        payload["resources"] = dict(resources)
        if isinstance(resources.get("gpu_types"), str):
            payload["resources"]["gpu_types"] = [resources["gpu_types"]]
    if model:
        model = dict(model)
        if model.get("source_type") == "local":
            folder = Path(model.get("source_uri") or "").expanduser()
            if routes:
                check_route_files(routes, folder)
            check_requirements_file(environment or {}, folder)
            upload = await client.upload(folder)
            model = {"source_type": "local", "source_uri": str(folder.resolve()), "upload_id": upload["id"]}
        elif model.get("source_type") == "git":
            model["source_uri"] = git_uri(model.get("source_uri"))
        payload["model"] = model
    return payload
