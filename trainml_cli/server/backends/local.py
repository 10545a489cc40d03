"""The local backend: runs each endpoint as its own process group on this machine, watches it, restarts it,
stops it, and hands out this machine's GPUs.

The endpoint is the runtime's command line (launchspec.LaunchSpec.to_argv), never an import:

    python -m trainml_cli.runtime --model-dir DIR --route-file ROUTES --fd FD --workers N ...

The supervisor binds the endpoint's socket itself (127.0.0.1, the job's recorded port when it can have it
again, else a free one), keeps it for the job's lifetime and hands the same socket to every restart. So the
job's URL never changes across crashes, and requests that arrive while a crashed endpoint restarts wait in the
socket's backlog instead of being refused.

The endpoint depends on nothing of the control plane's: it holds its own copy of the socket, writes its output
to files in its revision's folder (revisionoutput.py, never a pipe) and is no tether's child. So when the
control plane dies, even by kill -9, every endpoint keeps serving; the next control plane adopts it
(`Adoption`: recorded pid, process start time and port) and supervises it as if it had started it, except
that it learns of its exit through a pidfd, without an exit code (processes.AdoptedProcess). Restarting an
adopted endpoint that died binds its port again at once.

Each endpoint's life is one loop (`LocalEndpoint.run`): start the process (or adopt it), wait until `/ping`
answers 200 (running), then wait for it to exit, pinging it meanwhile (one that stops answering for
`unresponsive_after` seconds is hung: it is killed and counts as a crash), decide. Exit code 3 means the model
code cannot load: failed at once, with the last output lines as reason. A serving endpoint that crashes is
restarted at once; a crash loop backs off (0.5 s doubling to 30 s, reset after a minute of good health); crashing
START_ATTEMPTS times in a row before ever becoming ready marks it failed. Stopping sends SIGTERM to the whole
group, then SIGKILL after a grace period (Policy.stop_grace, default 10 s). Detaching (`trainml server restart`)
ends the loop and leaves the endpoint serving.

The loop only reports what happens through an `EndpointListener`; job statuses are the job service's business.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...contracts import LoadFailure
from ...errors import UsageError
from ...launchspec import EXIT_LOAD_FAILED, EXIT_USAGE, KEY_RECHECK_SECONDS
from .. import endpointkeys, resources as res
from ..jobrecord import JobRecord
from ..processes import (
    AdoptedProcess,
    describe_exit,
    is_endpoint,
    kill_group,
    process_start_time,
    reap_orphans,
    runtimes_naming,
)
from . import gpulease
from .base import EndpointListener, Launch, Outcome, Policy, Say
from .ports import bind_socket, rebind_socket
from .probes import ReadyPipe, first, http_get
from .revisionoutput import RevisionOutput
from .scaling import check_local_scaling, launch_fields, live_replicas, scale_summary
from .switch import hold_socket

START_ATTEMPTS = 3
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0
PING_FIRST = 0.05
PING_MAX = 0.25
TAIL_LINES = 20


@dataclass(frozen=True)
class Adoption:
    """An endpoint process left serving by an earlier control plane (see processes.is_endpoint)."""

    pid: int
    pid_start: int | None


@dataclass
class LocalBackend:
    """Endpoints as process groups on this machine; GPUs from this machine's pool."""

    host: str = "127.0.0.1"
    policy: Policy = field(default_factory=Policy)
    pool: res.GpuPool = field(default_factory=lambda: res.GpuPool([]))
    tls: bool = False  # endpoints serve HTTPS (their launch says with which certificate); probes use TLS too
    name: str = "local"
    builds_environments: bool = True
    default_python = None  # the control plane's own (or its --python)

    def check_resources(self, resources: dict, replicas: int | None = None) -> None:
        self.pool.check(resources)
        res.check_workers(resources, replicas)

    async def gpus(self) -> list[dict]:
        return [{**row, "where": "this machine"} for row in res.gpu_listing(self.pool)]

    def check_features(self, scaling: dict, auth: bool, environment: dict) -> None:
        check_local_scaling(scaling)
        if scaling.get("ray_actor_options"):
            raise UsageError.at(("endpoint", "ray_actor_options"), "Ray's replica options need the Ray backend "
                                "(trainml server run --backend ray)")

    autoscale_options = staticmethod(launch_fields)  # runtime/autoscaler.py scales, in the endpoint's process

    async def place(self, job_id: str, resources: dict, held: list | None, say: Say) -> list:
        if held is not None:  # an adopted endpoint runs on the GPUs it was given
            return self.pool.claim(job_id, held)
        gpus = self.pool.try_take(job_id, resources)
        if gpus is None:
            say(f"waiting for {res.gpus_needed(resources)} free GPU(s) of type {' or '.join(resources['gpu_types'])}")
            gpus = await self.pool.acquire(job_id, resources)
        return gpus

    async def release(self, job_id: str) -> None:
        await self.pool.release(job_id)

    def endpoint(self, launch: Launch, listener: EndpointListener, port: int | None,
                 adopt: Adoption | None = None) -> LocalEndpoint:
        endpoint = LocalEndpoint(launch, listener, self.host, port, self.policy, adopt=adopt)
        if gpulease.needs_lease(launch):  # scaled to zero, it gives its GPUs back to the pool
            endpoint.tasks.append(lambda: gpulease.follow(self.pool, launch, listener, adopt is not None))
        if self.tls:
            from ...tls import loopback_client_context

            endpoint.ssl = loopback_client_context()
        return endpoint

    def url(self, job: JobRecord) -> str | None:
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        shown = f"[{host}]" if ":" in host else host
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{shown}:{job.port}" if job.port else None

    async def rotate_key(self, workdir: Path, key: str, endpoint: LocalEndpoint | None) -> str:
        # Every worker reads the file again when it changes (runtime/auth.py): nothing to restart. A worker takes
        # the new key at its first call with it; it lets go of the old one at its first call once
        # KEY_RECHECK_SECONDS have passed, so waiting them out means the old key is refused when we return.
        endpointkeys.write_key(workdir, key)
        if endpoint is not None:
            await asyncio.sleep(KEY_RECHECK_SECONDS + 0.1)
        return "now"

    async def switch(self, endpoint: LocalEndpoint, launch: Launch, on_spawn=None) -> tuple[int, int | None]:
        """Serve `launch` (a new revision) on the endpoint's socket in place of its process (switch.py)."""
        from .switch import switch
        return await switch(endpoint, launch, self.policy.start_timeout, on_spawn)

    async def recreate(self, endpoint: LocalEndpoint, launch: Launch, on_spawn=None) -> tuple[int, int | None, float]:
        """Stop the endpoint's process, then serve `launch` on its socket (switch.py); also the downtime."""
        from .switch import recreate
        return await recreate(endpoint, launch, self.policy.start_timeout, on_spawn)

    hold_socket = staticmethod(hold_socket)  # an adopted endpoint's socket, taken back before a switch

    async def end_unfinished(self, pid: int | None, pid_start: int | None, model_dir: Path) -> None:
        """End a new revision's process that an earlier control plane left starting (it died mid-switch): the one
        recorded, or, had it died before recording one, any started on the revision's model folder."""
        if pid:
            await reap_orphans(pid, pid_start, self.policy.stop_grace)
            return
        await asyncio.gather(*(reap_orphans(p, process_start_time(p), self.policy.stop_grace)
                               for p in runtimes_naming(str(model_dir))))

    async def adoptable(self, jobs: list[JobRecord]) -> dict:
        return {j.id: Adoption(j.pid, j.pid_start) for j in jobs if is_endpoint(j.pid, j.pid_start)}

    async def clean_up(self, jobs: list[JobRecord], adopted: dict) -> None:
        await asyncio.gather(*(reap_orphans(j.pid, j.pid_start, self.policy.stop_grace)
                               for j in jobs if j.pid and j.id not in adopted))

    async def settle(self) -> None:
        pass  # an endpoint's process is gone when its job ends

    async def describe(self) -> dict:
        import os

        return {"backend": self.name, "cpus": os.cpu_count(),
                "gpus": [{"index": g.index, "name": g.name} for g in self.pool.gpus]}


