"""Jobs: the service behind /api/jobs. It keeps job records and drives each job's life (payloads: payload.py).

Every job that should run has one driver task on the event loop (`_drive`): fetch the model code into
`HOME/jobs/ID/model` (waiting for data/model download), get its GPUs (waiting for resources), then hand it to
the supervisor (starting, running, restarts) until it is stopped or fails. All status changes go through
`_move`, which asks `states.transition` first, writes the record, logs an event and wakes long-polls.

A job record, as the API returns it (trainML's payload plus what the platform knows):

    {"id", "name", "type": "endpoint", "status", "reason", "url", "port",
     "resources": {gpu_types, gpu_count, cpu_count, disk_size, max_price},
     "model": {source_type, source_uri, git_ref?, upload_id?, model_id?, git_commit?},
     "endpoint": {routes: [...], max_concurrency, max_queue, timeout},
     "environment": {env: [{key, value}], packages: {pip}, requirements, python, type, interpreter, note,
                     key?, python_version?, requirements_file?}   (once its environment is built)
     "gpus": [{index, name, type, device}], "pid", "replicas" (Ray: the live replicas, [{replica_id, state, pid,
     node_ip}]), "restarts", "run_time" (seconds),
     "hourly_rate", "credits", "created", "updated"}

`url` is set while the job is starting or running. When the control plane starts it calls `reconcile`: it
adopts the endpoints an earlier control plane left serving (they go on, billed, as if this one had started
them), ends the processes of jobs that should not run, and resumes every other job whose status says it should
be running, on the same port when it is free. A git URI's credentials are kept apart, readable by this user
only, and reach git through its environment (gitcredentials.py); the spec keeps the URI redacted (secrets.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil
import threading
import time
from pathlib import Path

from .. import endpointenv
from ..errors import Ambiguous, Conflict, NotFound, TrainMLError, UsageError
from ..launchspec import LaunchSpec
from ..routespec import parse_routes, routes_to_json
from . import resources as res
from . import archives, sources
from . import endpointkeys
from .environments import Environments
from .logs import LogBook, iso_time
from .models import Models, check_name, new_id
from .payload import check_job
from .vault import Vault
from .gitcredentials import GitCredentials
from .states import JobStatus, transition
from .store import Store
from .redaction import redact
from .backends.base import Backend, Endpoint, Launch, Policy, Scaling, elsewhere
from .backends.local import LocalBackend

log = logging.getLogger("trainml.server")

S = JobStatus
MAX_REASON = 400  # characters of a failure reason; the whole of it goes to the job's log
MAX_STATUS_EVENTS = 1_000  # status changes kept per job (the Details page's history)


class _Driver:
    """What the service knows about a job's driver task while it exists."""

    def __init__(self):
        self.task: asyncio.Task | None = None
        self.endpoint: Endpoint | None = None
        self.stopping = False
        self.began = False
        self.adopt = None  # the backend's token for an endpoint an earlier control plane left serving
        self.detached = False  # the control plane restarts and leaves the endpoint serving


