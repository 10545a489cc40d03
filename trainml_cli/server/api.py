"""The control plane's REST API. Every route under /api but /api/health needs `Authorization: Bearer <token>`.

    GET    /api/health                         open; {status, version, pid, home, url}
    GET    /api/prices                         the price table (credits per hour)
    GET    /api/backend                        where endpoints run (local or ray) and the resources there
    POST   /api/uploads                        body: a tar.gz of a model folder -> 201 {id, size, files, unpacked_size}
    POST   /api/jobs                           body: JobCreate -> 201 job record (status "new")
    GET    /api/jobs                           -> [job record], oldest first
    GET    /api/jobs/{job}                     -> job record; {job} is an id or a unique name (409 if ambiguous)
    DELETE /api/jobs/{job}?force=false         -> {id, removed}; 409 unless stopped or failed (or force)
    GET    /api/jobs/{job}/revisions           -> [revision], oldest first (revisions.py)
    POST   /api/jobs/{job}/revisions           body: JobUpdate -> the new revision, serving or failed; 409 while
                                               another update of the job runs, or on Ray (not built yet)
    POST   /api/jobs/{job}/rollback            body: {to?, strategy?} -> the revision served again
    POST   /api/jobs/{job}/stop                -> job record (stopping; stopped when the endpoint has exited)
    POST   /api/jobs/{job}/start               -> job record; 409 unless stopped or failed
    GET    /api/jobs/{job}/wait?status=S&timeout=T[&since=P]   long-poll: the job once its status is S, or it
                                               is stopped or failed (or no longer P), or after T seconds (at
                                               most 60) -> job record
    GET    /api/jobs/{job}/logs?before=C&limit=N     newest first, older than cursor C -> {logs, next}
    GET    /api/jobs/{job}/logs?after=C&wait=T&limit=N   oldest first, newer than C; waits up to T seconds for a
                                               first line -> {logs, last, done}
    GET    /api/jobs/{job}/logs/stream?after=C       follow: NDJSON, one entry per line (or server-sent events
                                               with `Accept: text/event-stream`), until the job stops or fails
    GET    /api/jobs/{job}/metrics             the endpoint's /metrics counters (all its workers), for charts
    GET    /api/jobs/{job}/connect             -> {url, routes, auth, key}: the endpoint key is only ever here
    POST   /api/jobs/{job}/rotate-key          -> the same, with a new key; 409 for a job without one
    GET    /api/prometheus/targets             Prometheus HTTP service discovery: every running endpoint's
                                               /metrics (labels job_id, job_name) and the control plane's own
    POST   /api/models                         body: ModelCreate -> 201 model record (after fetching the code)
    GET    /api/models, GET|DELETE /api/models/{model}, PATCH /api/models/{model} {name}: rename
    GET    /api/gpus                           -> [{type, price, count, free, where}]: GPU types, the backend's GPUs
    GET    /api/secrets, PUT|DELETE /api/secrets/{name}   names and times only; PUT body {value}
    GET    /api/environments                   -> {environments, interpreters, trainml (--environment names)}
    DELETE /api/environments/{key}             -> {id, removed}; 409 while a job uses it or it is being built
    POST   /api/environments/prune             -> {removed: [keys]}: every environment no job uses

Errors are JSON `{"error": kind, "message": "...", "details": [...]}` with the status of the error class
(errors.py): 401 unauthorized, 404 not_found, 409 conflict, 413 body_too_large, 422 invalid / invalid_route,
503 unavailable. A job payload whose routes break the route spec gets 422 with one detail per route and field;
nothing is created. A JSON body is at most 1 MiB, 10,000 keys and array items and 100 levels deep, and a 422
lists its first 20 problems and counts the rest (bodies.py).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Optional

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import StreamingResponse

from .. import __version__
from ..errors import Conflict, NotFound
from ..frameworks import FRAMEWORKS
from . import resources as res, schemas
from .auth import require_auth
from .bodies import JsonRoute
from .states import parse_status

MAX_WAIT = 60.0
MAX_PAGE = 1000
STREAM_HEARTBEAT = 15.0

open_router = APIRouter(prefix="/api", tags=["health"])
router = APIRouter(prefix="/api", dependencies=[Depends(require_auth)], route_class=JsonRoute)
upload_router = APIRouter(prefix="/api", dependencies=[Depends(require_auth)])  # its own cap (archives.py)


def platform(request: Request):
    return request.app.state.platform


@open_router.get("/health", response_model=schemas.Health)
async def health(request: Request):
    p = platform(request)
    return {"status": "ok", "version": __version__, "pid": os.getpid(), "home": str(p.settings.home), "url": p.url}


@router.get("/backend", tags=["health"])
async def backend(request: Request):
    """Where endpoints run (`local` or `ray`) and the resources there; for Ray, the cluster's."""
    return await platform(request).backend.describe()


