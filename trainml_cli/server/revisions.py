"""A job's revisions: what it serves, numbered from 1 (what create made), and the updates and rollbacks that
move it from one to the next without a failed call.

A revision holds what defines what is served: the model source (and the git commit it resolved to), routes,
env, secret names, packages/requirements/python (its environment key), replicas/CPUs, limits, auth and GPUs,
as the job's spec holds them. Its code lives in its own folder, `jobs/ID/model` for revision 1 and
`jobs/ID/revisions/N/` after (model/ and routes.json), kept for the newest KEEP revisions so that a rollback
reuses it as it was.

    starting ──> serving ──> retired ──> starting (a rollback serves it again)
        └──────> failed (why, in `reason`) ──> starting (the job started again, revision 1 only)

An update (`update`) fetches the code, builds its environment and has the backend start it beside the serving
revision on the same socket and switch to it (backends/switch.py), or on Ray roll the job's Serve application over
to it (backends/rayrollout.py); the revision that served is retired. A
revision that cannot be fetched, built, loaded or made ready in time is marked failed with its reason and the
serving one is untouched. One update or rollback at a time per job.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import Conflict, NotFound, TrainMLError, UsageError
from ..routespec import parse_routes, routes_to_json
from . import endpointkeys, sources
from .logs import iso_time
from .payload import check_job
from .redaction import redact
from .states import JobStatus
from .takeover import Takeover, describe_gpus

if TYPE_CHECKING:
    from .jobs import Jobs

KEEP = 10  # revisions whose code folder is kept per job (rollback targets)


class RevisionStatus(str, enum.Enum):
    STARTING = "starting"
    SERVING = "serving"
    RETIRED = "retired"
    FAILED = "failed"


R = RevisionStatus
ALLOWED: dict[RevisionStatus, frozenset[RevisionStatus]] = {
    R.STARTING: frozenset({R.SERVING, R.FAILED}),
    R.SERVING: frozenset({R.RETIRED}),
    R.RETIRED: frozenset({R.STARTING}),
    R.FAILED: frozenset({R.STARTING}),
}


def transition(current: RevisionStatus | str, target: RevisionStatus | str, *, what: str) -> RevisionStatus:
    """Return `target` if a revision may move there from `current`; raise Conflict naming both otherwise."""
    current, target = RevisionStatus(current), RevisionStatus(target)
    if target not in ALLOWED[current]:
        raise Conflict(f"{what} is {current.value}; it cannot become {target.value}")
    return target


def describe_source(spec: dict, source: dict) -> str:
    """One line: where the code came from (a git URI redacted, with the commit it resolved to)."""
    model = spec["model"]
    kind, uri = model["source_type"], redact(model.get("source_uri")) or ""
    if kind == "git":
        ref = f"@{model['git_ref']}" if model.get("git_ref") else ""
        commit = f" ({source['git_commit'][:12]})" if source.get("git_commit") else ""
        return f"git {uri}{ref}{commit}"
    return f"{kind} {uri}".rstrip()


def code_digest(folder: Path) -> str:
    """What the code is, file by file (names and contents; compiled caches and links left out)."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if "__pycache__" in relative.parts or path.is_symlink() or not path.is_file():
            continue
        digest.update(relative.as_posix().encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def comparable(spec: dict) -> dict:
    """A spec without what differs between two deployments of the same thing (the upload that carried it)."""
    return {**spec, "model": {k: v for k, v in spec["model"].items() if k != "upload_id"}}


class Revisions:
    def __init__(self, jobs: Jobs):
        self.jobs = jobs
        self._busy: dict[str, int] = {}  # job id -> the revision being deployed

    # -- records ------------------------------------------------------------------------------------------------

    def folder(self, job_id: str, number: int) -> Path:
        workdir = self.jobs.workdir(job_id)
        return workdir if number == 1 else workdir / "revisions" / str(number)

    def first(self, job_id: str, spec: dict, now: float) -> None:
        self.jobs.store.insert_revision(job_id, 1, R.STARTING.value, spec, {}, now)

    def rows(self, job_id: str) -> list[dict]:
        rows = self.jobs.store.revisions(job_id)
        if not rows:  # a job made before revisions were kept: what it has is revision 1
            job = self.jobs.store.job(job_id)
            status = R.SERVING if job.status in (JobStatus.RUNNING, JobStatus.STOPPED) else R.STARTING
            self.jobs.store.insert_revision(job_id, 1, status.value, job.spec, job.source, job.created)
            rows = self.jobs.store.revisions(job_id)
        return rows

    def current(self, job_id: str) -> int:
        """The revision the job serves (or will when it starts): the newest serving one, else 1."""
        serving = [r["number"] for r in self.rows(job_id) if r["status"] == R.SERVING.value]
        return serving[-1] if serving else 1

    def _move(self, job_id: str, number: int, target: RevisionStatus, reason: str | None = None, **fields) -> None:
        row = next(r for r in self.jobs.store.revisions(job_id) if r["number"] == number)
        transition(row["status"], target, what=f"revision {number}")
        self.jobs.store.update_revision(job_id, number, status=target.value, reason=reason, updated=time.time(),
                                        **fields)

    def job_moved(self, job_id: str, status: JobStatus, reason: str | None) -> None:
        """Revision 1 (or the one a job serves) follows its job's first start, failure and start again."""
        if job_id in self._busy:
            return
        number = self.current(job_id)
        row = next(r for r in self.rows(job_id) if r["number"] == number)
        now = RevisionStatus(row["status"])
        if status is JobStatus.RUNNING and now is R.STARTING:
            self._move(job_id, number, R.SERVING, source=self.jobs.store.job(job_id).source)
        elif status is JobStatus.FAILED and now is R.STARTING:
            self._move(job_id, number, R.FAILED, reason)
        elif status in (JobStatus.WAITING_DOWNLOAD, JobStatus.WAITING_RESOURCES) and now is R.FAILED:
            self._move(job_id, number, R.STARTING)

    def show(self, job_id: str, row: dict) -> dict:
        spec, source = row["spec"], row["source"]
        return {
            "revision": row["number"],
            "status": row["status"],
            "created": iso_time(row["created"]),
            "updated": iso_time(row["updated"]),
            "source": describe_source(spec, source),
            "git_commit": source.get("git_commit"),
            "environment": (source.get("environment") or {}).get("key"),
            "routes": [f"{r['verb']} {r['path']}" for r in spec["endpoint"]["routes"]],
            "replicas": spec["endpoint"].get("replicas") or spec["resources"].get("cpu_count"),
            "gpus": describe_gpus(spec["resources"]),
            "auth": bool(spec["endpoint"].get("auth")),
            "reason": row["reason"],
            "code_kept": (self.folder(job_id, row["number"]) / "model").is_dir(),
        }

    def list(self, ref: str) -> list[dict]:
        job = self.jobs.find(ref)
        return [self.show(job.id, row) for row in self.rows(job.id)]

    # -- update and rollback ------------------------------------------------------------------------------------

    def _ready_to_switch(self, ref: str):
        jobs = self.jobs
        job = jobs.find(ref)
        jobs._own(job)
        busy = self._busy.get(job.id)
        if busy is not None:
            raise Conflict(f"revision {busy} of job {job.name!r} is being deployed; one update at a time: wait until "
                           f"it is serving or has failed (trainml job revisions {job.name})")
        driver = jobs._drivers.get(job.id)
        if job.status is not JobStatus.RUNNING or driver is None or driver.endpoint is None:
            raise Conflict(f"job {job.name!r} is {job.status.value}; only a running job can be updated or rolled back")
        rows = self.rows(job.id)
        serving = [r for r in rows if r["status"] == R.SERVING.value]
        if not serving:
            raise Conflict(f"job {job.name!r} has no serving revision yet")
        return job, driver, rows, serving[-1]

    async def update(self, ref: str, payload: dict) -> dict:
        """Deploy a new revision from the serving one with `payload`'s fields (the create payload's, all optional)
        over it; returns the new revision, serving or failed with its reason."""
        job, driver, rows, serving = self._ready_to_switch(ref)
        number = rows[-1]["number"] + 1
        self._busy[job.id] = number  # before the first await: a second update meanwhile is refused
        try:
            await self._hold_socket(driver)
            spec = await self._spec(job, serving, payload)
            takeover = Takeover(self.jobs, job, number, spec, serving["spec"], payload.get("strategy"))
            if not payload.get("if_changed"):  # else once the code is known to differ (nothing may be deployed)
                takeover.check()
        except BaseException:
            self._busy.pop(job.id, None)
            raise
        self.jobs.store.insert_revision(job.id, number, R.STARTING.value, spec, {}, time.time())
        where = "in place of" if takeover.strategy == "recreate" else "beside"
        self.jobs.logs.event(job.id, f"revision {number}: deploying ({describe_source(spec, {})}) {where} revision "
                                     f"{serving['number']}")
        # Its own task: a client that hangs up does not cut a switch in half.
        task = asyncio.create_task(self._deploy(job.id, number, spec, serving, payload.get("model") is not None,
                                                if_changed=bool(payload.get("if_changed")), takeover=takeover))
        return await asyncio.shield(task)

    async def rollback(self, ref: str, to: int | None = None, strategy: str | None = None) -> dict:
        """Serve revision `to` again (default: the newest retired one before the serving one), with its code, GPUs
        and auth."""
        job, driver, rows, serving = self._ready_to_switch(ref)
        if to is None:
            earlier = [r for r in rows if r["status"] == R.RETIRED.value and r["number"] < serving["number"]]
            if not earlier:
                raise Conflict(f"job {job.name!r} has no retired revision before revision {serving['number']} to "
                               "roll back to (see trainml job revisions)")
            target = earlier[-1]
        else:
            found = [r for r in rows if r["number"] == to]
            if not found:
                raise NotFound(f"job {job.name!r} has no revision {to} (it has 1 to {rows[-1]['number']})")
            target = found[0]
            if target["status"] != R.RETIRED.value:
                raise Conflict(f"revision {to} of job {job.name!r} is {target['status']}; only a retired revision "
                               "can be served again")
        number = target["number"]
        if not (self.folder(job.id, number) / "model").is_dir():
            raise Conflict(f"revision {number}'s code is no longer kept (the newest {KEEP} are); deploy it with "
                           "trainml job update instead")
        takeover = Takeover(self.jobs, job, number, target["spec"], serving["spec"], strategy)
        takeover.check()
        self._busy[job.id] = number
        try:
            await self._hold_socket(driver)
        except BaseException:
            self._busy.pop(job.id, None)
            raise
        self._move(job.id, number, R.STARTING)
        self.jobs.logs.event(job.id, f"revision {number}: rolling back to it from revision {serving['number']}")
        task = asyncio.create_task(self._deploy(job.id, number, target["spec"], serving, False, target["source"],
                                                takeover=takeover))
        return await asyncio.shield(task)

    async def _hold_socket(self, driver) -> None:
        """An endpoint adopted after a control plane restart holds the only copy of its socket: take it back before
        anything is fetched or recorded, so that an endpoint that cannot give it is refused with nothing created."""
        await self.jobs.backend.hold_socket(driver.endpoint)

    async def _spec(self, job, serving: dict, payload: dict) -> dict:
        jobs, base = self.jobs, serving["spec"]
        built = ("env", "packages", "requirements", "python", "type")
        given = payload.get("resources") or {}
        resources = {**base["resources"], **given}
        if given.get("gpu_types") and "gpu_count" not in given and not base["resources"].get("gpu_count"):
            resources["gpu_count"] = 1  # a CPU job given a GPU type: one, as create's default
        merged = {
            "type": "endpoint",
            "resources": resources,
            "endpoint": {**base["endpoint"], **(payload.get("endpoint") or {})},
            "environment": {**{k: base["environment"].get(k) for k in built},
                            **{k: v for k, v in (payload.get("environment") or {}).items() if k != "secrets"}},
        }
        if payload.get("model") is not None:
            merged["model"] = payload["model"]
        carried = None if payload.get("model") is not None else base["model"]
        spec = await asyncio.to_thread(check_job, merged, jobs.backend, jobs.uploads, jobs.models,
                                       jobs.environments.interpreters, carried)
        if given.get("gpu_count") and not spec["resources"]["gpu_count"]:
            raise UsageError.at(("resources", "gpu_count"), "GPUs need a GPU type (--gpu-type): the job runs on "
                                "CPUs")
        asked = (payload.get("environment") or {}).get("secrets")
        if asked is not None and jobs.vault is not None:
            spec["environment"]["secrets"] = jobs.vault.check(asked)
        else:
            spec["environment"]["secrets"] = base["environment"].get("secrets") or []
        if spec["model"]["source_type"] == "git" and carried is None:
            jobs.git_credentials.keep(job.id, spec["model"]["source_uri"])
            spec["model"]["source_uri"] = redact(spec["model"]["source_uri"])
        return spec

    async def _deploy(self, job_id: str, number: int, spec: dict, serving: dict, new_model: bool,
                      source: dict | None = None, if_changed: bool = False, *, takeover: Takeover) -> dict:
        jobs = self.jobs
        folder = self.folder(job_id, number)
        downtime = None
        try:
            driver = jobs._drivers.get(job_id)
            if driver is None or driver.endpoint is None:
                raise Conflict("the job stopped while its revision was being deployed")
            if source is None:  # a new revision: its own copy of the code
                await asyncio.to_thread(shutil.rmtree, folder, True)
                folder.mkdir(mode=0o700, parents=True)
                (folder / "routes.json").write_text(routes_to_json(parse_routes(spec["endpoint"]["routes"])))
                carried_local = not new_model and spec["model"]["source_type"] == "local"
                if carried_local:  # an upload is unpacked once: the same code is the serving revision's copy
                    old = self.folder(job_id, serving["number"]) / "model"
                    await asyncio.to_thread(sources.copy_tree, old, folder / "model")
                    source = {k: v for k, v in serving["source"].items() if k != "environment"}
                else:
                    source = await driver.fetch_model(spec, folder / "model")
                if if_changed and await self._unchanged(job_id, number, spec, serving):
                    return {**self._shown(job_id, serving["number"]), "unchanged": True}
            source = dict(source)
            python = None
            if jobs.backend.builds_environments:  # Ray builds it on each node, from the application's runtime_env
                python, built = await driver.environment(spec, folder / "model")
                if built is not None:
                    source["environment"] = built
            jobs.store.update_revision(job_id, number, source=source)
            if driver.stopping or jobs.store.job(job_id).status is not JobStatus.RUNNING:
                raise Conflict("the job was stopped while its new revision was being prepared")
            gpus = takeover.prepare()
            job = replace(jobs.store.job(job_id), spec=spec)
            launch = driver._launch(job, gpus, python, folder, number)
            takeover.fit(launch)
            def spawned(pid: int, pid_start: int | None) -> None:
                jobs.store.update_revision(job_id, number, source={**source, "pid": pid, "pid_start": pid_start})

            if takeover.strategy == "recreate":
                pid, pid_start, downtime = await jobs.backend.recreate(driver.endpoint, launch, spawned)
            else:
                pid, pid_start = await jobs.backend.switch(driver.endpoint, launch, spawned)
            # when the new revision took the calls (before the old one drained), for the traffic chart's marker
            switched = getattr(driver.endpoint, "switched_at", None) or time.time()
        except Exception as exc:
            await takeover.undo()
            reason = str(exc) if isinstance(exc, TrainMLError) else f"internal error: {type(exc).__name__}: {exc}"
            self._move(job_id, number, R.FAILED, redact(reason))
            jobs.logs.event(job_id, f"revision {number} failed; revision {serving['number']} goes on serving: "
                                    f"{redact(reason)}")
            return self._shown(job_id, number)
        finally:
            self._busy.pop(job_id, None)
        self._move(job_id, number, R.SERVING, source=source)
        self._move(job_id, serving["number"], R.RETIRED)
        jobs.store.add_switch(job_id, switched, number)
        jobs.store.update_job(job_id, spec=spec, source=source, pid=pid, pid_start=pid_start, updated=time.time())
        await takeover.commit()
        jobs.logs.event(job_id, f"revision {number} is serving; revision {serving['number']} is retired")
        if downtime is not None:
            jobs.logs.event(job_id, f"--strategy recreate: no process accepted calls for {downtime:.2f} s; calls "
                                    "sent meanwhile waited in the socket's backlog")
        await asyncio.to_thread(self._prune, job_id)
        return {**self._shown(job_id, number), "downtime": downtime}

    async def _unchanged(self, job_id: str, number: int, spec: dict, serving: dict) -> bool:
        """Whether the revision being deployed is the serving one again (same code, same spec); if so it is
        dropped, folder and record, as if never asked for."""
        if comparable(spec) != comparable(serving["spec"]):
            return False
        new, old = self.folder(job_id, number) / "model", self.folder(job_id, serving["number"]) / "model"
        if await asyncio.to_thread(code_digest, new) != await asyncio.to_thread(code_digest, old):
            return False
        await asyncio.to_thread(shutil.rmtree, self.folder(job_id, number), True)
        self.jobs.store.delete_revision(job_id, number)
        self.jobs.logs.event(job_id, f"nothing changed: revision {serving['number']} already serves this code")
        return True

    async def reconcile(self) -> None:
        """After a control plane restart: a revision left starting beside a serving one was cut off mid-deploy.
        It is marked failed, and its process, if it had one, ended (it held the job's socket unsupervised)."""
        for job in self.jobs.store.jobs():
            rows = self.jobs.store.revisions(job.id)
            if not any(r["status"] == R.SERVING.value for r in rows):
                continue
            for row in rows:
                if row["status"] != R.STARTING.value:
                    continue
                source = row["source"]
                if hasattr(self.jobs.backend, "end_unfinished"):
                    await self.jobs.backend.end_unfinished(source.get("pid"), source.get("pid_start"),
                                                           self.folder(job.id, row["number"]) / "model")
                self._move(job.id, row["number"], R.FAILED, "the control plane stopped while it was being deployed",
                           source={k: v for k, v in source.items() if k not in ("pid", "pid_start")})
                self.jobs.logs.event(job.id, f"revision {row['number']} failed: the control plane stopped while it "
                                             "was being deployed")
                endpointkeys.drop_stray(self.jobs.workdir(job.id), job.secrets)

    def _shown(self, job_id: str, number: int) -> dict:
        return self.show(job_id, next(r for r in self.jobs.store.revisions(job_id) if r["number"] == number))

    def _prune(self, job_id: str) -> None:
        """Keep the code of the newest KEEP revisions (and of the serving one)."""
        rows = self.jobs.store.revisions(job_id)
        keep = {r["number"] for r in rows[-KEEP:]} | {r["number"] for r in rows if r["status"] == R.SERVING.value}
        for row in rows:
            if row["number"] not in keep and row["number"] != 1:
                shutil.rmtree(self.folder(job_id, row["number"]), ignore_errors=True)