class LocalEndpoint:
    """One job's endpoint on this machine, across all its restarts (and control planes)."""

    def __init__(self, launch: Launch, listener: EndpointListener, host: str = "127.0.0.1", port: int | None = None,
                 policy: Policy | None = None, adopt: Adoption | None = None):
        self.launch = launch
        self.policy = policy or Policy()
        self.listener = listener
        self.bind_host = host
        # An adopted endpoint holds its socket itself; we bind one again only to restart it after it died.
        self.sock = None if adopt else bind_socket(host, port)
        # Probes (and the URL) go to loopback when the endpoint listens on every address.
        self.host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        self.port: int = self.sock.getsockname()[1] if self.sock else port
        self.process = AdoptedProcess(adopt.pid, adopt.pid_start) if adopt else None
        self._adopted = self.process
        self.output = RevisionOutput(launch, listener)  # each revision's lines, tagged with it
        self._stop = asyncio.Event()
        # A new revision took over (switch.py): the loop watches the new process from then on.
        self.swapped = asyncio.Event()
        # A recreate stops the process itself: wait for the new one, or for `resumed` (it could not start).
        self.replacing = False
        self.resumed = asyncio.Event()
        self._detached = False
        self.restarts = 0
        self.ssl = None  # a client SSLContext when the endpoint serves HTTPS
        self._ready_pipe: ReadyPipe | None = None  # the spawned process's, until its readiness is known
        self.tasks: list = []  # coroutine functions run beside the endpoint for its life (gpulease.follow)

    live_replicas = property(lambda self: live_replicas(self.launch))  # autoscaled: the leader's scale file
    scale = property(lambda self: scale_summary(self.launch))

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl else "http"
        return f"{scheme}://[{self.host}]:{self.port}" if ":" in self.host else f"{scheme}://{self.host}:{self.port}"

    def request_stop(self) -> None:
        self._stop.set()

    def detach(self) -> None:
        """Stop supervising but leave the endpoint serving (the control plane restarts; the next one adopts it)."""
        self._detached = True
        self._stop.set()

    async def run(self) -> Outcome:
        """Keep the endpoint up until stopped (Outcome(failed=False)) or until it cannot be (failed=True)."""
        follower = asyncio.create_task(self.output.follow(), name=f"output-{self.launch.job_id}")
        beside = [asyncio.create_task(task()) for task in self.tasks]
        try:
            return await self._supervise()
        finally:
            if not self._detached and self.process is not None and self.process.returncode is None:
                await self._terminate(self.process)
            for task in (follower, *beside):
                task.cancel()
            await asyncio.gather(follower, *beside, return_exceptions=True)
            if isinstance(self.process, AdoptedProcess):
                self.process.close()
            self.output.finish(last_lines=not self._detached)
            if self.sock is not None:
                self.sock.close()

    async def _supervise(self) -> Outcome:
        backoff = BACKOFF_FIRST
        at_once = True  # the first crash after serving restarts without a backoff
        start_failures = 0
        restart = False
        while not self._stop.is_set():
            if self._adopted is not None:
                process, self._adopted = self._adopted, None
                self.listener.event(f"adopted endpoint process {process.pid}, still serving on {self.url}")
            else:
                if self.sock is None:
                    self.sock = await rebind_socket(self.bind_host, self.port)
                    self.port = self.sock.getsockname()[1]
                process = self.process = await self._spawn(restart)
            ready = await self._until_ready(process)
            if ready:
                self.listener.ready()
                began = time.monotonic()
                while True:
                    await first(process.wait(), self._stop.wait(), self._unresponsive(), self.swapped.wait())
                    if self.replacing and not self.swapped.is_set() and not self._stop.is_set():
                        await first(self.swapped.wait(), self._stop.wait(), self.resumed.wait())
                    if not self.swapped.is_set() or self._stop.is_set():
                        break
                    self.swapped.clear()  # the old process is being drained by the switch; watch the new one
                    process = self.process
                if process.returncode is None and not self._stop.is_set():
                    self.listener.event(f"endpoint process {process.pid} has not answered /ping for "
                                        f"{self.policy.unresponsive_after:g}s; restarting it")
                    await self._terminate(process, grace=2.0)
                if time.monotonic() - began > STABLE_AFTER:
                    backoff, at_once = BACKOFF_FIRST, True
                start_failures = 0
            if self._stop.is_set():
                if not self._detached:
                    await self._terminate(process)
                return Outcome(False)
            if process.returncode is None:  # not ready in time: counts as a failed start
                self.listener.event(f"endpoint not ready after {self.policy.start_timeout:g} seconds; killing it")
                await self._terminate(process, grace=2.0)
            else:
                kill_group(process.pid, signal.SIGKILL)  # workers that outlived their leader still hold the socket
            self.output.catch_up()  # its last lines, for the reason below
            code = process.returncode
            if not ready:
                start_failures += 1
            self.listener.event(f"endpoint process {process.pid} {describe_exit(code)}")
            if code == EXIT_LOAD_FAILED:
                failure = self.output.load_failure or LoadFailure("")
                return Outcome(True, failure.headline + "\n" + "\n".join(self.listener.tail()))
            if code == EXIT_USAGE:
                return Outcome(True, "the endpoint runtime refused its arguments:\n" + "\n".join(self.listener.tail()))
            if start_failures >= START_ATTEMPTS:
                lines = "\n".join(self.listener.tail())
                return Outcome(True, f"endpoint crashed {start_failures} times while starting; last output:\n{lines}")
            # it was adopted: take its port back at once, so callers wait instead of being refused
            if self.sock is None:
                self.sock = await rebind_socket(self.bind_host, self.port)
                self.port = self.sock.getsockname()[1]
            self.restarts += 1
            if ready and at_once:  # callers wait in the socket's backlog; the downtime is the start-up
                at_once = False
                self.listener.event(f"restarting at once (restart {self.restarts})")
            else:
                self.listener.event(f"restarting in {backoff:.1f}s (restart {self.restarts})")
                await first(asyncio.sleep(backoff), self._stop.wait())
                backoff = min(backoff * 2, BACKOFF_MAX)
            restart = True
        return Outcome(False)

    async def _spawn(self, restart: bool) -> asyncio.subprocess.Process:
        fd = self.sock.fileno()
        files = self.output.open_for_child()
        self._ready_pipe = ReadyPipe()
        try:
            process = await asyncio.create_subprocess_exec(
                *self.launch.command(fd, self._ready_pipe.write_fd),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=files["stdout"],
                stderr=files["stderr"],
                env=self.launch.env,
                cwd=str(self.launch.model_dir),
                pass_fds=(fd, self._ready_pipe.write_fd),
                start_new_session=True,  # its own process group: a stop reaches every worker it forks
            )
        except BaseException:
            self._ready_pipe.close()
            raise
        finally:
            self._ready_pipe.close_write_end()
            for file in files.values():
                file.close()
        self.listener.launched(process.pid, process_start_time(process.pid), restart)
        self.listener.event(f"endpoint process {process.pid} started on {self.url}")
        return process

    async def _until_ready(self, process) -> bool:
        # A process we started says when it has loaded (ReadyPipe); probes for the rest (adopted, a group's leader)
        pipe, self._ready_pipe = self._ready_pipe, None
        notified = pipe.watch() if pipe is not None else asyncio.Event()
        deadline = time.monotonic() + self.policy.start_timeout
        interval = PING_FIRST
        try:
            while process.returncode is None and not self._stop.is_set():
                status, _ = await http_get(self.host, self.port, "/ping", timeout=1.0, ssl=self.ssl)
                if status == 200:
                    return True
                if time.monotonic() > deadline:
                    return False
                await first(asyncio.sleep(interval), process.wait(), self._stop.wait(), notified.wait())
                if notified.is_set():  # it said so once (or closed the pipe): the probes pace the rest
                    notified = asyncio.Event()
                # Each probe is an access-log line: quick at first, then sparser while a big model loads.
                interval = min(interval * 1.5, PING_MAX)
            return False
        finally:
            if pipe is not None:
                pipe.close()

    async def _unresponsive(self) -> None:
        """Return once the running endpoint has not answered /ping for `unresponsive_after` seconds (hung)."""
        interval = max(0.2, min(5.0, self.policy.unresponsive_after / 3))
        answered = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            status, _ = await http_get(self.host, self.port, "/ping", timeout=interval, ssl=self.ssl)
            if status is not None:  # any answer: alive (a busy endpoint still answers /ping at once)
                answered = time.monotonic()
            elif time.monotonic() - answered >= self.policy.unresponsive_after:
                return

    async def _terminate(self, process, grace: float | None = None) -> None:
        grace = self.policy.stop_grace if grace is None else grace
        kill_group(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except asyncio.TimeoutError:
            self.listener.event(f"endpoint process {process.pid} still running {grace:.0f}s "
                                "after SIGTERM; sending SIGKILL")
            kill_group(process.pid, signal.SIGKILL)
            await process.wait()
        kill_group(process.pid, signal.SIGKILL)

    async def metrics(self) -> dict | None:
        # JSON, not Prometheus text
        status, body = await http_get(self.host, self.port, "/metrics?format=json", timeout=2.0, ssl=self.ssl)
        if status != 200:
            return None
        try:
            return json.loads(body)
        except ValueError:
            return None

