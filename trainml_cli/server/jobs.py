"""Jobs: the service behind /api/jobs. It keeps job records (jobrecord.py, in the store) and carries out what
users ask: create, get, list, stop, start, remove, rotate the key, wait (payloads: payload.py).

Every job that should run has one driver (driver.py), the task that fetches its model, builds its environment
and has the backend launch and watch its endpoint. All status changes go through `move`, which asks
`states.transition` first, writes the record, logs an event and wakes long-polls.

A job, as the API shows it (`show`: trainML's payload plus what the platform knows):

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
import logging
import shutil
import time
from pathlib import Path

from ..errors import Ambiguous, Conflict, NotFound
from ..routespec import parse_routes, routes_to_json
from ..states import headline
from . import archives, endpointkeys, resources as res
from .backends.base import Backend, elsewhere
from .driver import Driver
from .environments import Environments
from .gitcredentials import GitCredentials
from .jobrecord import JobRecord
from .logs import LogBook, iso_time
from .models import Models, check_name, new_id
from .payload import check_job
from .redaction import redact
from .revisions import Revisions
from .states import JobStatus, transition
from .store import Store
from .tracing import OFF as NOT_TRACED
from .vault import Vault

log = logging.getLogger("trainml.server")

S = JobStatus
MAX_REASON = 400  # characters of a failure reason; the whole of it goes to the job's log
MAX_STATUS_EVENTS = 1_000  # status changes kept per job (the Details page's history)


def job_not_found(ref: str) -> NotFound:
    return NotFound(f"job {ref!r} not found (see the job list)")


class Jobs:
    def __init__(self, store: Store, logbook: LogBook, models: Models, uploads: archives.Uploads, folder: Path,
                 environments: Environments, *, backend: Backend, git_credentials: GitCredentials,
                 python: str | None = None, vault: Vault | None = None, tls: tuple[str, str] | None = None,
                 pass_env: tuple[str, ...] = ()):
        self.store = store
        self.logs = logbook
        self.backend = backend  # where endpoints run (app.py builds it from the server's options)
        # Where models come from and what endpoints run with: create checks them, the drivers use them (driver.py).
        self.models = models
        self.uploads = uploads
        self.environments = environments
        self.git_credentials = git_credentials
        self.vault = vault
        self.python = python
        self.tls = tls  # (certfile, keyfile): every endpoint serves HTTPS with the control plane's certificate
        self.pass_env = pass_env  # the control plane's variables endpoints inherit beyond the allowlist
        self.tracing = NOT_TRACED  # spans for the drivers' steps (tracing.py); the platform sets its own
        self.folder = folder
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._drivers: dict[str, Driver] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._events_written: dict[str, int] = {}
        self.revisions = Revisions(self)  # what each job serves, updates and rollbacks (revisions.py)

    # -- records ------------------------------------------------------------------------------------------------

    def find(self, ref: str) -> JobRecord:
        """A job's record by id, or by name when that name is unique."""
        job = self.store.job(ref)
        if job is not None:
            return job
        named = self.store.jobs_named(ref)
        if not named:
            raise job_not_found(ref)
        if len(named) > 1:
            ids = [j.id for j in named]
            raise Ambiguous(f"{len(named)} jobs are named {ref!r}; use an id: {', '.join(ids)}", details=ids)
        return named[0]

    def show(self, job: JobRecord) -> dict:
        """The job as the API shows it (the module's docstring lists the fields)."""
        spec = job.spec
        run_time, credits = job.spent(time.time())
        launched = job.status.is_launched
        foreign = elsewhere(job, self.backend.name)  # its URL is its own backend's, unknown here
        url = self.backend.url(job) if launched and not foreign else None
        return {
            "id": job.id,
            "name": job.name,
            "type": spec["type"],
            "status": job.status.value,
            "reason": foreign or job.reason,
            "url": url,
            "port": job.port,
            "backend": job.backend or self.backend.name,
            "resources": spec["resources"],
            "model": {**spec["model"], "source_uri": redact(spec["model"].get("source_uri")),
                      **{k: v for k, v in job.source.items() if k != "environment"}},
            "endpoint": spec["endpoint"],
            "environment": {**spec["environment"], **job.source.get("environment", {}),
                            **({"default_python": self.backend.default_python} if self.backend.default_python else {})},
            "gpus": job.gpus,
            "pid": job.pid,
            "replicas": self.live_replicas(job.id) if launched else None,
            "scale": getattr(self._drivers.get(job.id), "scale", None) if launched else None,  # autoscaled local
            "restarts": job.restarts,
            "run_time": round(run_time, 3),
            "hourly_rate": res.hourly_rate(spec["resources"], job.gpus),
            "credits": round(credits, 6),
            "created": iso_time(job.created),
            "updated": iso_time(job.updated),
        }

    def live_replicas(self, job_id: str) -> list[dict] | None:
        """The replicas a backend that places them reports (Ray: Serve's, at the last poll); None elsewhere."""
        driver = self._drivers.get(job_id)
        return driver.live_replicas if driver is not None else None

    def get(self, ref: str) -> dict:
        return self.show(self.find(ref))

    def list(self) -> list[dict]:
        return [self.show(job) for job in self.store.jobs()]

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
        self.store.insert_job(JobRecord(id=job_id, name=name, status=S.NEW, spec=spec, secrets=secrets, created=now,
                                        updated=now))
        self.store.add_job_event(job_id, now, S.NEW, "created")
        self.revisions.first(job_id, spec, now)
        self.logs.event(job_id, f"job {name!r} created ({spec['model']['source_type']} model)")
        if spec["environment"].get("note"):
            self.logs.event(job_id, spec["environment"]["note"])
        self._launch_driver(job_id)
        return self.get(job_id)

    # -- status changes -----------------------------------------------------------------------------------------

    def move(self, job_id: str, target: JobStatus, reason: str | None = None, **fields) -> None:
        job = self.store.job(job_id)
        if job is None:
            return
        if job.status is target and target is not S.STARTING:
            return
        transition(job.status, target, job=f"job {job.name!r}")
        if reason:
            reason = redact(reason)
            if len(reason) > MAX_REASON:  # the record shows the gist; the log keeps the whole
                self._log_rest(job_id, target, reason)
                reason = reason[:MAX_REASON - 40].rstrip() + " ... (the rest is in the job's log)"
        now = time.time()
        self.store.update_job(job_id, status=target, reason=reason, updated=now, **fields)
        first = headline(reason)
        # The status history as data (the dashboard's Details), besides the line in the log that people read.
        self.store.add_job_event(job_id, now, target, first or None)
        self._events_written[job_id] = self._events_written.get(job_id, 0) + 1
        if self._events_written[job_id] % 100 == 0:  # a crash loop must not grow it forever
            self.store.prune_job_events(job_id, MAX_STATUS_EVENTS)
        self.logs.event(job_id, f"status: {target.value}" + (f" ({first})" if first else ""))
        self.revisions.job_moved(job_id, target, reason)
        self._wake(job_id)

    def _log_rest(self, job_id: str, target: JobStatus, reason: str) -> None:
        """Put in the log what a long reason says that the log does not: a failure's reason goes on with the
        job's last output lines, which are there already (and would print twice under `last log lines`)."""
        first, *rest = reason.splitlines()
        logged = {line.strip() for line in self.logs.tail(job_id, 200)}
        new = [line for line in rest if line.strip() and line.strip() not in logged]
        if new or len(first) > MAX_REASON - 40:
            self.logs.event(job_id, "\n".join([f"{target.value}: {first}", *new]))

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

    def bill(self, job_id: str, on: bool) -> None:
        """Start counting the job's run time and credits (its endpoint was launched), or stop and add them up."""
        job = self.store.job(job_id)
        if job is None:
            return
        now = time.time()
        if on and job.running_since is None:
            self.store.update_job(job_id, running_since=now, rate=res.hourly_rate(job.spec["resources"], job.gpus))
        elif not on and job.running_since is not None:
            run_seconds, credits = job.spent(now)
            self.store.update_job(job_id, running_since=None, run_seconds=run_seconds, credits=credits)

    # -- drivers ------------------------------------------------------------------------------------------------

    def _launch_driver(self, job_id: str, adopt=None) -> None:
        self.store.update_job(job_id, backend=self.backend.name)  # so another backend never launches it again
        self._drivers[job_id] = Driver(self, job_id, adopt)

    def driver_ended(self, driver: Driver) -> None:
        if self._drivers.get(driver.job_id) is driver:
            del self._drivers[driver.job_id]

    # -- user actions -------------------------------------------------------------------------------------------

    def _own(self, job: JobRecord) -> None:
        """Refuse to act on a job another backend runs: its endpoint is out of this control plane's reach."""
        foreign = elsewhere(job, self.backend.name)
        if foreign:
            raise Conflict(f"job {job.name!r} was {foreign}")

    async def stop(self, ref: str) -> dict:
        job = self.find(ref)
        self._own(job)
        if job.status.is_final or job.status is S.STOPPING:
            return self.show(job)
        self.move(job.id, S.STOPPING)
        driver = self._drivers.get(job.id)
        if driver is None:  # nothing runs it (should not happen); settle the record
            self.move(job.id, S.STOPPED)
        else:
            driver.stop()
        return self.get(job.id)

    def connection(self, ref: str) -> dict:
        """What a caller needs: the URL and, for a job with a key, the key (only with the control plane's token)."""
        job = self.find(ref)
        shown = self.show(job)
        return {"id": job.id, "name": job.name, "status": job.status.value, "url": shown["url"],
                "routes": shown["endpoint"]["routes"], "auth": bool(shown["endpoint"].get("auth")),
                "key": job.secrets.get(endpointkeys.SECRET)}

    async def rotate_key(self, ref: str) -> dict:
        """A new key for a job with one, handed to its endpoint by the backend; the old one then stops working."""
        job = self.find(ref)
        self._own(job)
        if not job.spec["endpoint"].get("auth"):
            raise Conflict(f"job {job.name!r} has no endpoint key (create it with --auth)")
        key = endpointkeys.new_key()
        # The record first: it is what `job connect` shows, and what a launch rewrites a missing key file from.
        self.store.update_job(job.id, secrets={**job.secrets, endpointkeys.SECRET: key})
        workdir = self.workdir(job.id)
        workdir.mkdir(parents=True, exist_ok=True)
        driver = self._drivers.get(job.id)
        when = await self.backend.rotate_key(workdir, key, driver.endpoint if driver else None)
        self.logs.event(job.id, f"endpoint key rotated; the previous key stops working {when}")
        return self.connection(job.id)

    async def start(self, ref: str) -> dict:
        job = self.find(ref)
        if not job.status.is_final:
            raise Conflict(f"job {job.name!r} is {job.status.value}; only a stopped or failed job can be started")
        # Refused now, as create refuses it, when this machine could never give what the job asks (the control plane
        # may have restarted with fewer GPUs), rather than `waiting for resources` forever.
        self.backend.check_resources(job.spec["resources"], job.spec["endpoint"].get("replicas"))
        self.logs.event(job.id, "start requested")
        # Out of stopped/failed before answering, so a client waiting for `running` right after sees a live job.
        fetched = (self.workdir(job.id) / "model").exists()
        self.move(job.id, S.WAITING_RESOURCES if fetched else S.WAITING_DOWNLOAD)
        self._launch_driver(job.id)
        return self.get(job.id)

    async def remove(self, ref: str, force: bool = False) -> None:
        job = self.find(ref)
        self._own(job)  # even with force: what it runs elsewhere would serve on with no record of it
        if not job.status.is_final and not force:
            raise Conflict(f"job {job.name!r} is {job.status.value}; stop it first, or remove it with force")
        driver = self._drivers.get(job.id)
        if driver is not None:
            await self.stop(job.id)
            await driver.wait()
        self.store.delete_job(job.id)
        self.git_credentials.forget(job.id)
        self._events_written.pop(job.id, None)
        self._wake(job.id)
        await asyncio.to_thread(shutil.rmtree, self.workdir(job.id), True)

    async def wait(self, ref: str, status: JobStatus, timeout: float, since: JobStatus | None = None) -> dict:
        """The job once it has `status`, or is stopped or failed, or no longer has status `since` (so a waiter
        can show each step), or after `timeout` seconds (long-poll)."""
        deadline = time.monotonic() + timeout
        job_id = self.find(ref).id
        while True:
            job = self.store.job(job_id)
            if job is None:
                raise NotFound(f"job {ref!r} was removed")
            current = job.status
            remaining = deadline - time.monotonic()
            if current is status or current.is_final or remaining <= 0 or (since is not None and current is not since):
                return self.show(job)
            await self._changed_or_timeout(job_id, remaining)

    async def metrics(self, ref: str) -> dict:
        job = self.find(ref)
        driver = self._drivers.get(job.id)
        values = None
        if driver is not None and driver.endpoint is not None and job.status is S.RUNNING:
            values = await driver.endpoint.metrics()
        return {"id": job.id, "status": job.status.value, "time": iso_time(time.time()), "metrics": values}

    # -- control plane start and stop ---------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Take over from an earlier control plane: adopt the endpoints it left serving, restart those that died
        meanwhile, end the ones that should not run, and resume every job whose status says it should be live."""
        ours = []
        for job in self.store.jobs():
            foreign = elsewhere(job, self.backend.name)
            if foreign:  # neither adopted, nor relaunched here, nor cleaned up: its own backend's control plane will
                log.warning("job %s: %s", job.id, foreign)
                self.logs.event(job.id, f"control plane restarted; this job was {foreign}")
            else:
                ours.append(job)
        await self.revisions.reconcile()  # before adopting: no new revision's process may hold a socket unknown
        adopt = await self.backend.adoptable([job for job in ours if job.status.is_launched])
        await self.backend.clean_up(ours, adopt)
        for job in ours:
            status = job.status
            if job.id in adopt:
                self.logs.event(job.id, f"control plane restarted; the endpoint kept serving (it was {status.value})")
                self._launch_driver(job.id, adopt=adopt[job.id])
                continue
            self.bill(job.id, False)
            self.store.update_job(job.id, pid=None, pid_start=None)
            if status is S.STOPPING:
                self.move(job.id, S.STOPPED)
            elif status.is_live:
                gone = ""
                if status.is_launched:
                    self.store.update_job(job.id, restarts=job.restarts + 1)
                    gone = "; its endpoint process had exited"
                self.logs.event(job.id, f"control plane restarted; resuming the job (it was {status.value}{gone})")
                self._launch_driver(job.id)

    async def shutdown(self, detach: bool = False) -> None:
        """Stop every endpoint (their statuses stay, so the next control plane resumes them); or, `detach`, leave
        them serving for the next control plane to adopt (`trainml server restart`)."""
        drivers = list(self._drivers.values())
        for driver in drivers:
            if detach:
                driver.detach()
            else:
                driver.end()
        await asyncio.gather(*(driver.wait() for driver in drivers))
        await self.backend.settle()
