"""What a caller of a job's URL on Ray gets while no application of that job serves it: our JSON, not Serve's 404.

On Ray every job is a Serve application at `/e/JOB_ID`; while one starts, stops or is removed, its prefix is not
routed, and Serve's proxy answers `Path '/e/ID/predict' not found` in plain text. The control plane deploys one
more application at `/e` (server/backends/rayfallback.py), which Serve's longest-prefix routing (its proxy and
HAProxy alike) reaches for exactly those calls, and its replica serves this app:

- a job the control plane listed (launchspec.FALLBACK_STATES: starting, updating, stopping, or running but not
  routed yet): 503 `unavailable`, `Retry-After: 1`, saying which of these;
- any other path: 404 `not_found`, `no job at this URL`.

The answer names nothing but what the caller sent: no other job's id, name or state. The states come from the
deployment's user_config (runtime/serve_entry.py's reconfigure), a map the control plane sends with every change
of Serve's list.
"""

from __future__ import annotations

import json

from ..errors import NotFound, Unavailable
from ..launchspec import FALLBACK_STATES
from .ownpaths import RETRY
from .replies import Reply, RequestIds, send_json

NO_JOB = "no job at this URL"


class Fallback:
    """The ASGI app: `states` maps a job id to its state (FALLBACK_STATES), replaced whole on reconfigure."""

    def __init__(self, states: dict | None = None):
        self.states: dict = dict(states or {})
        self.ids = RequestIds()

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if kind != "http":
            return
        reply = Reply(send, self.ids.pick(scope["headers"]))
        state = self.states.get(job_id(scope))
        if state in FALLBACK_STATES:
            body = {"error": Unavailable.kind, "message": f"{FALLBACK_STATES[state]}; retry in a moment"}
            await send_json(reply, Unavailable.http_status, json.dumps(body).encode(), RETRY)
        else:
            body = {"error": NotFound.kind, "message": NO_JOB}
            await send_json(reply, NotFound.http_status, json.dumps(body).encode())


def job_id(scope) -> str:
    """The job id a path under the app's prefix names: `/e/ID/predict` (root_path `/e`) -> `ID`."""
    path, root = scope.get("path") or "", scope.get("root_path") or ""
    if root and path.startswith(root):
        path = path[len(root):]
    return path.lstrip("/").split("/", 1)[0]
