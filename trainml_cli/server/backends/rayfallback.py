"""The shared fallback application: our JSON answers at a job's URL while no application of the job serves it.

A job's application is `ep-ID` at `/e/ID` (rayapps). While Serve deploys it, and from the moment a stop or a
removal takes it out of the list until long after, its prefix is not routed and Serve's proxy answered callers in
plain text (`Path '/e/ID/predict' not found`). So every list the control plane PUTs also holds one application of
its own, `trainml-fallback` at `/e`: Serve routes by the longest prefix (its Python proxy and HAProxy alike), so it
gets exactly the calls no job's application takes, and answers them (runtime/fallback.py):

- 503 `unavailable` with `Retry-After: 1` for a job the control plane lists: starting (deployed in this PUT, or
  Serve still DEPLOYING it), updating (its config changed in this PUT), stopping (being removed: until Serve
  has deleted it), or running (listed, its route not there yet);
- our 404 `not_found`, `no job at this URL`, for any other path, including a job's once it is removed.

How it knows: the map {job id: state} is the deployment's user_config, computed from the list at every PUT, so a
change is a lightweight update (Serve calls the replica's reconfigure; none is replaced). A removal's last step is
one more PUT, without the job in the map. The map holds job ids (Ray's dashboard already shows them, as the
applications' names) and states; an answer says only the state of the id the caller sent.

The replica takes no CPU (Ray may place it beside any job's), and its package is this version of trainml_cli's
modules alone, uploaded once per version. It stays deployed when the control plane stops, answering 404 for every
job URL, until a control plane PUTs a list again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ...errors import TrainMLError
from ...launchspec import FALLBACK_DEPLOYMENT, FALLBACK_STATES_FIELD
from . import rayapps
from .rayapps import ServeStatus
from .rayhead import RayHead

log = logging.getLogger("trainml.server")

NAME = "trainml-fallback"
ROUTE_PREFIX = "/e"  # rayapps.route_prefix's parent
ENTRY = "trainml_cli.runtime.serve_entry:build_fallback"
DEPLOYMENT_OPTIONS = {
    "num_replicas": 1,
    "ray_actor_options": {"num_cpus": 0},
    "max_ongoing_requests": 100,
    "max_queued_requests": 100,
    "backpressure_config": {"status_code": 503, "retry_after_s": rayapps.RETRY_AFTER_S},
    "health_check_period_s": 5.0,
    "max_surge_percent": 100,  # a new trainml_cli version: the new replica answers before the old one stops
}
_STARTING = (ServeStatus.NOT_STARTED, ServeStatus.DEPLOYING)


def job_states(current: dict, apps: dict, changed: set, stopping: set) -> dict[str, str]:
    """{job id: state} for the fallback's map: `apps`, the list about to be PUT ({name: config}); `current`, Serve's
    status documents before it; `changed`, the applications this PUT sets; `stopping`, the jobs being removed."""
    states = {}
    for name in apps:
        if not name.startswith(rayapps.PREFIX):
            continue
        if name in changed:
            state = "updating" if name in current else "starting"
        else:
            state = "starting" if ServeStatus.of(current.get(name) or {}) in _STARTING else "running"
        states[name[len(rayapps.PREFIX):]] = state
    return {**states, **{job: "stopping" for job in stopping}}


def package() -> tuple[str, bytes]:
    """(`_ray_pkg_<sha>.zip`, its bytes): this version of trainml_cli's modules."""
    return rayapps.zipped(rayapps.runtime_files())


def app_config(package_name: str, states: dict, stop_grace: float) -> dict:
    """The fallback application in Serve's declarative schema, its map of job states as the user_config."""
    return {
        "name": NAME,
        "route_prefix": ROUTE_PREFIX,
        "import_path": ENTRY,
        "runtime_env": {"working_dir": f"gcs://{package_name}", "env_vars": dict(rayapps.REPLICA_ENV)},
        "args": {"deployment": {**DEPLOYMENT_OPTIONS, **rayapps.shutdown_options(stop_grace)}},
        "deployments": [{"name": FALLBACK_DEPLOYMENT, "user_config": {FALLBACK_STATES_FIELD: states}}],
    }


class FallbackApp:
    """The fallback as one control plane keeps it: its package, and the jobs being removed (`stopping`)."""

    def __init__(self, head: RayHead, stop_grace: float):
        self.head = head
        self.stop_grace = stop_grace
        self.stopping: set[str] = set()
        self._package: tuple[str, bytes] | None = None

    async def config(self, current: dict, apps: dict, changed: set) -> dict:
        """Its config for the list `apps` about to be PUT, its package in the cluster (uploaded unless there)."""
        if self._package is None:
            self._package = await asyncio.to_thread(package)
        await self.head.keep_package(*self._package)
        return app_config(self._package[0], job_states(current, apps, changed, self.stopping), self.stop_grace)

    @contextlib.asynccontextmanager
    async def removing(self, names: list[str], refresh):
        """While these applications are removed their jobs are `stopping`; then `refresh` (a PUT) drops them."""
        jobs = job_ids(names) - self.stopping
        self.stopping |= jobs
        try:
            yield
        finally:
            self.stopping -= jobs
            try:
                await refresh()
            except TrainMLError as exc:  # their URLs say "stopping" until the next PUT
                log.warning("cannot tell Ray Serve's fallback application that %s are gone: %s", names, exc)


def job_ids(names: list[str]) -> set[str]:
    return {name[len(rayapps.PREFIX):] for name in names if name.startswith(rayapps.PREFIX)}
