"""The dashboard's own API, under /api/dashboard, behind the control plane's one auth dependency.

The pages use the REST API for everything it already does (stop, start, remove, log pages and the log
follower). These routes add only what a browser needs on top:

    POST /api/dashboard/login-links      bearer token only -> {url, expires}: a one-time sign-in link
    GET  /api/dashboard/events?job=ID    server-sent events: `jobs` (records) whenever what a person sees changes,
                                         `removed` when the followed job is gone
    GET  /api/dashboard/traffic?span=5m|1h|24h&job=ID   requests/s, latency, p50/p99 points per endpoint,
                                         from the history the control plane keeps (see traffic.py), and the
                                         live replicas where the backend reports them (Ray), and the times a
                                         revision began serving (`switches`: [{t, revision}]), and the
                                         latest streaming figures (`streams`: {open, items, first_item_ms}
                                         or null when the endpoint has not streamed), and the latest reading
                                         (`latest`, the same point whatever the span: the chart's "now")
    GET  /api/dashboard/jobs/{job}/history   the job's status changes, newest first (store table job_events)
    GET  /api/dashboard/jobs/{job}/logs.txt   the whole log as a text file (the Logs page's Download)
    GET  /api/dashboard/requirements?directory=/abs/path|upload=ID   {file, found}: whether a folder on the
                                         server (or an upload) holds the requirements.txt an environment would install
    GET  /api/dashboard/routes?directory=/abs/path|upload=ID|model=REF   {file, routes}: the routes of a
                                         routes.json at the model's root (null without one), for the form to fill
    POST /api/dashboard/check            the Create form -> {payload} or 422 {fields: [{field, message}]}
    POST /api/dashboard/jobs             the Create form -> the created job record (201); the model from a folder
                                         on this computer comes as the id of an upload the page made already
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Optional

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from ...environment import DEFAULT_REQUIREMENTS_FILE
from ...errors import NotFound, Unauthorized, UsageError
from ..auth import require_auth
from ..bodies import JsonRoute
from ..redaction import redact
from ..schemas import JobCreate
from . import forms, modelcode
from .history import status_history
from .pages import ROOT
from .traffic import RANGES

router = APIRouter(prefix="/api/dashboard", dependencies=[Depends(require_auth)], tags=["dashboard"],
                   route_class=JsonRoute)  # bodies capped and checked as the API's (bodies.py)

LIST_POLL = 0.5  # seconds between looks at the job table for the list's event stream
HEARTBEAT = 15.0  # a comment this often keeps proxies and the browser from deciding the stream is dead


def platform(request: Request):
    return request.app.state.platform


@router.post("/login-links", status_code=201)
async def login_link(request: Request):
    """A one-time sign-in link for `trainml server dashboard`; only the API token may ask for one."""
    if getattr(request.state, "principal", None) != "token":
        raise Unauthorized("login links are issued to the API token holder only (`trainml server dashboard`)")
    token, expires = request.app.state.dashboard_sessions.new_link_token()
    base = str(request.base_url).rstrip("/")
    return {"url": f"{base}{ROOT}/login?token={token}", "expires_in": round(expires - time.time())}


def _visible(job: dict) -> tuple:
    """What a person sees of a job in a list, minus the ticking run time the page counts on its own."""
    return (job["id"], job["name"], job["status"], job["reason"], job["url"], job["restarts"], job["pid"])


@router.get("/events", responses={200: {"content": {"text/event-stream": {}}}})
async def events(request: Request, job: Optional[str] = None):
    p = platform(request)
    job_id = p.jobs.find(job).id if job else None  # 404 at once for a job that does not exist

    def snapshot() -> list[dict] | None:
        if job_id is None:
            return p.jobs.list()
        try:
            return [p.jobs.get(job_id)]
        except NotFound:
            return None

    async def stream():
        yield "retry: 2000\n\n"
        last, quiet_since = None, time.monotonic()
        while True:
            jobs = snapshot()
            if jobs is None:
                yield f"event: removed\ndata: {json.dumps({'id': job_id})}\n\n"
                return
            seen = [_visible(j) for j in jobs]
            if seen != last:
                last, quiet_since = seen, time.monotonic()
                yield f"event: jobs\ndata: {json.dumps(jobs)}\n\n"
            elif time.monotonic() - quiet_since > HEARTBEAT:
                quiet_since = time.monotonic()
                yield ": keepalive\n\n"
            if job_id is None:
                await asyncio.sleep(LIST_POLL)
            else:
                # A status change logs an event line, which wakes this at once; so do other lines (cheap).
                await p.logs.wait(job_id, HEARTBEAT / 3)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/traffic")
async def traffic(request: Request, job: Optional[str] = None, span: str = "5m"):
    p = platform(request)
    if span not in RANGES:
        raise UsageError(f"span: {span!r} is not one of {', '.join(RANGES)}")
    jobs = [p.jobs.find(job)] if job else p.store.jobs()
    sampler = request.app.state.dashboard_traffic
    found = await asyncio.to_thread(sampler.series, p.store, [j.id for j in jobs], span)
    # With the live replicas where the backend reports them (Ray), shown beside the chart as they scale.
    # And when a revision began serving (an update or a rollback), marked on the chart.
    switches: dict[str, list[dict]] = {j.id: [] for j in jobs}
    for row in p.store.switches(list(switches), found["now"] - found["seconds"]) if switches else []:
        switches[row["job_id"]].append({"t": row["time"], "revision": row["number"]})
    found["jobs"] = [{"id": j.id, "name": j.name, "status": j.status.value, "points": found["jobs"][j.id],
                      "replicas": p.jobs.live_replicas(j.id) if j.status.is_launched else None,
                      "switches": switches[j.id], "streams": sampler.streams(j.id),
                      "latest": sampler.latest(j.id)}
                     for j in jobs]
    return found


@router.get("/jobs/{job}/history")
async def history(job: str, request: Request):
    p = platform(request)
    return {"history": await status_history(p.store, p.jobs.find(job).id)}


@router.get("/jobs/{job}/logs.txt")
async def download_log(job: str, request: Request):
    """The job's whole log as text, oldest line first (`TIME STREAM rN MESSAGE`), for the Logs page's Download.
    Read in pages as it is sent: a long log is never held whole."""
    p = platform(request)
    found = p.jobs.find(job)

    async def lines():
        after = 0
        while True:
            page = await asyncio.to_thread(p.logs.since, found.id, after, 2000)
            if not page:
                return
            after = page[-1]["id"]
            yield "".join(f"{line['time']} {line['stream']} r{line.get('revision') or 1} {line['message']}\n"
                          for line in page).encode()

    filename = "".join(c if c.isalnum() or c in "-_." else "_" for c in found.name) or "job"
    return StreamingResponse(lines(), media_type="text/plain; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{filename}.log"'})


@router.get("/requirements")
async def requirements(request: Request, directory: str = "", upload: str = ""):
    """The Create form's note under Requirements file: does this server folder (or this upload) have a
    requirements.txt at its root?"""
    if upload:
        try:
            names = await asyncio.to_thread(modelcode.uploaded_files, platform(request), upload)
        except (NotFound, UsageError) as exc:
            raise forms.FormErrors([forms.FieldError("model.upload", exc.message)]) from None
        return {"upload": upload, "file": DEFAULT_REQUIREMENTS_FILE, "found": DEFAULT_REQUIREMENTS_FILE in names}
    try:
        folder = forms.absolute_folder(directory)
    except UsageError as exc:
        raise forms.FormErrors([forms.form_field(p, "model.directory") for p in exc.fields]) from None
    found = await asyncio.to_thread(forms.requirements_found, folder)
    return {"directory": str(folder), "file": DEFAULT_REQUIREMENTS_FILE, "found": found}


@router.get("/routes")
async def model_routes(request: Request, directory: str = "", upload: str = "", model: str = ""):
    """The routes of a routes.json at the root of an upload, a server folder or a stored model, for the Create
    form to fill its routes from; `routes` is null when there is none."""
    p = platform(request)
    try:
        if upload:
            p.uploads.path(upload)
            read = modelcode.model_reader(p, {"upload_id": upload})
        elif model:
            read = modelcode.stored_model_reader(p, model)
        else:
            read = modelcode.model_reader(p, {"directory": str(forms.absolute_folder(directory))})
        routes = await asyncio.to_thread(modelcode.read_routes_file, read)
    except (NotFound, UsageError) as exc:
        fields = getattr(exc, "fields", None)
        raise forms.FormErrors([forms.form_field(f, "routes") for f in fields] if fields
                               else [forms.FieldError("routes", exc.message)]) from None
    return {"file": modelcode.ROUTES_FILE, "routes": routes}


@router.post("/check")
async def check_form(request: Request):
    """Next: check the form with the platform's rules; nothing is created."""
    # In a thread: finding the interpreter may run a few Pythons to ask their version.
    payload = await asyncio.to_thread(forms.check, platform(request), await _json(request))
    return {"payload": _public(payload)}


@router.post("/jobs", status_code=201)
async def create_from_form(request: Request):
    """Create: check again, pack a server-side folder if that is the source, and create the job as the API does."""
    p = platform(request)
    payload = await asyncio.to_thread(forms.check, p, await _json(request))
    model = payload["model"]
    packed_here = bool(model.get("directory"))
    if packed_here:
        model["upload_id"] = await forms.upload_directory(p, model.pop("directory"))
    try:
        return await p.jobs.create(JobCreate(**payload).model_dump(exclude_none=True))  # as POST /api/jobs does
    except BaseException:
        # Only what we packed: an upload the browser sent stays, so Create can be tried again without resending.
        if packed_here:
            p.uploads.discard(model["upload_id"])
        raise


async def _json(request: Request):
    try:
        return await request.json()
    except ValueError:
        raise forms.FormErrors([forms.FieldError("form", "the form must be sent as JSON")]) from None


def _public(payload: dict) -> dict:
    model = {k: v for k, v in payload["model"].items() if k != "directory"}
    if isinstance(model.get("source_uri"), str):  # the review shows a git URI's credentials as *** too
        model["source_uri"] = redact(model["source_uri"])
    return {**payload, "model": model}
