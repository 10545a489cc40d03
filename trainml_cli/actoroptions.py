"""`--ray-actor-options JSON` (`endpoint.ray_actor_options`): Ray's placement options for each replica, checked once.

Only the keys of Ray Serve's replica options (`ray.serve.schema.RayActorOptionsSchema`, Ray 2.60) that the job
does not already say elsewhere, with the types Serve takes, so a typo or a wrong type is a usage error naming
the key (exit 2 at the CLI, 422 at the API) instead of a deploy that fails on the cluster:

    memory            bytes of heap memory per replica (Ray places the replica where that much is free)
    resources         custom resources per replica, {"name": amount}
    accelerator_type  run on nodes with this accelerator (e.g. "A100"), as Ray names them
    label_selector    run on nodes with these labels, {"key": "value"}

`num_cpus` and `num_gpus` are refused: `--cpu-count` and `--gpu-count` say them (and price them); one place
per fact. `runtime_env` is the control plane's (the job's package, packages, environment variables).

A leaf: standard library and errors.py only.
"""

from __future__ import annotations

import json
import math

from .errors import UsageError

LOC = ("endpoint", "ray_actor_options")
KEYS = ("memory", "resources", "accelerator_type", "label_selector")
# Serve's keys that a job gives another way.
ELSEWHERE = {
    "num_cpus": "give --cpu-count (resources.cpu_count): CPUs per replica",
    "num_gpus": "give --gpu-count (resources.gpu_count): GPUs per replica",
    "runtime_env": "set by the control plane (the job's package and packages); give --env and --pip-packages",
    "fallback_strategy": "not supported here; use label_selector",
}
RAY_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")  # Ray refuses these as custom resources


def _amount(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def check_actor_options(value) -> dict:
    """The options as Serve takes them; UsageError naming the key (its `fields` say where, as data)."""
    def problem(key: str | None, message: str) -> UsageError:
        return UsageError.at(LOC + ((key,) if key else ()), message)

    if value is None:
        return {}
    if not isinstance(value, dict):
        raise problem(None, f"must be a JSON object of Ray's replica options ({', '.join(KEYS)}), not "
                            f"{type(value).__name__}")
    out = {}
    for key, item in value.items():
        if key in ELSEWHERE:
            raise problem(key, ELSEWHERE[key])
        if key not in KEYS:
            raise problem(key, f"not one of Ray Serve's replica options taken here: {', '.join(KEYS)}")
        if key == "memory":
            if not _amount(item) or item == 0:
                raise problem(key, f"{item!r} must be a number of bytes above 0 (e.g. 2147483648 for 2 GiB)")
        elif key == "accelerator_type":
            if not isinstance(item, str) or not item.strip():
                raise problem(key, f"{item!r} must be an accelerator type as Ray names it, e.g. \"A100\"")
        elif key == "resources":
            if not isinstance(item, dict):
                raise problem(key, f"must be an object of custom resource names and amounts, not {item!r}")
            for name, amount in item.items():
                if name in RAY_RESOURCES:
                    raise problem(key, f"{name!r} is not a custom resource: give it with --cpu-count, --gpu-count "
                                       "or memory")
                if not _amount(amount):
                    raise problem(key, f"{name!r}: {amount!r} must be a number of at least 0")
        elif key == "label_selector":
            if not isinstance(item, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                     for k, v in item.items()):
                raise problem(key, f"must be an object of label names and values (strings), not {item!r}")
        out[key] = item
    return out


def parse_actor_options(text: str) -> dict:
    """The JSON text a user typed, checked."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError.at(LOC, f"not JSON: {exc}") from None
    return check_actor_options(value)
