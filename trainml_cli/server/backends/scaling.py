"""Autoscaling on this machine, from the control plane's side: what it accepts, what it launches, what it shows.

The scaling itself runs in the endpoint's own leader process (runtime/autoscaler.py), so an endpoint keeps
scaling, and waking from zero, while no control plane runs. The control plane only checks the job's settings
against this machine, passes them on the runtime's command line (launchspec's autoscaling rows) with a scale
file in the job's folder, and reads that file back (contracts.ScaleState) for `job get` and the dashboard.
"""

from __future__ import annotations

from pathlib import Path

from ...contracts import SCALE_FILE, read_scale
from ...errors import UsageError
from ...limits import cpu_count
from ...replicaspec import AUTOSCALING, LOCAL, default_target
from .base import Scaling


def check_local_scaling(scaling: dict) -> None:
    """Autoscaled local workers fit this machine: at most one per CPU, as a fixed group."""
    high = scaling.get("max_replicas")
    low = scaling.get("min_replicas")
    if high is not None and high > cpu_count():
        raise UsageError.at(("endpoint", "max_replicas"), f"{high} is more than this machine's {cpu_count()} CPUs")
    if high is None and low is not None and low > cpu_count():
        raise UsageError.at(("endpoint", "min_replicas"), f"{low} is more than this machine's {cpu_count()} CPUs")


def launch_fields(scaling: Scaling, max_concurrency: int | None, workdir: Path) -> dict:
    """The runtime's autoscaling options (launchspec.OPTIONS) for an autoscaled job; {} for a fixed one."""
    if not scaling.autoscaled:
        return {}
    low = scaling.min_replicas if scaling.min_replicas is not None else 1
    high = max(scaling.max_replicas or low, low, 1)
    defaults = {s.key: s.default for s in AUTOSCALING + LOCAL}
    return {
        "min_workers": low,
        "workers": high,
        "idle_timeout": _given(scaling.idle_timeout, defaults["idle_timeout"]),
        "cold_start_timeout": _given(scaling.cold_start_timeout, defaults["cold_start_timeout"]),
        "upscale_delay": _given(scaling.upscale_delay, defaults["upscale_delay"]),
        "target_ongoing": _given(scaling.target_ongoing, default_target(max_concurrency)),
        "scale_file": str(workdir / SCALE_FILE),
    }


def _given(value, default):
    return default if value is None else value


def initial_workers(runtime) -> int:
    """How many workers a launch starts with (and loads before it takes calls): an autoscaled group starts with
    max(min, 1), so the job is `running` only once its code has loaded."""
    if runtime.min_workers is not None:
        return max(runtime.min_workers, 1)
    return runtime.workers or 1


def live_replicas(launch) -> list[dict] | None:
    """An autoscaled endpoint's workers as its leader last wrote them ([] while scaled to zero); None when the
    job is not autoscaled."""
    path = launch.runtime.scale_file
    state = read_scale(path) if path else None
    if state is None:
        return None
    return [{"replica_id": str(w.get("pid")), "state": w.get("state"), "pid": w.get("pid"), "node_ip": "this machine",
             "cold_start_ms": state.cold_start_ms} for w in state.workers]


def scale_summary(launch) -> dict | None:
    """{replicas, min_replicas, max_replicas, scaled_to_zero, cold_start_ms, decision} for `job get`."""
    path = launch.runtime.scale_file
    state = read_scale(path) if path else None
    if state is None:
        return None
    return {**state.metrics(), "decision": state.decision}