@router.get("/prices", tags=["jobs"])
async def prices():
    return {"cpu": res.CPU_RATE, "gpu": res.GPU_RATES, "other_gpu": res.OTHER_GPU_RATE, "unit": "credits per hour"}


@router.get("/gpus", tags=["jobs"])
async def gpus(request: Request):
    """Every GPU type with its price, and how many of each the backend has (this machine's, or the Ray cluster's)
    and how many are free."""
    return await platform(request).backend.gpus()


# -- secrets ------------------------------------------------------------------------------------------------------


@router.get("/secrets", response_model=list[schemas.Secret], tags=["secrets"])
async def list_secrets(request: Request):
    return platform(request).vault.list()


@router.put("/secrets/{name}", response_model=schemas.Secret, tags=["secrets"])
async def put_secret(name: str, payload: schemas.SecretValue, request: Request):
    return platform(request).vault.put(name, payload.value)


@router.delete("/secrets/{name}", response_model=schemas.Removed, tags=["secrets"])
async def remove_secret(name: str, request: Request):
    platform(request).vault.remove(name)
    return {"id": name, "removed": True}


# -- uploads ------------------------------------------------------------------------------------------------------


@upload_router.post("/uploads", status_code=status.HTTP_201_CREATED, response_model=schemas.Upload, tags=["models"],
             openapi_extra={"requestBody": {"content": {
                 "application/gzip": {"schema": {"type": "string", "format": "binary"}}}}})
async def upload(request: Request):
    """A tar.gz (or a zip) of a model folder; refused (422) if any member is a link, a device, absolute or has
    `..`. A zip is converted to a tar.gz with the same checks."""
    return await platform(request).uploads.receive(request.stream())


# -- jobs ---------------------------------------------------------------------------------------------------------


@router.post("/jobs", status_code=status.HTTP_201_CREATED, response_model=schemas.Job, tags=["jobs"])
async def create_job(payload: schemas.JobCreate, request: Request):
    return await platform(request).jobs.create(payload.model_dump(exclude_none=True))


@router.get("/jobs", response_model=list[schemas.Job], tags=["jobs"])
async def list_jobs(request: Request):
    return platform(request).jobs.list()


@router.get("/jobs/{job}", response_model=schemas.Job, tags=["jobs"])
async def get_job(job: str, request: Request):
    return platform(request).jobs.get(job)


@router.delete("/jobs/{job}", response_model=schemas.Removed, tags=["jobs"])
async def remove_job(job: str, request: Request, force: bool = False):
    jobs = platform(request).jobs
    job_id = jobs.find(job).id
    await jobs.remove(job_id, force=force)
    return {"id": job_id, "removed": True}


@router.get("/jobs/{job}/connect", response_model=schemas.Connection, tags=["jobs"])
async def connect_job(job: str, request: Request):
    """The endpoint's URL, routes and, when it has one, its key: what `trainml job connect` shows."""
    return platform(request).jobs.connection(job)


@router.post("/jobs/{job}/rotate-key", response_model=schemas.Connection, tags=["jobs"],
             responses={409: {"description": "the job has no endpoint key"}})
