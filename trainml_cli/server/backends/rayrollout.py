"""Switching a Ray endpoint to a new revision: Serve's own rolling update of the job's application.

The new revision's package and config go into the full list Serve runs (one PUT, as create does), under the same
application name and route prefix, so the URL does not change. Its deployment options have `max_surge_percent`
100 (rayapps.deployment_options): Serve starts every new replica before it stops an old one, routes calls to a new
replica only once it is healthy, and lets an old one finish its calls in flight (the stop grace) as it stops it.
The revision serves once Serve reports the application RUNNING with the new config and none of the replicas that
served before is listed any more: from then on every call reaches the new code.

A revision that cannot deploy (its code fails to import, its packages fail to install: DEPLOY_FAILED; or Ray
cannot place its replicas before the deploy deadline) fails with the reason. Serve keeps the old replicas serving
through a failed surge rollout, but its target is then the failed config; the old config is put back, and the old
replicas, whose version it is, serve on untouched (verified on the two-node cluster, tests/test_ray.py).

GPUs and auth change the same way: the new revision's deployment asks Ray for its own `num_gpus` and
`accelerator_type` (rayapps.deployment_options), and Ray places its replicas beside the old ones or fails it at the
deploy deadline saying what is missing. Auth turned on packs the new key (server/takeover.py writes it) into the
revision's package and its own key package, so `rotate-key` works from then on; turned off, the revision's
replicas start without a key file. Callers get an answer from either revision's replicas during the rollout.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from ...errors import Conflict, RevisionFailed, TrainMLError
from ...states import JobStatus
from . import rayapps
from .base import Launch
from .raykeys import KeyPackage

if TYPE_CHECKING:
    from .rayendpoint import RayEndpoint

POLL = 0.5


async def switch(endpoint: RayEndpoint, launch: Launch, timeout: float) -> None:
    """Deploy `launch` (a new revision) in place of what `endpoint` serves; return once it serves. Raises
    RevisionFailed with the reason when it cannot, the old revision serving again."""
    backend, say = endpoint.backend, endpoint.listener.event
    # Held throughout: a key rotation or a stop waits for the switch (which a stop cuts short).
    async with endpoint._deploying:
        if endpoint._stop.is_set() or not endpoint._deployed:
            raise RevisionFailed("the job was stopped while its new revision was starting")
        app = (await backend.applications(max_age=0)).get(endpoint.name) or {}
        old = app.get("deployed_app_config")
        if not old or rayapps.ServeStatus.of(app) is not rayapps.ServeStatus.RUNNING:
            raise Conflict(f"Ray Serve does not run application {endpoint.name} as it should (it is "
                           f"{app.get('status') or 'absent'}); wait until the job runs again, then update it")
        before = {r.get("replica_id") for r in rayapps.replicas(app)}
        endpoint.switching = True
        serving_key = endpoint.key
        if launch.runtime.key_file != serving_key.key_file:  # auth turned on or off (server/takeover.py)
            endpoint.key = KeyPackage(backend.head, launch.runtime.key_file)
        try:
            config = await endpoint._send(launch)
            if rayapps.version(config) == rayapps.version(old):  # the same again: Serve keeps its replicas
                before = set()
            scale = rayapps.scale_text(config["args"]["deployment"])
            say(f"revision {launch.revision}: Ray Serve rolls application {endpoint.name} over to it ({scale}); "
                "the serving replicas answer until the new ones are ready")
            reason = await _served(endpoint, launch, config, before, timeout)
            if reason is None:
                endpoint.launch = launch
                say(f"revision {launch.revision} is serving on Ray Serve; the previous replicas have stopped")
                return
            say(f"revision {launch.revision} did not deploy; Ray Serve gets the serving revision's application back")
            endpoint.key = serving_key
            await backend.apply({endpoint.name: old})
            if await _served(endpoint, endpoint.launch, old, set(), timeout) is not None:
                say(f"Ray Serve has not taken the serving revision's application back within {timeout:g}s")
            raise RevisionFailed(reason)
        except BaseException:
            endpoint.key = serving_key  # the serving revision's key (or none) is the one Serve runs with
            raise
        finally:
            endpoint.switching = False


async def _served(endpoint: RayEndpoint, launch: Launch, config: dict, before: set, timeout: float) -> str | None:
    """Wait until Serve runs `config` on replicas none of which is in `before`; None when it does, else why not."""
    backend, wanted = endpoint.backend, rayapps.version(config)
    deadline = time.monotonic() + timeout
    message = ""
    while True:
        if endpoint._stop.is_set():
            return "the job was stopped while its new revision was starting"
        try:
            app = (await backend.applications(max_age=0)).get(endpoint.name)
        except TrainMLError:  # the head is away for a moment: Serve goes on without it
            app = None
        if app is not None and rayapps.version(app.get("deployed_app_config")) == wanted:
            status, message = rayapps.job_status(app)
            replicas = rayapps.replicas(app)
            if status is JobStatus.FAILED:
                return rayapps.failure_reason(message)
            if (status is JobStatus.RUNNING and rayapps.ServeStatus.of(app) is rayapps.ServeStatus.RUNNING
                    and all(r.get("state") == "RUNNING" for r in replicas)
                    and not before & {r.get("replica_id") for r in replicas}):
                return None
        if time.monotonic() > deadline:
            said = f"; Ray Serve says: {message}" if message else ""
            return (await backend.shortfall(launch)
                    or f"the new revision was not running {timeout:g}s after it was deployed{said}")
        await asyncio.sleep(POLL)
