"""The backend seam: where and how a job's endpoint runs, behind one small interface.

The job service (jobs.py) owns job records and statuses; a backend owns everything about running the endpoint:
placing its resources, launching it, watching it, stopping it, its URL, its output, and adopting what an earlier
control plane left serving. Two backends exist:

- `local` (local.py): the runtime's command line as process groups on this machine, GPUs handed out here.
- `ray` (ray.py): one Ray Serve application per job, deployed over the Ray dashboard's HTTP API.

Both serve the same runtime (the same ASGI app); what it is started with is a `launchspec.LaunchSpec`.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Protocol

from ...launchspec import LaunchSpec
from ...serveroptions import STOP_GRACE, UNRESPONSIVE_AFTER  # defined once, with the options
from ..jobrecord import JobRecord

START_TIMEOUT = 300.0  # loading a big model can take minutes


@dataclass(frozen=True)
class Policy:
    """How endpoints are treated; set with `trainml server run` options."""

    stop_grace: float = STOP_GRACE  # seconds between SIGTERM and SIGKILL when stopping
    unresponsive_after: float = UNRESPONSIVE_AFTER  # seconds without a /ping answer before a running one is hung
    start_timeout: float = START_TIMEOUT  # seconds a start may take before it counts as failed


@dataclass
class Scaling:
    """How many copies of the endpoint serve: fixed `replicas`, or autoscaled between min and max (reacting as the
    autoscaling settings say: trainml_cli/replicaspec.py); and where Ray places them (`ray_actor_options`)."""

    replicas: int | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    upscale_delay: float | None = None
    downscale_delay: float | None = None
    target_ongoing: float | None = None
    idle_timeout: float | None = None  # the local backend's (replicaspec.LOCAL)
    cold_start_timeout: float | None = None
    ray_actor_options: dict = field(default_factory=dict)

    @property
    def autoscaled(self) -> bool:
        return self.min_replicas is not None or self.max_replicas is not None

    @classmethod
    def of(cls, endpoint: dict) -> Scaling:
        """From a job's `endpoint` spec."""
        return cls(**{f.name: endpoint.get(f.name) for f in fields(cls) if endpoint.get(f.name) is not None})

    def as_endpoint(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class Launch:
    """Everything needed to start one job's endpoint, whichever backend runs it."""

    job_id: str
    runtime: LaunchSpec  # model dir, routes, limits: the runtime's own arguments
    env: dict[str, str]  # the process environment on this machine (local backend)
    job_env: dict[str, str] = field(default_factory=dict)  # only what the job itself sets (remote backends)
    python: str = sys.executable
    name: str = ""
    resources: dict = field(default_factory=dict)  # cpu_count, gpu_count, ... as in the job's spec
    scaling: Scaling = field(default_factory=Scaling)
    pip: list[str] = field(default_factory=list)  # packages a remote backend installs (local: built by uv first)
    requirements: str | None = None  # a requirements file inside the model dir, relative to it
    workdir: str | None = None  # the job's folder
    revision: int = 1  # which revision of the job it serves (revisions.py)

    @property
    def output_dir(self) -> Path:
        """Where its processes print to: its revision's folder, beside its routes (backends/revisionoutput.py)."""
        return self.route_file.parent

    @property
    def model_dir(self):
        return Path(self.runtime.model_dir)

    @property
    def route_file(self):
        return Path(self.runtime.route_file)

    def command(self, fd: int, ready_fd: int | None = None) -> list[str]:
        """The local runtime's command line, serving on the inherited socket `fd` (and handing it to a control plane
        that adopts it: handover.py); it writes to the inherited pipe `ready_fd` once its code has loaded."""
        spec = replace(self.runtime, fd=fd, hand_over=True, ready_fd=ready_fd)
        return [self.python, "-m", "trainml_cli.runtime", *spec.to_argv()]


def elsewhere(job: JobRecord, backend: str) -> str | None:
    """Why a control plane on `backend` must leave this job alone: it was launched on another backend and is not
    stopped or failed, so its endpoint may still serve there (a Ray application, a process on this machine).
    Launching it here would run it twice; ending it there is not this backend's to do. None: it is this one's."""
    recorded = job.backend
    if not recorded or recorded == backend or job.status.is_final:
        return None
    return (f"launched on the {recorded} backend, and this control plane runs the {backend} backend: left as it "
            f"is (still serving there if it was); restart the control plane with --backend {recorded} (trainml "
            f"server restart --backend {recorded} ...) to manage it")


class EndpointListener(Protocol):
    def output(self, stream: str, line: str, revision: int | None = None) -> None: ...
    def event(self, message: str) -> None: ...
    def launched(self, pid: int | None, pid_start: int | None, restart: bool) -> None: ...
    def ready(self) -> None: ...
    def restarted(self, message: str) -> None:
        """One of the endpoint's processes died and the endpoint replaces it itself (a Ray replica): a restart
        for the job's count and log, with no change of status."""
    def tail(self) -> list[str]: ...
    def log_offsets(self) -> dict: ...
    def save_log_offsets(self, offsets: dict) -> None: ...
    def gpus(self, gpus: list) -> None:
        """The GPUs the job holds now (a job scaled to zero gives them back: backends/gpulease.py)."""


@dataclass
class Outcome:
    failed: bool
    reason: str | None = None


class Endpoint(Protocol):
    """One job's endpoint wherever it runs: all the job service asks of it."""

    port: int | None

    @property
    def url(self) -> str: ...
    def request_stop(self) -> None: ...
    def detach(self) -> None: ...
    async def run(self) -> Outcome: ...
    async def metrics(self) -> dict | None: ...


Say = Callable[[str], None]


class Backend(Protocol):
    """Where endpoints run."""

    name: str
    builds_environments: bool  # True: the job service builds a local environment first and passes its python
    # What runs a job that has no environment of its own, as `job get` says it; None: the control plane's Python.
    default_python: str | None

    def check_resources(self, resources: dict, replicas: int | None = None) -> None:
        """Raise UsageError (422) for resources this backend can never give; nothing is created."""

    async def gpus(self) -> list[dict]:
        """[{type, names, price, count, free, where}]: every GPU type, and how many of each this backend has."""

    def autoscale_options(self, scaling: Scaling, max_concurrency: int | None, workdir: Path) -> dict:
        """The runtime options (launchspec) that autoscale an endpoint on this backend; {}: the backend scales
        replicas itself (Ray) or the job is not autoscaled."""
        return {}

    def check_features(self, scaling: dict, auth: bool, environment: dict) -> None:
        """Raise UsageError (422) for what a job asks that this backend cannot honour (autoscaling, Ray's replica
        options, endpoint keys, an interpreter of its own), rather than run it without; nothing is created.
        `scaling`: how its copies are counted and placed (scaling.check_scaling's fields and ray_actor_options)."""

    def place(self, job_id: str, resources: dict, held: list | None, say: Say) -> Awaitable[list]:
        """The job's resources (GPU records the job keeps), waiting while they are taken; `held`: what an
        adopted endpoint already runs on."""

    async def release(self, job_id: str) -> None: ...

    def endpoint(self, launch: Launch, listener: EndpointListener, port: int | None, adopt=None) -> Endpoint: ...

    def url(self, job: JobRecord) -> str | None:
        """Where a live job answers, from its record."""

    async def hold_socket(self, endpoint: Endpoint) -> None:
        """Before a switch of revisions: take back the listening socket an adopted endpoint holds (the only copy
        after a control plane restart), or raise Conflict with nothing created. Backends whose endpoints do not
        hold a socket of ours (Ray's proxy owns it) do nothing."""

    async def rotate_key(self, workdir: Path, key: str, endpoint: Endpoint | None) -> str:
        """Hand a job's new endpoint key to where its endpoint reads it (`workdir`: the job's folder; `endpoint`:
        the live one, None when nothing runs). Local: returns once every worker accepts the new key and refuses the
        old one. Returns when the old key stops working, for the job's log."""

    async def adoptable(self, jobs: list[JobRecord]) -> dict:
        """Job id -> adoption token for the live jobs whose endpoints an earlier control plane left serving."""

    async def clean_up(self, jobs: list[JobRecord], adopted: dict) -> None:
        """End what the endpoints of jobs that were not adopted left behind."""

    async def settle(self) -> None:
        """Before the control plane exits: finish what ended jobs left going on (Ray: removals of applications that
        never served, rayremovals.py)."""

    async def describe(self) -> dict:
        """The backend and its resources, for `trainml server status`."""
