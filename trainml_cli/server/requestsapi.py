"""The API of a job's captured calls (captures.py): list them, and send one again.

    GET    /api/jobs/{job}/requests?tail=N&status=S&route=R&since=T   -> {requests: [entry], dropped}: the last N
                                               (default 100, at most 1000) that match, oldest first
    POST   /api/jobs/{job}/requests/{rid}/replay   -> {id, route, request, old, new, differ}; 409 when the call
                                               cannot be sent again (multipart, cut) or the job is not running
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field

from ..errors import Conflict
from . import captures
from .auth import require_auth
from .bodies import JsonRoute
from .schemas import Shape

router = APIRouter(prefix="/api", dependencies=[Depends(require_auth)], route_class=JsonRoute)


class CapturedPage(Shape):
    requests: list[dict[str, Any]] = Field(..., description="captured calls, oldest first: id (the answer's "
                                           "X-Request-Id), time, route, status, latency_ms, queue_ms, batch_size, "
                                           "request, response, error, client")
    dropped: int = Field(..., description="calls sampled but not kept because the endpoint's writer was behind")


class Replayed(Shape):
    id: str
    route: str
    request: Any = None
    old: dict[str, Any] = Field(..., description="{status, response} as captured")
    new: dict[str, Any] = Field(..., description="{status, response, id} of the call sent again")
    differ: bool


@router.get("/jobs/{job}/requests", response_model=CapturedPage, tags=["requests"])
async def job_requests(job: str, request: Request,
                       tail: int = Query(100, ge=1, le=captures.MAX_PAGE, description="the last N that match"),
                       status: Optional[str] = Query(None, description="200, or a class: 2xx, 4xx, 5xx"),
                       route: Optional[str] = Query(None, description="/predict or 'POST /predict'"),
                       since: Optional[str] = Query(None, description="an age (10m, 2h, 1d) or an ISO time")):
    """The job's captured calls (with --capture), oldest first."""
    jobs = request.app.state.platform.jobs
    found = jobs.find(job)
    return await asyncio.to_thread(captures.read, jobs.workdir(found.id), status=status, route=route, since=since,
                                   tail=tail)


@router.post("/jobs/{job}/requests/{rid}/replay", response_model=Replayed, tags=["requests"],
             responses={409: {"description": "the call cannot be sent again, or the job does not serve"}})
async def replay_request(job: str, rid: str, request: Request):
    """Send a captured call again to the serving endpoint: both answers, and whether they differ."""
    jobs = request.app.state.platform.jobs
    found = jobs.find(job)
    entry = await asyncio.to_thread(captures.find, jobs.workdir(found.id), rid)
    connection = jobs.connection(found.id)
    if connection["status"] != "running" or not connection["url"]:
        raise Conflict(f"job {found.name!r} is {connection['status']}; a call is replayed on a running endpoint")
    verify = jobs.tls[0] if jobs.tls else True
    return await captures.replay(entry, connection["url"], connection["key"], verify)
