"""The Requests tab of an endpoint's page: the calls its endpoint captured (`--capture RATE`), one call's request
and answer, "Copy as curl" and "Replay".

The page reads the REST API as `trainml job requests` and `trainml job replay` do (GET /api/jobs/{id}/requests,
POST /api/jobs/{id}/requests/{rid}/replay, from requests.js). The one thing added here is the curl line of a
captured call, built on the server from what a replay sends (captures.curl_command), so the copied command and
Replay send the same call; a keyed endpoint's key is never in it, only $ENDPOINT_KEY:

    GET /api/dashboard/jobs/{job}/requests/{rid}/curl   -> {command, keyed, variable}
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request

from .. import captures
from ..auth import require_auth
from ..bodies import JsonRoute
from .pages import ROOT, URL_STAND_IN, find_job, not_found, platform, render, signed_in, to_sign_in

router = APIRouter(prefix=ROOT, include_in_schema=False)
api = APIRouter(prefix="/api/dashboard", dependencies=[Depends(require_auth)], tags=["dashboard"],
                route_class=JsonRoute)

AGES = (("", "Any time"), ("5m", "Last 5 minutes"), ("1h", "Last hour"), ("1d", "Last day"))


@router.get("/jobs/{job_id}/requests")
async def requests_page(request: Request, job_id: str):
    if not signed_in(request):
        return to_sign_in()
    job = find_job(request, job_id)
    if job is None:
        return not_found(request, job_id)
    endpoint = job["endpoint"]
    labels = [f"{r['verb']} {r['path']}" for r in endpoint.get("routes", [])]
    return render(request, "requests.html", title=f"Requests to {job['name']}", page="requests",
                  section="endpoints", job=job, rate=endpoint.get("capture") or 0, routes=labels, ages=AGES)


@api.get("/jobs/{job}/requests/{rid}/curl")
async def request_curl(job: str, rid: str, request: Request):
    """The captured call `rid` as a curl command line, for "Copy as curl"."""
    jobs = platform(request).jobs
    found = jobs.find(job)
    entry = await asyncio.to_thread(captures.find, jobs.workdir(found.id), rid)
    connection = jobs.connection(found.id)
    keyed = bool(connection["auth"])
    return {"command": captures.curl_command(entry, connection["url"] or URL_STAND_IN, keyed), "keyed": keyed,
            "variable": captures.KEY_VARIABLE if keyed else None}