class Jobs:
    def __init__(self, store: Store, logbook: LogBook, models: Models, uploads: archives.Uploads,
                 pool: res.GpuPool, folder: Path, environments: Environments, *, host: str = "127.0.0.1",
                 python: str | None = None, policy: Policy | None = None, backend: Backend | None = None,
                 vault: Vault | None = None, git_credentials: GitCredentials, tls: tuple[str, str] | None = None,
                 pass_env: tuple[str, ...] = ()):
        self.store = store
        self.pass_env = pass_env  # the control plane's variables endpoints inherit beyond the allowlist
        self.vault = vault
        self.git_credentials = git_credentials
        self.logs = logbook
        self.models = models
        self.uploads = uploads
        self.pool = pool
        self.environments = environments
        self.folder = folder
        self.host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # and URLs name this
        self.python = python
        self.policy = policy or Policy()
        self.tls = tls  # (certfile, keyfile): every endpoint serves HTTPS with the control plane's certificate
        self.scheme = "https" if tls else "http"
        # Endpoints listen where the control plane does.
        self.backend: Backend = backend or LocalBackend(host, self.policy, pool, tls=tls is not None)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._drivers: dict[str, _Driver] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._events_written: dict[str, int] = {}

    # -- records ------------------------------------------------------------------------------------------------

    def find(self, ref: str) -> dict:
        """A job row by id, or by name when that name is unique."""
        row = self.store.job(ref)
        if row is not None:
            return row
        rows = self.store.jobs_named(ref)
        if not rows:
            raise NotFound(f"job {ref!r} not found (see the job list)")
        if len(rows) > 1:
            ids = ", ".join(r["id"] for r in rows)
            raise Ambiguous(f"{len(rows)} jobs are named {ref!r}; use an id: {ids}", details=[r["id"] for r in rows])
        return rows[0]

    def record(self, row: dict) -> dict:
        spec, now = row["spec"], time.time()
        run_time, credits = row["run_seconds"], row["credits"]
        if row["running_since"] is not None:
            run_time += max(0.0, now - row["running_since"])
            credits += max(0.0, now - row["running_since"]) / 3600 * row["rate"]
        live = row["status"] in (S.STARTING.value, S.RUNNING.value)
        foreign = elsewhere(row, self.backend.name)  # its URL is its own backend's, unknown here
        url = self.backend.url(row) if live and not foreign else None
        return {
            "id": row["id"],
            "name": row["name"],
            "type": spec["type"],
            "status": row["status"],
            "reason": foreign or row["reason"],
            "url": url,
            "port": row["port"],
            "backend": row["backend"] or self.backend.name,
            "resources": spec["resources"],
            "model": {**spec["model"], "source_uri": redact(spec["model"].get("source_uri")),
                      **{k: v for k, v in row["source"].items() if k != "environment"}},
            "endpoint": spec["endpoint"],
            "environment": {**spec["environment"], **row["source"].get("environment", {}),
                            **({"default_python": self.backend.default_python} if self.backend.default_python else {})},
            "gpus": row["gpus"],
            "pid": row["pid"],
            "replicas": self.live_replicas(row["id"]) if live else None,
            "restarts": row["restarts"],
            "run_time": round(run_time, 3),
            "hourly_rate": res.hourly_rate(spec["resources"], row["gpus"]),
            "credits": round(credits, 6),
            "created": iso_time(row["created"]),
            "updated": iso_time(row["updated"]),
        }

    def live_replicas(self, job_id: str) -> list[dict] | None:
        """The replicas a backend that places them reports (Ray: Serve's, at the last poll); None elsewhere."""
        driver = self._drivers.get(job_id)
        return getattr(driver.endpoint, "live_replicas", None) if driver is not None else None

    def get(self, ref: str) -> dict:
        return self.record(self.find(ref))

    def list(self) -> list[dict]:
        return [self.record(row) for row in self.store.jobs()]

    def workdir(self, job_id: str) -> Path:
        return self.folder / job_id

    # -- creating -----------------------------------------------------------------------------------------------

    async def create(self, payload: dict) -> dict:
        name = check_name(payload.get("name"), "job")
        if self.store.job(name) is not None:  # the name would hide that job from everything that finds by name
            raise Conflict(f"job name {name!r} is another job's id; choose another name")
        # In a thread: finding an interpreter runs processes, which must not stall the event loop.
        spec = await asyncio.to_thread(check_job, payload, self.backend, self.uploads, self.models,
                                       self.environments.interpreters)
        secrets_asked = (payload.get("environment") or {}).get("secrets")
        spec["environment"]["secrets"] = self.vault.check(secrets_asked) if self.vault else []
        job_id, now = new_id(), time.time()
        while self.store.jobs_named(job_id) or self.store.job(job_id):  # an id must not hide a job's name either
            job_id = new_id()
        workdir = self.workdir(job_id)
        workdir.mkdir(mode=0o700, parents=True)
        routes = parse_routes(spec["endpoint"]["routes"])
        (workdir / "routes.json").write_text(routes_to_json(routes))
        secrets = {}
        if spec["model"]["source_type"] == "git":  # shown redacted everywhere; only the clone reads the secret
            self.git_credentials.keep(job_id, spec["model"]["source_uri"])
            spec["model"]["source_uri"] = redact(spec["model"]["source_uri"])
        if spec["endpoint"].get("auth"):
            secrets[endpointkeys.SECRET] = endpointkeys.new_key()
            endpointkeys.write_key(workdir, secrets[endpointkeys.SECRET])
        self.store.insert_job({"id": job_id, "name": name, "status": S.NEW.value, "spec": spec, "secrets": secrets,
                               "created": now, "updated": now})
        self.store.add_job_event(job_id, now, S.NEW.value, "created")
        self.logs.event(job_id, f"job {name!r} created ({spec['model']['source_type']} model)")
        if spec["environment"].get("note"):
            self.logs.event(job_id, spec["environment"]["note"])
        self._launch_driver(job_id)
        return self.get(job_id)

    # -- status changes -----------------------------------------------------------------------------------------

    def _move(self, job_id: str, target: JobStatus, reason: str | None = None, **fields) -> None:
        row = self.store.job(job_id)
        if row is None:
            return
        current = S(row["status"])
        if current == target and target != S.STARTING:
            return
        transition(current, target, job=f"job {row['name']!r}")
        if reason:
            reason = redact(reason)
            if len(reason) > MAX_REASON:  # the record shows the gist; the log keeps the whole
                self.logs.event(job_id, f"{target.value}: {reason}")
                reason = reason[:MAX_REASON - 40].rstrip() + " ... (the rest is in the job's log)"
        now = time.time()
        self.store.update_job(job_id, status=target.value, reason=reason, updated=now, **fields)
        first = (reason or "").splitlines()[0] if reason else ""
        # The status history as data (the dashboard's Details), besides the line in the log that people read.
        self.store.add_job_event(job_id, now, target.value, first or None)
        self._events_written[job_id] = self._events_written.get(job_id, 0) + 1
        if self._events_written[job_id] % 100 == 0:  # a crash loop must not grow it forever
            self.store.prune_job_events(job_id, MAX_STATUS_EVENTS)
        self.logs.event(job_id, f"status: {target.value}" + (f" ({first})" if first else ""))
        self._wake(job_id)

    def _wake(self, job_id: str) -> None:
        event = self._changed.pop(job_id, None)
        if event is not None:
            event.set()
        self.logs.wake(job_id)

    async def _changed_or_timeout(self, job_id: str, timeout: float) -> None:
        event = self._changed.setdefault(job_id, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def _bill(self, job_id: str, on: bool) -> None:
        row = self.store.job(job_id)
        if row is None:
            return
        now = time.time()
        if on and row["running_since"] is None:
            self.store.update_job(job_id, running_since=now, rate=res.hourly_rate(row["spec"]["resources"], row["gpus"]))
        elif not on and row["running_since"] is not None:
            spent = max(0.0, now - row["running_since"])
            self.store.update_job(
                job_id, running_since=None, run_seconds=row["run_seconds"] + spent,
                credits=row["credits"] + spent / 3600 * row["rate"],
            )

    # -- driving a job ------------------------------------------------------------------------------------------

    def _launch_driver(self, job_id: str, adopt=None) -> None:
        self.store.update_job(job_id, backend=self.backend.name)  # so another backend never launches it again
        driver = self._drivers[job_id] = _Driver()
        driver.adopt = adopt
        driver.task = asyncio.create_task(self._drive(job_id, driver), name=f"job-{job_id}")
        driver.task.add_done_callback(lambda task: self._never_ran(job_id, driver, task))

    def _never_ran(self, job_id: str, driver: _Driver, task: asyncio.Task) -> None:
        """A driver cancelled before its first step never reached its own clean-up; do it here."""
        if driver.began:
            return
        if self._drivers.get(job_id) is driver:
            del self._drivers[job_id]
        if driver.stopping:
            self._move(job_id, S.STOPPED)

    async def _drive(self, job_id: str, driver: _Driver) -> None:
        driver.began = True
        failure = None
        try:
            await self._fetch(job_id)
            row = self.store.job(job_id)
            spec = row["spec"]
            if S(row["status"]) not in (S.STARTING, S.RUNNING):
                self._move(job_id, S.WAITING_RESOURCES)
            held = row["gpus"] if driver.adopt is not None else None
            gpus = await self.backend.place(job_id, spec["resources"], held, lambda line: self.logs.event(job_id, line))
            self.store.update_job(job_id, gpus=gpus)
            python = await self._environment(job_id, spec) if self.backend.builds_environments else None
            endpoint = self.backend.endpoint(self._launch(job_id, spec, gpus, python), _Listener(self, job_id),
                                             row["port"], adopt=driver.adopt)
            driver.endpoint = endpoint
            self.store.update_job(job_id, port=endpoint.port)
            if driver.stopping:
                endpoint.request_stop()
            outcome = await endpoint.run()
            if outcome.failed and not driver.stopping:
                failure = outcome.reason
        except asyncio.CancelledError:
            if not driver.stopping:  # the control plane is shutting down: leave the status for reconcile
                raise
        except TrainMLError as exc:
            failure = str(exc)
        except Exception as exc:  # a bug of ours must fail this job, not the control plane
            log.exception("job %s: driver crashed", job_id)
            failure = f"internal error in the control plane: {type(exc).__name__}: {exc}"
        finally:
            if not driver.detached:  # a detached endpoint serves (and is billed) on; the next control plane adopts it
                self._bill(job_id, False)
                self.store.update_job(job_id, pid=None, pid_start=None)
            await self.backend.release(job_id)
            if self._drivers.get(job_id) is driver:
                del self._drivers[job_id]
        if driver.detached:
            return
        if failure is not None:
            self._move(job_id, S.FAILED, failure)
        elif driver.stopping:
            self._move(job_id, S.STOPPED)

    async def _fetch(self, job_id: str) -> None:
        """Put the model code into the job's folder, unless an earlier run already did."""
        dest = self.workdir(job_id) / "model"
        if dest.exists():
            return
        row = self.store.job(job_id)
        self._move(job_id, S.WAITING_DOWNLOAD)
        model = row["spec"]["model"]
        kind = model["source_type"]
        source: dict = {}
        limit = row["spec"]["resources"]["disk_size"] * 1024**3
        if kind == "local":
            archive = self.uploads.path(model["upload_id"])
            self.logs.event(job_id, "unpacking the uploaded model folder")
            await _cancellable(archives.unpack, archive, dest, limit)
            self.uploads.discard(model["upload_id"])
        elif kind == "git":
            uri = self.git_credentials.uri(job_id) or model["source_uri"]
            shown = redact(uri)
            say = lambda line: self.logs.event(job_id, f"git: {line.replace(uri, shown)}")  # noqa: E731
            source["git_commit"] = await sources.clone(uri, model.get("git_ref"), dest, say)
            self.logs.event(job_id, f"cloned {shown} at {source['git_commit']}")
        else:
            stored = self.models.path(model["model_id"])
            if not stored.is_dir():
                raise NotFound(f"stored model {model['source_uri']!r} ({model['model_id']}) no longer exists")
            await asyncio.to_thread(sources.copy_tree, stored, dest)
        source["size"] = await asyncio.to_thread(sources.tree_size, dest)
        if source["size"] > limit:
            await asyncio.to_thread(shutil.rmtree, dest, True)
            raise UsageError(f"the model code takes {source['size'] / 1024**3:.1f} GB, more than disk_size "
                             f"({row['spec']['resources']['disk_size']} GB)")
        self.store.update_job(job_id, source=source)

    async def _environment(self, job_id: str, spec: dict) -> Path | None:
        """The python of the job's own environment, built first if need be (status starting); None: the default."""
        model_dir = self.workdir(job_id) / "model"
        plan = await asyncio.to_thread(self.environments.plan, spec["environment"], model_dir)
        if plan is None:
            return None
        if self.store.job(job_id)["status"] == S.WAITING_RESOURCES.value:
            self._move(job_id, S.STARTING)
        python = await self.environments.prepare(job_id, plan, model_dir, lambda line: self.logs.event(job_id, line))
        source = dict(self.store.job(job_id)["source"])
        source["environment"] = {"key": plan.key, "python_version": plan.interpreter.version,
                                 "requirements_file": plan.requirements_file}
        self.store.update_job(job_id, source=source)
        return python

    def _launch(self, job_id: str, spec: dict, gpus: list[dict], python: Path | None = None) -> Launch:
        job_env = {item["key"]: item["value"] for item in spec["environment"]["env"]}
        job_env["TRAINML_JOB_ID"] = job_id
        env = endpointenv.inherited(os.environ, self.pass_env)  # not the operator's secrets (endpointenv.py)
        names = spec["environment"].get("secrets") or []
        if names and self.vault is not None:
            values = self.vault.values(names)
            job_env.update(values)  # a remote backend hands them to its replicas too
            for name in names:
                if name not in values:
                    self.logs.event(job_id, f"secret {name} no longer exists; the endpoint runs without it")
        env.update(job_env)
        env.update(
            PYTHONUNBUFFERED="1",  # so model code's prints reach the log as they happen
            CUDA_VISIBLE_DEVICES=",".join(g["device"] for g in gpus),
        )
        endpoint = spec["endpoint"]
        scaling = Scaling.of(endpoint)
        # Local worker processes: --replicas when given, else cpu_count (its meaning before replicas existed).
        workers = scaling.replicas or spec["resources"]["cpu_count"]
        runtime = LaunchSpec(
            model_dir=str(self.workdir(job_id) / "model"), route_file=str(self.workdir(job_id) / "routes.json"),
            workers=workers, max_concurrency=endpoint.get("max_concurrency"), max_queue=endpoint.get("max_queue"),
            timeout=endpoint.get("timeout"),
        )
        launch = Launch(job_id=job_id, runtime=runtime, env=env, job_env=job_env, name=self.store.job(job_id)["name"],
                        resources=spec["resources"], scaling=scaling, pip=list(spec["environment"]["packages"]["pip"]),
                        requirements=spec["environment"].get("requirements"))
        key_file = endpointkeys.key_file(self.workdir(job_id), self.store.job(job_id)["secrets"])
        if key_file is not None:
            runtime.key_file = str(key_file)
        if self.tls:
            runtime.tls_certfile, runtime.tls_keyfile = self.tls
        if python is not None:
            launch.python = str(python)
            # As if activated: a subprocess of the model finds the environment's python and scripts first.
            env["VIRTUAL_ENV"] = str(python.parent.parent)
            env["PATH"] = str(python.parent) + os.pathsep + env.get("PATH", os.defpath)
        else:
            if self.python:
                launch.python = self.python
            # On an interpreter the platform did not build, the runtime imports trainml_cli as the control plane did.
            import_path = endpointenv.runtime_import_path(os.environ)
            if import_path and "PYTHONPATH" not in env:
                env["PYTHONPATH"] = import_path
        return launch

    def environment_users(self) -> dict[str, list[str]]:
        """Environment key -> the ids of the jobs using it that are not stopped or failed (they hold it)."""
        users: dict[str, list[str]] = {}
        for row in self.store.jobs():
            key = row["source"].get("environment", {}).get("key")
            if key and not S(row["status"]).is_final:
                users.setdefault(key, []).append(row["id"])
        return users

    def environment_jobs(self) -> dict[str, list[str]]:
        """Environment key -> every job that was built with it."""
        jobs: dict[str, list[str]] = {}
        for row in self.store.jobs():
            key = row["source"].get("environment", {}).get("key")
            if key:
                jobs.setdefault(key, []).append(row["id"])
        return jobs

    # -- user actions -------------------------------------------------------------------------------------------

    def _own(self, row: dict) -> None:
        """Refuse to act on a job another backend runs: its endpoint is out of this control plane's reach."""
        foreign = elsewhere(row, self.backend.name)
        if foreign:
            raise Conflict(f"job {row['name']!r} was {foreign}")

    async def stop(self, ref: str) -> dict:
        row = self.find(ref)
        self._own(row)
        status = S(row["status"])
        if status.is_final or status == S.STOPPING:
            return self.record(row)
        self._move(row["id"], S.STOPPING)
        driver = self._drivers.get(row["id"])
        if driver is None:  # nothing runs it (should not happen); settle the record
            self._move(row["id"], S.STOPPED)
        else:
            driver.stopping = True
            if driver.endpoint is not None:
                driver.endpoint.request_stop()
            else:
                driver.task.cancel()
        return self.get(row["id"])

    def connection(self, ref: str) -> dict:
        """What a caller needs: the URL and, for a job with a key, the key (only with the control plane's token)."""
        row = self.find(ref)
        record = self.record(row)
        return {"id": row["id"], "name": row["name"], "status": row["status"], "url": record["url"],
                "routes": record["endpoint"]["routes"], "auth": bool(record["endpoint"].get("auth")),
                "key": row["secrets"].get(endpointkeys.SECRET)}

    async def rotate_key(self, ref: str) -> dict:
        """A new key for a job with one, handed to its endpoint by the backend; the old one then stops working."""
        row = self.find(ref)
        self._own(row)
        if not row["spec"]["endpoint"].get("auth"):
            raise Conflict(f"job {row['name']!r} has no endpoint key (create it with --auth)")
        key = endpointkeys.new_key()
        # The record first: it is what `job connect` shows, and what a launch rewrites a missing key file from.
        self.store.update_job(row["id"], secrets={**row["secrets"], endpointkeys.SECRET: key})
        workdir = self.workdir(row["id"])
        workdir.mkdir(parents=True, exist_ok=True)
        driver = self._drivers.get(row["id"])
        when = await self.backend.rotate_key(workdir, key, driver.endpoint if driver else None)
        self.logs.event(row["id"], f"endpoint key rotated; the previous key stops working {when}")
        return self.connection(row["id"])

    async def start(self, ref: str) -> dict:
        row = self.find(ref)
        status = S(row["status"])
        if not status.is_final:
            raise Conflict(f"job {row['name']!r} is {status.value}; only a stopped or failed job can be started")
        self.logs.event(row["id"], "start requested")
        # Out of stopped/failed before answering, so a client waiting for `running` right after sees a live job.
        fetched = (self.workdir(row["id"]) / "model").exists()
        self._move(row["id"], S.WAITING_RESOURCES if fetched else S.WAITING_DOWNLOAD)
        self._launch_driver(row["id"])
        return self.get(row["id"])

    async def remove(self, ref: str, force: bool = False) -> None:
        row = self.find(ref)
        self._own(row)  # even with force: what it runs elsewhere would serve on with no record of it
        status = S(row["status"])
        if not status.is_final and not force:
            raise Conflict(f"job {row['name']!r} is {status.value}; stop it first, or remove it with force")
        driver = self._drivers.get(row["id"])
        if driver is not None:
            await self.stop(row["id"])
            await asyncio.gather(driver.task, return_exceptions=True)
        self.store.delete_job(row["id"])
        self.git_credentials.forget(row["id"])
        self._events_written.pop(row["id"], None)
        self._wake(row["id"])
        await asyncio.to_thread(shutil.rmtree, self.workdir(row["id"]), True)

    async def wait(self, ref: str, status: JobStatus, timeout: float, since: JobStatus | None = None) -> dict:
        """The job once it has `status`, or is stopped or failed, or no longer has status `since` (so a waiter
        can show each step), or after `timeout` seconds (long-poll)."""
        deadline = time.monotonic() + timeout
        job_id = self.find(ref)["id"]
        while True:
            row = self.store.job(job_id)
            if row is None:
                raise NotFound(f"job {ref!r} was removed")
            current = S(row["status"])
            remaining = deadline - time.monotonic()
            if current == status or current.is_final or remaining <= 0 or (since is not None and current != since):
                return self.record(row)
            await self._changed_or_timeout(job_id, remaining)

    async def metrics(self, ref: str) -> dict:
        row = self.find(ref)
        driver = self._drivers.get(row["id"])
        values = None
        if driver is not None and driver.endpoint is not None and row["status"] == S.RUNNING.value:
            values = await driver.endpoint.metrics()
        return {"id": row["id"], "status": row["status"], "time": iso_time(time.time()), "metrics": values}

    # -- control plane start and stop ---------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Take over from an earlier control plane: adopt the endpoints it left serving, restart those that died
        meanwhile, end the ones that should not run, and resume every job whose status says it should be live."""
        rows, live = [], (S.STARTING, S.RUNNING)
        for row in self.store.jobs():
            foreign = elsewhere(row, self.backend.name)
            if foreign:  # neither adopted, nor relaunched here, nor cleaned up: its own backend's control plane will
                log.warning("job %s: %s", row["id"], foreign)
                self.logs.event(row["id"], f"control plane restarted; this job was {foreign}")
            else:
                rows.append(row)
        adopt = await self.backend.adoptable([r for r in rows if S(r["status"]) in live])
        await self.backend.clean_up(rows, adopt)
        for row in rows:
            status = S(row["status"])
            if row["id"] in adopt:
                self.logs.event(row["id"], f"control plane restarted; the endpoint kept serving (it was {status.value})")
                self._launch_driver(row["id"], adopt=adopt[row["id"]])
                continue
            self._bill(row["id"], False)
            self.store.update_job(row["id"], pid=None, pid_start=None)
            if status == S.STOPPING:
                self._move(row["id"], S.STOPPED)
            elif status.is_live:
                gone = ""
                if status in live:
                    self.store.update_job(row["id"], restarts=row["restarts"] + 1)
                    gone = "; its endpoint process had exited"
                self.logs.event(row["id"], f"control plane restarted; resuming the job (it was {status.value}{gone})")
                self._launch_driver(row["id"])

    async def shutdown(self, detach: bool = False) -> None:
        """Stop every endpoint (their statuses stay, so the next control plane resumes them); or, `detach`, leave
        them serving for the next control plane to adopt (`trainml server restart`)."""
        drivers = list(self._drivers.values())
        for driver in drivers:
            if driver.endpoint is not None and detach:
                driver.detached = True
                driver.endpoint.detach()
            elif driver.endpoint is not None:
                driver.endpoint.request_stop()
            else:
                driver.task.cancel()
        await asyncio.gather(*(d.task for d in drivers), return_exceptions=True)


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


class _Listener:
    """Turns what the supervisor sees into job records, statuses and log lines."""

    def __init__(self, jobs: Jobs, job_id: str):
        self.jobs = jobs
        self.job_id = job_id

    def output(self, stream: str, line: str) -> None:
        self.jobs.logs.write(self.job_id, stream, line)

    def event(self, message: str) -> None:
        self.jobs.logs.event(self.job_id, message)

    def launched(self, pid: int, pid_start: int | None, restart: bool) -> None:
        jobs, row = self.jobs, self.jobs.store.job(self.job_id)
        fields = {"pid": pid, "pid_start": pid_start}
        if restart:
            fields["restarts"] = row["restarts"] + 1
        jobs.store.update_job(self.job_id, **fields)
        jobs._bill(self.job_id, True)
        if row["status"] == S.STOPPING.value:  # a stop came in while it was being launched; it will end it
            return
        if restart or row["status"] != S.STARTING.value:
            jobs._move(self.job_id, S.STARTING)

    def restarted(self, message: str) -> None:
        row = self.jobs.store.job(self.job_id)
        if row is not None:
            self.jobs.store.update_job(self.job_id, restarts=row["restarts"] + 1)
            self.jobs.logs.event(self.job_id, message)

    def ready(self) -> None:
        if self.jobs.store.job(self.job_id)["status"] == S.STOPPING.value:
            return
        self.jobs._move(self.job_id, S.RUNNING)
        self.jobs.logs.event(self.job_id, f"Endpoint is running at: {self.jobs.get(self.job_id)['url']}")

    def tail(self) -> list[str]:
        return self.jobs.logs.tail(self.job_id)

    def log_offsets(self) -> dict:
        row = self.jobs.store.job(self.job_id)
        return row["log_offsets"] if row else {}

    def save_log_offsets(self, offsets: dict) -> None:
        self.jobs.logs.flush()  # the lines read up to these offsets are stored before the offsets are
        self.jobs.store.update_job(self.job_id, log_offsets=offsets)