async def rotate_key(job: str, request: Request):
    """Replace the endpoint's key; answers once the endpoint takes the new key and refuses the old one (on Ray,
    the old one works until Serve has replaced the replicas: seconds)."""
    return await platform(request).jobs.rotate_key(job)


@router.get("/jobs/{job}/revisions", response_model=list[schemas.Revision], tags=["jobs"])
async def job_revisions(job: str, request: Request):
    return platform(request).jobs.revisions.list(job)


@router.post("/jobs/{job}/revisions", response_model=schemas.Revision, tags=["jobs"])
async def update_job(job: str, payload: schemas.JobUpdate, request: Request):
    """Deploy a new revision beside the serving one and switch to it; the answer is the revision, serving or
    failed (with its reason). 409 while another update of the job is in progress."""
    return await platform(request).jobs.revisions.update(job, payload.model_dump(exclude_unset=True,
                                                                                 exclude_none=True))


@router.post("/jobs/{job}/rollback", response_model=schemas.Revision, tags=["jobs"])
async def rollback_job(job: str, request: Request, payload: Optional[schemas.Rollback] = None):
    return await platform(request).jobs.revisions.rollback(job, payload.to if payload else None,
                                                           payload.strategy if payload else None)


@router.post("/jobs/{job}/stop", response_model=schemas.Job, tags=["jobs"])
async def stop_job(job: str, request: Request):
    return await platform(request).jobs.stop(job)


@router.post("/jobs/{job}/start", response_model=schemas.Job, tags=["jobs"])
async def start_job(job: str, request: Request):
    return await platform(request).jobs.start(job)


@router.get("/jobs/{job}/wait", response_model=schemas.Job, tags=["jobs"])
async def wait_job(job: str, request: Request, status: str = Query(..., description="the status to wait for"),
                   timeout: float = Query(30.0, ge=0, description=f"seconds, at most {MAX_WAIT:.0f}"),
                   since: Optional[str] = Query(None, description="also answer as soon as the status is no "
                                                "longer this one")):
    return await platform(request).jobs.wait(job, parse_status(status), min(timeout, MAX_WAIT),
                                             parse_status(since) if since else None)


@router.get("/jobs/{job}/metrics", response_model=schemas.Metrics, tags=["jobs"])
async def job_metrics(job: str, request: Request):
    return await platform(request).jobs.metrics(job)


@router.get("/jobs/{job}/logs", response_model=schemas.LogPage, tags=["logs"])
async def job_logs(job: str, request: Request,
                   before: Optional[int] = Query(None, description="page back: lines older than this cursor"),
                   after: Optional[int] = Query(None, ge=0,
                                                description="follow: lines newer than this cursor, oldest first"),
                   limit: int = Query(100, ge=1, le=MAX_PAGE),
                   wait: float = Query(0.0, ge=0,
                                       description="with after: seconds to wait for a new "
                                                   f"line (at most {MAX_WAIT:.0f})")):
    p = platform(request)
    job_id = p.jobs.find(job).id
    if after is None:
        page = p.logs.page(job_id, before, limit + 1)  # one more: `next` only when older lines exist
        page, more = page[:limit], len(page) > limit
        return {"logs": page, "next": page[-1]["id"] if more else None}
    deadline = asyncio.get_running_loop().time() + min(wait, MAX_WAIT)
    while True:
        final = p.jobs.find(job_id).status.is_final
        lines = p.logs.since(job_id, after, limit)
        remaining = deadline - asyncio.get_running_loop().time()
        if lines or final or remaining <= 0:
            last = lines[-1]["id"] if lines else after
            return {"logs": lines, "last": last, "done": final and len(lines) < limit}
        await p.logs.wait(job_id, remaining)


@router.get("/jobs/{job}/logs/stream", tags=["logs"],
            responses={200: {"content": {"application/x-ndjson": {}, "text/event-stream": {}}}})
