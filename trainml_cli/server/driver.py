"""A job's driver: the one task on the event loop that runs a job while it should run (the job service, jobs.py,
starts one per job and asks it to stop).

It fetches the model code into `HOME/jobs/ID/model` (waiting for data/model download; skipped when an earlier
run did), gets the job's resources from the backend (waiting for resources), builds the job's own environment
when the backend runs endpoints here (starting), and hands the endpoint to the backend, which launches it,
restarts it after a crash as the policy says (backends/base.py `Policy`) and reports through the `Listener`
until it is stopped, fails, or is left serving for the next control plane (detached). Every status change goes
through the service's `move`.

The `Listener` is the backend's way back: it turns what the backend sees of the endpoint (launched, ready,
a replica replaced, output lines) into the job's record, status and log.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .. import endpointenv
from ..contracts import OUTPUT_STAMPS_ENV
from ..environment import job_pip
from ..errors import NotFound, TrainMLError, UsageError
from ..launchspec import CAPTURE_FOLDER, LaunchSpec
from . import archives, endpointkeys, sources
from .backends.base import Endpoint, Launch, Scaling
from .jobrecord import JobRecord
from .redaction import redact
from .states import JobStatus
from .tracing import NOTHING_OPEN

if TYPE_CHECKING:
    from .jobs import Jobs

log = logging.getLogger("trainml.server")

S = JobStatus


class Driver:
    """One job's task, from launch until it ends; what the job service asks of it: stop, end, detach, wait."""

    def __init__(self, jobs: Jobs, job_id: str, adopt=None):
        self.jobs = jobs
        self.job_id = job_id
        self.adopt = adopt  # the backend's token for an endpoint an earlier control plane left serving
        self.endpoint: Endpoint | None = None
        self.stopping = False
        self.detached = False  # the control plane restarts and leaves the endpoint serving
        self._began = False
        self.task = asyncio.create_task(self._run(), name=f"job-{job_id}")
        self.task.add_done_callback(self._never_ran)

    def stop(self) -> None:
        """End the endpoint (or the step before it); the job then becomes stopped."""
        self.stopping = True
        self.end()

    def detach(self) -> None:
        """End the driver but leave the endpoint serving, billed, for the next control plane to adopt."""
        if self.endpoint is not None:
            self.detached = True
            self.endpoint.detach()
        else:
            self.task.cancel()

    def end(self) -> None:
        """End the endpoint, or the step before it; the job's status stays as it is unless it was stopped."""
        if self.endpoint is not None:
            self.endpoint.request_stop()
        else:
            self.task.cancel()

    async def wait(self) -> None:
        await asyncio.gather(self.task, return_exceptions=True)

    @property
    def live_replicas(self) -> list[dict] | None:
        """The replicas a backend that places them reports (Ray: Serve's, at the last poll); None elsewhere."""
        return getattr(self.endpoint, "live_replicas", None)

    @property
    def scale(self) -> dict | None:
        """An autoscaled local endpoint's scale now (replicas, bounds, cold_start_ms); None elsewhere."""
        return getattr(self.endpoint, "scale", None)

    def _never_ran(self, task: asyncio.Task) -> None:
        """A driver cancelled before its first step never reached its own clean-up; do it here."""
        if self._began:
            return
        self.jobs.driver_ended(self)
        if self.stopping:
            self.jobs.move(self.job_id, S.STOPPED)

    async def _run(self) -> None:
        self._began = True
        jobs, job_id = self.jobs, self.job_id
        failure = None
        # Traces (tracing.py): the job's start-up, ended once it serves, with a span per step inside it.
        trace = jobs.tracing
        listener = Listener(jobs, job_id)
        listener.starting = trace.begin("job start-up", current=True, **{"trainml.job_id": job_id})
        try:
            with trace.step("fetch"):
                await self._fetch()
            job = jobs.store.job(job_id)
            if not job.status.is_launched:
                jobs.move(job_id, S.WAITING_RESOURCES)
            held = job.gpus if self.adopt is not None else None
            with trace.step("resources"):
                gpus = await jobs.backend.place(job_id, job.spec["resources"], held, self._say)
            jobs.store.update_job(job_id, gpus=gpus)
            # After an update (revisions.py) the job serves its newest serving revision's code, from its own folder.
            number = jobs.revisions.current(job_id)
            folder = jobs.revisions.folder(job_id, number)
            python = None
            if jobs.backend.builds_environments:
                with trace.step("environment build"):
                    python = await self._environment(job.spec, folder / "model")
            listener.starting.add(trace.begin("start", **{"trainml.backend": jobs.backend.name}))
            endpoint = jobs.backend.endpoint(self._launch(job, gpus, python, folder, number), listener,
                                             job.port, adopt=self.adopt)
            self.endpoint = endpoint
            jobs.store.update_job(job_id, port=endpoint.port)
            if self.stopping:
                endpoint.request_stop()
            outcome = await endpoint.run()
            if outcome.failed and not self.stopping:
                failure = outcome.reason
        except asyncio.CancelledError:
            if not self.stopping:  # the control plane is shutting down: leave the status for reconcile
                raise
        except TrainMLError as exc:
            failure = str(exc)
        except Exception as exc:  # a bug of ours must fail this job, not the control plane
            log.exception("job %s: driver crashed", job_id)
            failure = f"internal error in the control plane: {type(exc).__name__}: {exc}"
        finally:
            listener.starting.end(failure)  # it never served; or ended with the job, had it not started
            if not self.detached:  # a detached endpoint serves (and is billed) on; the next control plane adopts it
                jobs.bill(job_id, False)
                jobs.store.update_job(job_id, pid=None, pid_start=None)
            await jobs.backend.release(job_id)
            jobs.driver_ended(self)
        if self.detached:
            return
        if failure is not None:
            jobs.move(job_id, S.FAILED, failure)
        elif self.stopping:
            jobs.move(job_id, S.STOPPED)

    def _say(self, line: str) -> None:
        self.jobs.logs.event(self.job_id, line)

    async def _fetch(self) -> None:
        """Put the model code into the job's folder, unless an earlier run already did."""
        jobs, job_id = self.jobs, self.job_id
        dest = jobs.workdir(job_id) / "model"
        if dest.exists():
            return
        job = jobs.store.job(job_id)
        jobs.move(job_id, S.WAITING_DOWNLOAD)
        source = await self.fetch_model(job.spec, dest)
        jobs.store.update_job(job_id, source=source)

    async def fetch_model(self, spec: dict, dest: Path) -> dict:
        """Put the model code `spec` names into `dest`; what was fetched: {git_commit?, size}."""
        jobs, job_id = self.jobs, self.job_id
        model = spec["model"]
        kind = model["source_type"]
        source: dict = {}
        limit = spec["resources"]["disk_size"] * 1024**3
        if kind == "local":
            archive = jobs.uploads.path(model["upload_id"])
            self._say("unpacking the uploaded model folder")
            await _cancellable(archives.unpack, archive, dest, limit)
            jobs.uploads.discard(model["upload_id"])
        elif kind == "git":
            uri = jobs.git_credentials.uri(job_id) or model["source_uri"]
            shown = redact(uri)

            def say(line: str) -> None:
                self._say(f"git: {line.replace(uri, shown)}")

            source["git_commit"] = await sources.clone(uri, model.get("git_ref"), dest, say)
            self._say(f"cloned {shown} at {source['git_commit']}")
        else:
            stored = jobs.models.path(model["model_id"])
            if not stored.is_dir():
                raise NotFound(f"stored model {model['source_uri']!r} ({model['model_id']}) no longer exists")
            await asyncio.to_thread(sources.copy_tree, stored, dest)
        source["size"] = await asyncio.to_thread(sources.tree_size, dest)
        if source["size"] > limit:
            await asyncio.to_thread(shutil.rmtree, dest, True)
            raise UsageError(f"the model code takes {source['size'] / 1024**3:.1f} GB, more than disk_size "
                             f"({spec['resources']['disk_size']} GB)")
        return source

    async def _environment(self, spec: dict, model_dir: Path) -> Path | None:
        """The python of the job's own environment, built first if need be (status starting); None: the default."""
        jobs, job_id = self.jobs, self.job_id
        if jobs.store.job(job_id).status is S.WAITING_RESOURCES and \
                await asyncio.to_thread(jobs.environments.plan, spec["environment"], model_dir) is not None:
            jobs.move(job_id, S.STARTING)
        python, built = await self.environment(spec, model_dir)
        if built is not None:
            source = dict(jobs.store.job(job_id).source)
            source["environment"] = built
            jobs.store.update_job(job_id, source=source)
        return python

    async def environment(self, spec: dict, model_dir: Path) -> tuple[Path | None, dict | None]:
        """(the python of the code's own environment, built first if need be, and what it is); (None, None): the
        default interpreter."""
        jobs, job_id = self.jobs, self.job_id
        plan = await asyncio.to_thread(jobs.environments.plan, spec["environment"], model_dir)
        if plan is None:
            return None, None
        python = await jobs.environments.prepare(job_id, plan, model_dir, self._say)
        return python, {"key": plan.key, "python_version": plan.interpreter.version,
                        "requirements_file": plan.requirements_file}

    def _launch(self, job: JobRecord, gpus: list[dict], python: Path | None = None, folder: Path | None = None,
                revision: int = 1) -> Launch:
        jobs, job_id, spec = self.jobs, self.job_id, job.spec
        job_env = {item["key"]: item["value"] for item in spec["environment"]["env"]}
        job_env["TRAINML_JOB_ID"] = job_id
        for name, value in jobs.tracing.endpoint_env(job.name).items():  # the job's own settings win
            job_env.setdefault(name, value)
        env = endpointenv.inherited(os.environ, jobs.pass_env)  # not the operator's secrets (endpointenv.py)
        names = spec["environment"].get("secrets") or []
        if names and jobs.vault is not None:
            values = jobs.vault.values(names)
            job_env.update(values)  # a remote backend hands them to its replicas too
            for name in names:
                if name not in values:
                    self._say(f"secret {name} no longer exists; the endpoint runs without it")
        env.update(job_env)
        env.update(
            PYTHONUNBUFFERED="1",  # so model code's prints reach the log as they happen
            # stdout and stderr are two files here: each line's stamp says where it goes between the other's lines
            **{OUTPUT_STAMPS_ENV: "1"},
            CUDA_VISIBLE_DEVICES=",".join(g["device"] for g in gpus),
        )
        endpoint = spec["endpoint"]
        scaling = Scaling.of(endpoint)
        # Local worker processes: --replicas when given, else cpu_count (its meaning before replicas existed).
        workers = scaling.replicas or spec["resources"]["cpu_count"]
        workdir = jobs.workdir(job_id)
        folder = folder or workdir
        runtime = LaunchSpec(
            model_dir=str(folder / "model"), route_file=str(folder / "routes.json"),
            workers=workers, max_concurrency=endpoint.get("max_concurrency"), max_queue=endpoint.get("max_queue"),
            timeout=endpoint.get("timeout"), capture=endpoint.get("capture"),
            capture_max_bytes=endpoint.get("capture_max_bytes"), capture_size=endpoint.get("capture_size"),
        )
        for key, value in jobs.backend.autoscale_options(scaling, endpoint.get("max_concurrency"), workdir).items():
            setattr(runtime, key, value)
        if endpoint.get("capture"):  # in the job's folder, whichever revision serves: `job requests` reads it
            runtime.capture_dir = str(workdir / CAPTURE_FOLDER)
            # Names only: the runtime redacts these variables' values (the job's secrets) from what it keeps.
            runtime.secret_env = sorted(name for name in names if name in job_env)
        launch = Launch(job_id=job_id, runtime=runtime, env=env, job_env=job_env, name=job.name,
                        resources=spec["resources"], scaling=scaling, pip=job_pip(spec["environment"]),
                        requirements=spec["environment"].get("requirements"), workdir=str(workdir),
                        revision=revision)
        # The secrets as they are now: a key rotated while the job waited for its resources is the one it gets.
        key_file = endpointkeys.key_file(workdir, jobs.store.job(job_id).secrets)
        if key_file is not None:
            runtime.key_file = str(key_file)
        if jobs.tls:
            runtime.tls_certfile, runtime.tls_keyfile = jobs.tls
        if python is not None:
            launch.python = str(python)
            # As if activated: a subprocess of the model finds the environment's python and scripts first.
            env["VIRTUAL_ENV"] = str(python.parent.parent)
            env["PATH"] = str(python.parent) + os.pathsep + env.get("PATH", os.defpath)
        else:
            if jobs.python:
                launch.python = jobs.python
            # On an interpreter the platform did not build, the runtime imports trainml_cli as the control plane did.
            import_path = endpointenv.runtime_import_path(os.environ)
            if import_path and "PYTHONPATH" not in env:
                env["PYTHONPATH"] = import_path
        return launch


