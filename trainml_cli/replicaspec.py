"""How many copies of an endpoint serve, and how autoscaling reacts: the fields, their defaults and checks, once.

    endpoint: {replicas?}                                     a fixed number of copies
    endpoint: {min_replicas?, max_replicas?,                   autoscaled between the two
               upscale_delay?, downscale_delay?, target_ongoing?,  (Ray Serve's knobs; the local backend uses
               idle_timeout?, cold_start_timeout?}                  upscale_delay and target_ongoing too)

The CLI's options (`--replicas`, `--min-replicas`, `--upscale-delay`, ...), the API's payload check and the Ray
backend's autoscaling_config are generated from the table below, so a setting means the same everywhere.

On Ray, two delays: Serve's own knobs, one each way, and with `min_replicas: 0` the idle timeout before the last
replica stops (Serve's `downscale_to_zero_delay_s`). The local backend (runtime/autoscaler.py) adds a replica
after `upscale_delay` as Ray does, but removes one after `idle_timeout` (default 300 s, the issue's idle
timeout; `downscale_delay` keeps Ray's 600 s default there) and scales to zero with `min_replicas: 0`, holding
calls up to `cold_start_timeout` while a replica starts.

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
            "Autoscaling: seconds the calls in flight must stay above the target (or calls wait) before a "
            "replica is added (default 30)."),
    Setting("downscale_delay", "downscale_delay_s", 600.0,
            "Autoscaling (Ray backend): seconds they must stay below it before a replica is removed, holding its "
            "CPUs and GPUs until then (default 600)."),
    Setting("target_ongoing", "target_ongoing_requests", None,
            "Autoscaling: calls in flight per replica to aim at (default: half of "
            "--max-concurrency, at least 1)."),
)
# The local backend's own (runtime/autoscaler.py); Ray Serve has no such knobs (serve_key None: not sent).
LOCAL = (
    Setting("idle_timeout", "", 300.0,
            "Autoscaling: seconds of low load before a replica stops (local backend); with --min-replicas 0, "
            "seconds without calls before the last one stops (on Ray too: Serve's downscale_to_zero_delay_s) "
            "(default 300)."),
    Setting("cold_start_timeout", "", 120.0,
            "Autoscaling (local backend): seconds a call is held while a replica starts from zero; past it 503 "
            "with Retry-After (default 120)."),
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
        least = 0 if key == "min_replicas" else 1  # min 0: scaled to zero when idle
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < least):
            raise problem(key, f"{value!r} must be a whole number of at least {least}")
        out[key] = value
    low, high = out["min_replicas"], out["max_replicas"]
    if out["replicas"] is not None and (low is not None or high is not None):
        raise problem("replicas", f"give either {name('replicas')} (a fixed number) or {name('min_replicas')}/"
                      f"{name('max_replicas')} (autoscaling), not both")
    if low is not None and high is not None and low > high:
        raise problem("min_replicas", f"{low} is more than {name('max_replicas')} ({high})")
    autoscaled = low is not None or high is not None
    concurrency = endpoint.get("max_concurrency") or DEFAULT_MAX_CONCURRENCY
    for setting in AUTOSCALING + LOCAL:
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
        elif setting.key == "cold_start_timeout" and value <= 0:
            raise problem(setting.key, f"{value:g} must be above 0 seconds")
        elif not 0 <= value <= MAX_DELAY:
            raise problem(setting.key, f"{value:g} must be between 0 and {MAX_DELAY:g} seconds")
        out[setting.key] = value
    if autoscaled:
        for setting in AUTOSCALING + LOCAL:
            if out[setting.key] is None:
                out[setting.key] = setting.default if setting.default is not None else default_target(concurrency)
    return out


def serve_autoscaling(endpoint: dict) -> dict:
    """Ray Serve's autoscaling_config for an autoscaled job's `endpoint` spec (as check_scaling returned it).

    With `min_replicas: 0` Serve starts one replica all the same (`initial_replicas` 1: the job is running once its
    code has loaded and answered, as a local one), and the idle timeout is Serve's delay before the last replica
    stops (`downscale_to_zero_delay_s`); the other steps down keep `downscale_delay_s`."""
    low = endpoint.get("min_replicas")
    low = 1 if low is None else low
    config = {"min_replicas": low, "initial_replicas": max(low, 1),
              "max_replicas": max(low, endpoint.get("max_replicas") or low, 1)}
    for setting in AUTOSCALING:
        value = endpoint.get(setting.key)
        if value is None:
            value = setting.default if setting.default is not None else default_target(endpoint.get("max_concurrency"))
        config[setting.serve_key] = value
    if low == 0:
        idle = endpoint.get("idle_timeout")
        config["downscale_to_zero_delay_s"] = LOCAL[0].default if idle is None else idle
    return config


def describe(endpoint: dict) -> str | None:
    """The configured replicas as `job get` says them; None when the job sets none (one copy, or local workers)."""
    if endpoint.get("min_replicas") is not None or endpoint.get("max_replicas") is not None:
        config = serve_autoscaling(endpoint)
        low = endpoint.get("min_replicas")
        low = config["min_replicas"] if low is None else low
        idle = endpoint.get("idle_timeout")
        idle = LOCAL[0].default if idle is None else idle
        text = (f"{low}-{config['max_replicas']} autoscaled: aiming at {config['target_ongoing_requests']:g} call(s) "
                f"in flight per replica, adding one after {config['upscale_delay_s']:g}s above it, removing one after "
                f"{config['downscale_delay_s']:g}s below (Ray) or {idle:g}s (here)")
        if low == 0:
            text += f"; scaled to zero after {idle:g}s without calls, calls held while one starts"
        return text
    if endpoint.get("replicas") is not None:
        return f"{endpoint['replicas']}"
    return None