async def stream_logs(job: str, request: Request,
                      after: int = Query(0, ge=0, description="start after this cursor (0: all)")):
    """Follow a job's log: every entry newer than `after`, then new ones as they come, until the job stops."""
    p = platform(request)
    job_id = p.jobs.find(job).id
    sse = "text/event-stream" in request.headers.get("accept", "")
    resume = request.headers.get("last-event-id")
    if sse and resume and resume.isdigit():
        after = int(resume)

    def render(entry: dict) -> str:
        if sse:
            return f"id: {entry['id']}\ndata: {json.dumps(entry)}\n\n"
        return json.dumps(entry) + "\n"

    async def lines():
        cursor = after
        while True:
            try:
                final = p.jobs.find(job_id).status.is_final
            except NotFound:  # removed while followed
                return
            batch = p.logs.since(job_id, cursor, MAX_PAGE)
            if batch:
                cursor = batch[-1]["id"]
                yield "".join(render(e) for e in batch)
                continue
            if final:
                return
            await p.logs.wait(job_id, STREAM_HEARTBEAT)
            if not p.logs.since(job_id, cursor, 1):
                yield ": keepalive\n\n" if sse else "\n"

    media = "text/event-stream" if sse else "application/x-ndjson"
    return StreamingResponse(lines(), media_type=media,
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# -- models -------------------------------------------------------------------------------------------------------


@router.post("/models", status_code=status.HTTP_201_CREATED, response_model=schemas.Model, tags=["models"])
async def create_model(payload: schemas.ModelCreate, request: Request):
    return await platform(request).models.create(**payload.model_dump())


@router.get("/models", response_model=list[schemas.Model], tags=["models"])
async def list_models(request: Request):
    return platform(request).models.list()


@router.get("/models/{model}", response_model=schemas.Model, tags=["models"])
async def get_model(model: str, request: Request):
    return platform(request).models.get(model)


@router.patch("/models/{model}", response_model=schemas.Model, tags=["models"])
async def rename_model(model: str, payload: schemas.ModelRename, request: Request):
    return platform(request).models.rename(model, payload.name)


@router.delete("/models/{model}", response_model=schemas.Removed, tags=["models"])
async def remove_model(model: str, request: Request):
    models = platform(request).models
    model_id = models.find(model)["id"]
    await models.remove(model_id)
    return {"id": model_id, "removed": True}


# -- environments -------------------------------------------------------------------------------------------------


def environment_records(p) -> list[dict]:
    from .logs import iso_time

    users, jobs = p.jobs.store.environment_users(), p.jobs.store.environment_jobs()
    records = []
    for record in p.environments.records():
        record = dict(record)
        for key in ("created", "last_used"):
            record[key] = iso_time(record[key]) if record.get(key) else None
        record["jobs"] = jobs.get(record["key"], [])
        record["in_use"] = users.get(record["key"], [])
        records.append(record)
    return records


@router.get("/environments", response_model=schemas.EnvironmentList, tags=["environments"])
async def list_environments(request: Request):
    p = platform(request)
    interpreters = await asyncio.to_thread(p.environments.interpreters.all)
    return {"environments": environment_records(p), "interpreters": [i.to_dict() for i in interpreters],
            "trainml": [f.to_dict() for f in FRAMEWORKS.values()]}


@router.delete("/environments/{key}", response_model=schemas.Removed, tags=["environments"],
               responses={409: {"description": "a job uses it, or it is being built"}})
async def remove_environment(key: str, request: Request):
    p = platform(request)
    key = p.environments.find(key)
    store = p.jobs.store
    users = [job.name for job in map(store.job, store.environment_users().get(key, [])) if job is not None]
    await p.environments.remove(key, users)
    return {"id": key, "removed": True}


@router.post("/environments/prune", response_model=schemas.Pruned, tags=["environments"])
async def prune_environments(request: Request):
    p = platform(request)
    removed = []
    for record in environment_records(p):
        if record.get("building") or record["in_use"]:
            continue
        try:
            await p.environments.remove(record["key"], [])
        except (Conflict, NotFound):  # taken or removed meanwhile
            continue
        removed.append(record["key"])
    return {"removed": removed}
