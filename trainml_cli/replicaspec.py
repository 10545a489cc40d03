"""How many copies of an endpoint serve, and how autoscaling reacts: the fields, their defaults and checks, once.

    endpoint: {replicas?}                                     a fixed number of copies
    endpoint: {min_replicas?, max_replicas?,                   autoscaled between the two (Ray backend)
               upscale_delay?, downscale_delay?, target_ongoing?}

The CLI's options (`--replicas`, `--min-replicas`, `--upscale-delay`, ...), the API's payload check and the Ray
backend's autoscaling_config are generated from the table below, so a setting means the same everywhere.

Two delays rather than one idle timeout: they are Serve's own knobs, one each way, and a local autoscaler keeps
the same meaning (`downscale_delay` is how long calls must stay below the target before a replica goes, which
is an idle timeout when the floor is reached).

A leaf: standard library and errors.py only, so the CLI, the SDK and the control plane use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from .errors import UsageError
from .launchspec import DEFAULT_MAX_CONCURRENCY

MAX_DELAY = 86_400.0  # seconds: a day; longer is a typo, not a policy


@dataclass(frozen=True)
class Setting:
    key: str  # in the payload's `endpoint`
    serve_key: str  # in Ray Serve's autoscaling_config
    default: float | None  # None: derived from the job (target_ongoing)
    help: str

    @property
    def option(self) -> str:
        return "--" + self.key.replace("_", "-")


AUTOSCALING = (
    Setting("upscale_delay", "upscale_delay_s", 30.0,
            "Autoscaling (Ray backend): seconds the calls in flight must stay above the target before a replica "
            "is added (default 30)."),
    Setting("downscale_delay", "downscale_delay_s", 600.0,
            "Autoscaling (Ray backend): seconds they must stay below it before a replica is removed, holding its "
            "CPUs and GPUs until then (default 600)."),
    Setting("target_ongoing", "target_ongoing_requests", None,
            "Autoscaling (Ray backend): calls in flight per replica to aim at (default: half of "
            "--max-concurrency, at least 1)."),
)
COUNTS = ("replicas", "min_replicas", "max_replicas")


def default_target(max_concurrency: int | None) -> int:
    """Scale out before calls queue in Serve's proxy: half of what a replica takes at once."""
    return max(1, (max_concurrency or DEFAULT_MAX_CONCURRENCY) // 2)


def check_scaling(endpoint: dict, name: Callable[[str], str] = str) -> dict:
    """{replicas, min_replicas, max_replicas, upscale_delay, downscale_delay, target_ongoing}: None where not
    given, the autoscaling settings filled with their defaults for an autoscaled job. UsageError names the
    field, as `name(key)` says it (the API: `endpoint.KEY`, 422; the CLI: its option, exit 2)."""
    def problem(key: str, message: str) -> UsageError:
        return UsageError.at(("endpoint", key), message, label=None if name is str else name(key))

    out: dict = {}
    for key in COUNTS:
        value = endpoint.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise problem(key, f"{value!r} must be a whole number of at least 1")
        out[key] = value
    low, high = out["min_replicas"], out["max_replicas"]
    if out["replicas"] is not None and (low is not None or high is not None):
        raise problem("replicas", f"give either {name('replicas')} (a fixed number) or {name('min_replicas')}/"
                      f"{name('max_replicas')} (autoscaling), not both")
    if low is not None and high is not None and low > high:
        raise problem("min_replicas", f"{low} is more than {name('max_replicas')} ({high})")
    autoscaled = low is not None or high is not None
    concurrency = endpoint.get("max_concurrency") or DEFAULT_MAX_CONCURRENCY
    for setting in AUTOSCALING:
        value = endpoint.get(setting.key)
        if value is None:
            out[setting.key] = None
            continue
        if not autoscaled:
            raise problem(setting.key, f"an autoscaling setting: give {name('min_replicas')} and/or "
                          f"{name('max_replicas')} too (a fixed number of replicas is never scaled)")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise problem(setting.key, f"{value!r} must be a number")
        if setting.key == "target_ongoing":
            if value <= 0:
                raise problem(setting.key, f"{value!r} must be above 0 (calls in flight per replica)")
            if value > concurrency:
                raise problem(setting.key, f"{value:g} is more than {name('max_concurrency')} ({concurrency}), the "
                              "calls a replica takes at once: it would never be reached")
        elif not 0 <= value <= MAX_DELAY:
            raise problem(setting.key, f"{value:g} must be between 0 and {MAX_DELAY:g} seconds")
        out[setting.key] = value
    if autoscaled:
        for setting in AUTOSCALING:
            if out[setting.key] is None:
                out[setting.key] = setting.default if setting.default is not None else default_target(concurrency)
    return out


def serve_autoscaling(endpoint: dict) -> dict:
    """Ray Serve's autoscaling_config for an autoscaled job's `endpoint` spec (as check_scaling returned it)."""
    low = endpoint.get("min_replicas") or 1
    config = {"min_replicas": low, "initial_replicas": low,
              "max_replicas": max(low, endpoint.get("max_replicas") or low)}
    for setting in AUTOSCALING:
        value = endpoint.get(setting.key)
        if value is None:
            value = setting.default if setting.default is not None else default_target(endpoint.get("max_concurrency"))
        config[setting.serve_key] = value
    return config


def describe(endpoint: dict) -> str | None:
    """The configured replicas as `job get` says them; None when the job sets none (one copy, or local workers)."""
    if endpoint.get("min_replicas") is not None or endpoint.get("max_replicas") is not None:
        config = serve_autoscaling(endpoint)
        return (f"{config['min_replicas']}-{config['max_replicas']} autoscaled: aiming at "
                f"{config['target_ongoing_requests']:g} call(s) in flight per replica, adding one after "
                f"{config['upscale_delay_s']:g}s above it, removing one after {config['downscale_delay_s']:g}s below")
    if endpoint.get("replicas") is not None:
        return f"{endpoint['replicas']}"
    return None
