"""The Ray backend: each endpoint job is one Ray Serve application on a Ray cluster, driven over HTTP.

`trainml server run --backend ray --ray-address http://HEAD:8265` points the control plane at a cluster's
dashboard (see rayhead.py: the control plane never imports ray). A job's life:

- create/start: zip the model folder, the routes and our runtime (rayapps.package), upload it unless the
  cluster has it (asking pins it for 600 s), then PUT the full list of applications with this job's in it
  (`ep-<id>` at `/e/<id>`). Serve builds it on the cluster with `trainml_cli.runtime.serve_entry:build`,
  after Ray has installed the job's packages with uv on the node (runtime_env `uv`).
- watch: one GET of every application's status per poll (shared by all jobs), mapped by rayapps.job_status.
  Serve has no deadline of its own (an unschedulable application stays DEPLOYING forever, with no message),
  so a job not running after `deploy_timeout` seconds fails with the reason: missing resources, or what
  Serve said.
- stop: PUT the list without the application, then wait until it is gone. Serve has no per-application
  DELETE (DELETE shuts Serve down), and the list we PUT keeps every other application as Serve runs it. Replicas
  get our own stop grace for their calls, and Serve's 30 s HAProxy drain is cut short (rayapps.REPLICA_ENV).
  Every list holds our fallback application at `/e` too, which answers the job's URL meanwhile (rayfallback.py).
  A job whose application never served fails without waiting for that: the removal goes on (rayremovals.py).
- update, rollback: Serve's rolling update of the same application to the revision's package (rayrollout.py).
- rotate-key: the new key in a package of its own, named in the deployment's user_config; the replicas read it
  in `reconfigure` and keep serving (runtime/serve_entry.py).
- crashes: a replica whose process died is counted as a restart and logged (rayreplicas.py).
- logs: each replica's stdout and stderr, followed through the head's log API (raylogs.py), into the job's
  log like a local endpoint's output.
- a control plane that restarts adopts the applications still deployed; it removes those of jobs that should
  not run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from ...errors import TrainMLError, Unavailable, UsageError
from .. import endpointkeys, resources as res
from ..jobrecord import JobRecord
from . import rayapps, raycluster, rayexposure, rayfallback, rayrollout
from .base import EndpointListener, Launch, Say
from .rayapps import ServeStatus
from .rayendpoint import POLL, REMOVE_TIMEOUT, RayEndpoint
from .rayhead import RayHead, RayOptions
from .raymetrics import ReplicaTotals
from .rayremovals import Removals

log = logging.getLogger("trainml.server")

REMOVE_POLL = 0.2  # seconds between status reads meanwhile: a stop returns as soon as Serve has deleted it


class RayBackend:
    name = "ray"
    builds_environments = False  # Ray builds each node's environment with uv, from the application's runtime_env

    def __init__(self, options: RayOptions):
        self.options = options
        self.head = RayHead(options.address, options.token)
        self.replica_totals = ReplicaTotals(self.head)
        self.fallback = rayfallback.FallbackApp(self.head, options.stop_grace)
        self.removals = Removals()  # of applications that never served, going on after their jobs failed
        self._lock = asyncio.Lock()
        self._cache: tuple[float, dict] | None = None
        self._reading: asyncio.Future | None = None
        self._python: str | None = None  # the cluster's Python version, once a node's metrics export said it

    # -- resources ----------------------------------------------------------------------------------------

    def check_resources(self, resources: dict, replicas: int | None = None) -> None:
        """GPUs the cluster could never hold are refused (asking the head, in the caller's thread); what is merely
        busy, and CPUs, are Ray's to place: what it cannot place fails the job at the deploy deadline."""
        if res.gpus_needed(resources):
            raycluster.check_gpus(raycluster.nodes(*self.head.cluster_sync()), resources, replicas or 1)

    async def gpus(self) -> list[dict]:
        return raycluster.gpu_listing(raycluster.nodes(*await self.head.cluster()))

    @property
    def default_python(self) -> str:
        """What a job's Python is: the cluster's (Ray needs one Python on every node)."""
        return f"the Ray cluster's ({self._python})" if self._python else "the Ray cluster's"

    async def read_python(self, summary: list) -> None:
        self._python = self._python or await raycluster.head_python(summary)

    def autoscale_options(self, scaling, max_concurrency, workdir) -> dict:
        return {}  # Serve scales the replicas itself (the application's autoscaling_config)

    async def hold_socket(self, endpoint) -> None:
        return None  # Serve's proxies own the listening sockets

    def check_features(self, scaling: dict, auth: bool, environment: dict) -> None:
        # Refused rather than ignored: the job would run on an interpreter it did not ask for.
        if environment.get("python"):
            raise UsageError.at(("environment", "python"),
                                "replicas run on the Ray cluster's own Python; leave it out, "
                                "or run the job on the local backend")

    async def place(self, job_id: str, resources: dict, held: list | None, say: Say) -> list:
        return []  # Ray hands out CPUs and GPUs to replicas itself

    async def release(self, job_id: str) -> None:
        pass

    # -- the application list ---------------------------------------------------------------------------

    async def applications(self, max_age: float = POLL * 0.8) -> dict:
        """Every application's status, read at most once per `max_age` seconds whoever asks."""
        if self._cache is not None and time.monotonic() - self._cache[0] < max_age:
            return self._cache[1]
        if self._reading is None:
            self._reading = asyncio.ensure_future(self.head.applications())
        reading = self._reading
        try:
            apps = await asyncio.shield(reading)
        finally:
            if self._reading is reading:
                self._reading = None
        self._cache = (time.monotonic(), apps)
        return apps

    async def apply(self, changes: dict[str, dict | None]) -> None:
        """PUT the full list: what Serve runs now (deployed declaratively), with these applications set (a
        config) or removed (None). Every other application stays as it is."""
        async with self._lock:
            details = await self.head.serve_details()
            if any(config is not None for config in changes.values()):  # removing works wherever Serve listens
                rayexposure.check_listening(details, self.options.serve_host, self.options.serve_port)
            current = details.get("applications") or {}
            deployed = {name: app["deployed_app_config"] for name, app in current.items()
                        if app.get("deployed_app_config") and ServeStatus.of(app) is not ServeStatus.DELETING}
            apps = {name: config for name, config in {**deployed, **changes}.items()
                    if config is not None and name != rayfallback.NAME}
            if not apps and not current:
                return
            set_now = {name for name, config in changes.items() if config is not None}
            apps[rayfallback.NAME] = await self.fallback.config(current, apps, set_now)  # last: after the jobs'
            if apps == deployed:
                return
            document = rayapps.deploy_document(list(apps.values()), self.options.serve_host, self.options.serve_port)
            await self.head.deploy(document)
            self._cache = None

    async def remove(self, names: list[str], timeout: float = REMOVE_TIMEOUT) -> bool:
        """Remove these applications and wait until Serve has deleted them; False if it has not in time. Their
        URLs get the fallback's 503 meanwhile, its 404 once they are gone (rayfallback.py)."""
        async with self.fallback.removing(names, lambda: self.apply({})):
            await self.apply({name: None for name in names})
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                present = await self.applications(max_age=0)
                if not any(name in present for name in names):
                    return True
                await asyncio.sleep(REMOVE_POLL)
            return False

    # -- the seam -----------------------------------------------------------------------------------------

    def endpoint(self, launch: Launch, listener: EndpointListener, port: int | None, adopt=None) -> RayEndpoint:
        return RayEndpoint(self, launch, listener, adopt)

    def url(self, job: JobRecord) -> str | None:
        return self.app_url(job.id)

    def app_url(self, job_id: str) -> str:
        return self.options.serve_url + rayapps.route_prefix(job_id)

    async def rotate_key(self, workdir: Path, key: str, endpoint: RayEndpoint | None) -> str:
        # The next deploy packs this file; running replicas get it through their user_config (a lightweight
        # update: Serve calls their reconfigure, none is replaced).
        endpointkeys.write_key(workdir, key)
        if endpoint is not None:
            try:
                await endpoint.send_key()
            except TrainMLError as exc:
                raise Unavailable(f"the new key is saved (trainml job connect shows it), but the replicas still "
                                  f"have the old one: handing it to the Ray cluster failed: {exc}; rotate the key "
                                  "again, or stop and start the job") from exc
        return "once Ray Serve has reconfigured the replicas (about a second)"

    async def adoptable(self, jobs: list[JobRecord]) -> dict:
        try:
            apps = await self.applications(max_age=0)
        except TrainMLError as exc:
            log.warning("cannot read Ray Serve's applications to adopt them: %s", exc)
            return {}
        found = {}
        for job in jobs:
            app = apps.get(rayapps.app_name(job.id))
            if app is not None and ServeStatus.of(app) not in (ServeStatus.DELETING, ServeStatus.DEPLOY_FAILED):
                found[job.id] = app
        return found

    async def clean_up(self, jobs: list[JobRecord], adopted: dict) -> None:
        try:
            apps = await self.applications(max_age=0)
            stale = [rayapps.app_name(j.id) for j in jobs if j.id not in adopted and rayapps.app_name(j.id) in apps]
            if stale:
                await self.remove(stale)
        except TrainMLError as exc:
            log.warning("cannot remove Ray Serve applications of jobs that should not run: %s", exc)

    async def settle(self) -> None:
        await self.removals.settle()

    async def describe(self) -> dict:
        info: dict = {"backend": self.name, "ray_address": self.options.address, "serve_url": self.options.serve_url}
        try:
            summary, by_node = await self.head.cluster()
            info["ray_version"] = await self.head.version()
        except TrainMLError as exc:
            info["error"] = str(exc)
            return info
        await self.read_python(summary)
        info["python"] = self.default_python
        info["resources"] = raycluster.totals(raycluster.nodes(summary, by_node))
        return info

    async def switch(self, endpoint: RayEndpoint, launch: Launch, on_spawn=None) -> tuple[None, None]:
        """Roll `endpoint`'s application over to `launch` (a new revision) with Serve's rolling update
        (rayrollout.py); no process of ours to record."""
        await rayrollout.switch(endpoint, launch, self.options.deploy_timeout)
        return None, None

    async def shortfall(self, launch: Launch) -> str | None:
        """Why Ray cannot place this job's replicas, from the cluster's free resources; None if it could."""
        return raycluster.shortfall(await self.head.resources(), rayapps.deployment_options(launch))
