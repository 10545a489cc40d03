"""One job's Serve application as the control plane drives it (ray.py's RayBackend makes them): deploy or adopt,
watch its status until it runs or fails at the deadline, follow its logs, replicas, key and captures, and remove it
when the job stops."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ...errors import TrainMLError, Unavailable
from ...states import JobStatus
from . import rayapps, raycaptures, raycluster, raymetrics
from .base import EndpointListener, Launch, Outcome
from .probes import first, http_get
from .rayapps import ServeStatus
from .raykeys import KeyPackage
from .raylogs import ReplicaLogs
from .rayreplicas import ReplicaWatch

if TYPE_CHECKING:
    from .ray import RayBackend

POLL = 0.5  # seconds between status reads
REMOVE_TIMEOUT = 60.0  # seconds to wait for Serve to delete an application


class RayEndpoint:
    """One job's Serve application, from deploy (or adoption) until stopped."""

    port = None

    def __init__(self, backend: RayBackend, launch: Launch, listener: EndpointListener, adopt=None):
        self.backend = backend
        self.launch = launch
        self.listener = listener
        self.name = rayapps.app_name(launch.job_id)
        self.port = backend.options.serve_port
        self._adopted = adopt is not None
        self._summed = False  # the replicas' summed totals were read once: never fall back to one replica's
        self._stop = asyncio.Event()
        self._detached = False
        # One deploy or removal at a time: a key rotation's deploy must neither be overtaken by an older one nor
        # bring back an application that is being removed.
        self._deploying = asyncio.Lock()
        self._deployed = adopt is not None
        self._served = adopt is not None  # callers got answers from it: its removal waits for their calls
        self.switching = False  # a new revision is rolling out (rayrollout.py), which watches the status meanwhile
        self.logs = ReplicaLogs(backend.head, listener)
        self.live_replicas: list[dict] | None = None  # as Serve reported them at the last poll (rayapps.live)
        self.replicas = ReplicaWatch(backend.head, listener)
        self.key = KeyPackage(backend.head, launch.runtime.key_file)
        self.captures: raycaptures.CaptureDrain | None = None  # with --capture (raycaptures.follow)

    @property
    def url(self) -> str:
        return self.backend.app_url(self.launch.job_id)

    @property
    def scale(self) -> dict | None:
        """An autoscaled application's scale now, as `job get` shows a local one's (rayapps.scale_summary)."""
        return rayapps.scale_summary(self.launch, self.live_replicas)

    def request_stop(self) -> None:
        self._stop.set()

    def detach(self) -> None:
        self._detached = True
        self._stop.set()

    async def run(self) -> Outcome:
        outcome = None
        try:
            outcome = await self._watch()
            return outcome
        finally:
            self.logs.close()
            if outcome is not None and outcome.failed and not self._served and not self._detached:
                # Failed before it ever served: the job says so now, not once Serve has deleted it (rayremovals.py).
                self.backend.removals.start(self.name, self._end())
            else:
                await self._end()

    async def _end(self) -> None:
        """Remove the application (unless detached: it serves on), then drain the replicas' last captures."""
        captures = self.captures
        if not self._detached:
            async with self._deploying:
                self._deployed = False
                try:
                    if not await self.backend.remove([self.name]):
                        self.listener.event(f"Ray Serve had not deleted application {self.name} after "
                                            f"{REMOVE_TIMEOUT:g}s")
                except TrainMLError as exc:
                    self.listener.event(f"could not remove Ray Serve application {self.name}: {exc}")
        if captures is not None:  # once stopped, what the replicas sealed last; adopted later, drained on
            await captures.finish(last=not self._detached)

    async def _watch(self) -> Outcome:
        timeout = self.backend.options.deploy_timeout
        if self._adopted:
            self.listener.event(f"adopted Ray Serve application {self.name}, still serving at {self.url}")
        else:
            await self._deploy(restart=False)
        deadline = time.monotonic() + timeout
        running = False
        head_away = False
        while not self._stop.is_set():
            try:
                app = (await self.backend.applications()).get(self.name)
                if head_away:
                    self.listener.event("the Ray head answers again")
                head_away = False
            except TrainMLError as exc:  # the head is away: Serve keeps serving without it; look again
                if not head_away:  # once per outage, not every poll
                    self.listener.event(f"cannot read the application's status: {exc}")
                head_away = True
                app = {"status": (ServeStatus.RUNNING if running else ServeStatus.DEPLOYING).value}
            status, message = rayapps.job_status(app)
            if not head_away:
                self.live_replicas = rayapps.live(app)
            self.logs.follow(rayapps.replicas(app))
            await self.replicas.see(rayapps.replicas(app))
            await self.key.pin(app)
            self.captures = raycaptures.follow(self.captures, self.backend.head, self.name, self.launch)
            if self.switching:  # a failed or slow rollout is the new revision's, not the job's
                pass
            elif status is JobStatus.RUNNING and not running:
                # Serve says RUNNING before its proxies route the prefix: running means callers get answers.
                if await self._answers():
                    running = self._served = True
                    self.listener.ready()
                elif time.monotonic() > deadline:
                    return Outcome(True, f"Ray Serve runs application {self.name}, but {self.url}/ping did not "
                                         f"answer within {timeout:g}s")
            elif status is JobStatus.FAILED:
                return Outcome(True, rayapps.failure_reason(message))
            elif status is JobStatus.STOPPED and running:  # deleted behind our back: deploy it again
                self.listener.event(f"Ray Serve application {self.name} disappeared; deploying it again")
                running = False
                await self._deploy(restart=True)
                deadline = time.monotonic() + timeout
            elif not running and time.monotonic() > deadline:
                reason = await self.backend.shortfall(self.launch)
                said = f"; Ray Serve says: {message}" if message else ""
                return Outcome(True, reason or f"not running {timeout:g}s after it was deployed{said}")
            self.logs.save()  # so a control plane that adopts the application skips the lines already stored
            await first(asyncio.sleep(POLL), self._stop.wait())
        return Outcome(False)

    async def _deploy(self, restart: bool) -> None:
        async with self._deploying:
            config = await self._send()
        self.listener.launched(None, None, restart)
        scale = rayapps.scale_text(config["args"]["deployment"])
        self.listener.event(f"deployed Ray Serve application {self.name} ({scale}) at {self.url}")

    async def _send(self, launch: Launch | None = None) -> dict:
        """Upload the job's package (of `launch`, a new revision) unless the cluster has it, and put its
        application in Serve's list."""
        launch = launch or self.launch
        await self.backend.removals.wait(self.name)  # the same application, left failing: deleted before it returns
        packages = await asyncio.to_thread(rayapps.uv_packages, launch)  # a bad line fails before any upload
        name, data = await asyncio.to_thread(rayapps.package, launch)
        head = self.backend.head
        summary, by_node = await head.cluster()
        await self.backend.read_python(summary)
        scaling = launch.scaling  # the accelerator: the cluster's name for the job's GPU type, chosen now
        accelerator = raycluster.check_gpus(raycluster.nodes(summary, by_node), launch.resources,
                                            scaling.min_replicas or scaling.replicas or 1)
        if await head.keep_package(name, data):
            self.listener.event(f"uploaded the model package ({len(data) / 1024:.0f} KiB) to the Ray cluster")
        key_package = await self.key.upload()
        config = rayapps.app_config(launch, name, packages, accelerator, self.backend.options.stop_grace,
                                    key_package)
        await self.backend.apply({self.name: config})
        self._deployed = True
        return config

    async def send_key(self) -> None:
        """Hand the rotated key to the running replicas: only the deployment's user_config changes (the new key
        package's name), so Serve calls each replica's reconfigure and replaces none. Before the first deploy
        (which packs the new key) or once stopping, nothing to do."""
        async with self._deploying:
            if not self._deployed or self._stop.is_set():
                return
            key_package = await self.key.upload()
            deployed = (await self.backend.applications(max_age=0)).get(self.name) or {}
            config = deployed.get("deployed_app_config")
            if not config or not key_package:
                raise Unavailable(f"Ray Serve does not run application {self.name}")
            await self.backend.apply({self.name: rayapps.with_key_package(config, key_package)})
        self.listener.event("the endpoint key was handed to the running replicas")

    async def _answers(self) -> bool:
        parts = urlsplit(self.url)
        status, _ = await http_get(parts.hostname, parts.port, parts.path + "/ping", timeout=2.0)
        return status == 200

    async def metrics(self) -> dict | None:
        """Every replica's counters summed (raymetrics), in the shape the local backend's /metrics gives.

        Until Ray has exported them (a few seconds after deploy, or on a cluster whose nodes' metrics ports this
        machine cannot reach), one replica's counters through Serve's proxy stand in.
        """
        summed = await self.backend.replica_totals.of(self.name)
        if summed is not None:
            self._summed = True
            return summed
        if self._summed:
            return None  # a missed reading: one replica's lower counts would read as a restart to the charts
        return await raymetrics.one_replica(self.url)