async def _cancellable(function, *args):
    """Run a fetch step in a thread that stops within moments when the job's driver is cancelled (the job was
    stopped or removed), and wait until it has: a removal frees the disk only once nobody writes there."""
    cancel = threading.Event()
    future = asyncio.get_running_loop().run_in_executor(None, functools.partial(function, *args, cancel=cancel))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        cancel.set()
        await asyncio.gather(future, return_exceptions=True)
        raise


class Listener:
    """Turns what the backend sees of a job's endpoint into the job's record, status and log lines."""

    def __init__(self, jobs: Jobs, job_id: str):
        self.jobs = jobs
        self.job_id = job_id
        self.starting = NOTHING_OPEN  # the start-up's spans (tracing.py), ended when the endpoint is ready

    def output(self, stream: str, line: str, revision: int | None = None) -> None:
        self.jobs.logs.write(self.job_id, stream, line, revision)

    def event(self, message: str) -> None:
        self.jobs.logs.event(self.job_id, message)

    def launched(self, pid: int, pid_start: int | None, restart: bool) -> None:
        jobs, job = self.jobs, self.jobs.store.job(self.job_id)
        fields = {"pid": pid, "pid_start": pid_start}
        if restart:
            fields["restarts"] = job.restarts + 1
        jobs.store.update_job(self.job_id, **fields)
        jobs.bill(self.job_id, True)
        if job.status is S.STOPPING:  # a stop came in while it was being launched; it will end it
            return
        if restart or job.status is not S.STARTING:
            jobs.move(self.job_id, S.STARTING)

    def restarted(self, message: str) -> None:
        job = self.jobs.store.job(self.job_id)
        if job is not None:
            self.jobs.store.update_job(self.job_id, restarts=job.restarts + 1)
            self.jobs.logs.event(self.job_id, message)

    def ready(self) -> None:
        self.starting.end()
        if self.jobs.store.job(self.job_id).status is S.STOPPING:
            return
        self.jobs.move(self.job_id, S.RUNNING)
        self.jobs.logs.event(self.job_id, f"Endpoint is running at: {self.jobs.get(self.job_id)['url']}")

    def tail(self) -> list[str]:
        return self.jobs.logs.tail(self.job_id)

    def log_offsets(self) -> dict:
        job = self.jobs.store.job(self.job_id)
        return job.log_offsets if job else {}

    def gpus(self, gpus: list) -> None:
        self.jobs.store.update_job(self.job_id, gpus=gpus)

    def save_log_offsets(self, offsets: dict) -> None:
        self.jobs.logs.flush()  # the lines read up to these offsets are stored before the offsets are
        self.jobs.store.update_job(self.job_id, log_offsets=offsets)
