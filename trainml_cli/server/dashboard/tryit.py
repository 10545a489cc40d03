"""Connect's "Try it": one call to a running endpoint from the page, sent by the control plane.

The page cannot call the endpoint itself: it is another origin (its own port), and the pages' Content-Security-
Policy allows connections to the control plane only. So the page posts the route and the JSON body here, and
the control plane calls the endpoint as `trainml job call` would, with the endpoint's key for a keyed job (the
key stays on the server; the Connect page of a signed-in user shows it anyway), and answers with the status, the
answer's type, the time it took and at most MAX_ANSWER bytes of the answer. A file param is not sent from here:
the curl and Python snippets beside it show how.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request

from ...errors import Conflict, UsageError
from ...routecalls import query_values
from ...routespec import parse_routes
from ...states import JobStatus
from ..auth import require_auth
from ..bodies import JsonRoute

router = APIRouter(prefix="/api/dashboard", dependencies=[Depends(require_auth)], tags=["dashboard"],
                   route_class=JsonRoute)  # bodies capped and checked as the API's (bodies.py)

MAX_ANSWER = 256 * 1024  # bytes of the answer shown; the rest is cut, and said to be
TIMEOUT = 60.0  # seconds for the whole call: a page waits no longer


@router.post("/jobs/{job}/try")
async def try_route(job: str, request: Request):
    """{route: index, body: JSON object} -> {status, content_type, ms, answer, cut}."""
    p = request.app.state.platform
    record = p.jobs.get(job)
    try:
        sent = await request.json()
    except ValueError:
        raise UsageError("send {\"route\": N, \"body\": {...}} as JSON") from None
    routes = parse_routes(record["endpoint"]["routes"])
    index, body = (sent.get("route"), sent.get("body")) if isinstance(sent, dict) else (None, None)
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(routes):
        raise UsageError.at(("route",), f"route must be a number from 0 to {len(routes) - 1}")
    if not isinstance(body, dict):
        raise UsageError.at(("body",), "the body must be a JSON object, e.g. {\"text\": \"hello\"}")
    route = routes[index]
    if any(param.type == "file" for param in route.body):
        raise UsageError.at(("route",), f"{route.label} takes a file: call it with the curl or Python snippet")
    if record["status"] != JobStatus.RUNNING.value or not record.get("url"):
        raise Conflict(f"{record['name']} is {record['status']}: start it to try a call")
    key = p.jobs.connection(record["id"])["key"]
    return await asyncio.to_thread(_call, record["url"], route, body, key)


def _call(url: str, route, body: dict, key: str | None) -> dict:
    import requests

    from ...tls import is_loopback

    target = url.rstrip("/") + route.path
    request = {"json": body} if route.takes_body else {"params": query_values(body)}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    # Over loopback the endpoint serves the control plane's own certificate, named for the public host.
    verify = not is_loopback(urlsplit(url).hostname or "")
    started = time.monotonic()
    try:
        with requests.request(route.verb, target, headers=headers, timeout=(5, TIMEOUT), verify=verify,
                              stream=True, **request) as response:
            answer, size = b"", 0
            for chunk in response.iter_content(64 * 1024):
                size += len(chunk)
                if len(answer) < MAX_ANSWER:
                    answer += chunk[:MAX_ANSWER - len(answer)]
                if size > MAX_ANSWER or time.monotonic() - started > TIMEOUT:
                    break
            ms = (time.monotonic() - started) * 1000
            text = answer.decode(errors="replace")
            kind = response.headers.get("content-type", "")
            if "json" in kind and size <= MAX_ANSWER:
                try:
                    text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
                except ValueError:
                    pass
            return {"status": response.status_code, "content_type": kind, "ms": round(ms, 1), "answer": text,
                    "cut": size > MAX_ANSWER, "with_key": bool(key)}
    except requests.RequestException as exc:
        raise Conflict(f"the endpoint did not answer: {type(exc).__name__}") from None
