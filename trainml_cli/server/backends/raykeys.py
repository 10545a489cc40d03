"""A keyed job's endpoint key on Ray: a package of its own in the cluster, which the replicas read.

The job's main package carries the key it was deployed with (rayapps.package). A rotated key must reach the running
replicas without replacing them, and without entering Serve's config (Ray's dashboard shows it): the key alone is
zipped (rayapps.key_package), uploaded under its hash, and the deployment's user_config names that package; Serve
calls every replica's `reconfigure`, which reads it (runtime/serve_entry.py). A replica that starts later (Serve
replacing a dead one) gets the same user_config, so it reads the current key too.

Nothing on the cluster refers to the key package (it is in no runtime_env), so the head would drop it 600 s after it
was last asked for; the endpoint asks again every PIN_EVERY seconds while it runs, which pins it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from ...errors import TrainMLError
from ...launchspec import KEY_PACKAGE_FIELD
from . import rayapps
from .rayhead import RayHead

PIN_EVERY = 240.0  # seconds; the head keeps an asked-for package 600 s


class KeyPackage:
    def __init__(self, head: RayHead, key_file: str | None):
        self.head = head
        self.key_file = key_file
        self.name: str | None = None  # the current key's package, once uploaded
        self._pinned = float("-inf")  # an adopted endpoint pins at once

    async def upload(self) -> str | None:
        """Upload the key file as it is now (unless the cluster has it); the package's name, None without a key."""
        if not self.key_file:
            return None
        name, data = await asyncio.to_thread(rayapps.key_package, Path(self.key_file))
        await self.head.keep_package(name, data)
        self.name, self._pinned = name, time.monotonic()
        return name

    async def pin(self, app: dict | None) -> None:
        """Ask for the key package every PIN_EVERY seconds; `app`: the application's status, where an adopted
        endpoint finds the package an earlier control plane deployed."""
        if self.name is None and self.key_file:
            for deployment in ((app or {}).get("deployed_app_config") or {}).get("deployments") or []:
                uri = (deployment.get("user_config") or {}).get(KEY_PACKAGE_FIELD) or ""
                self.name = uri[len("gcs://"):] or None
        if self.name and time.monotonic() - self._pinned > PIN_EVERY:
            try:
                await self.head.has_package(self.name)
                self._pinned = time.monotonic()
            except TrainMLError:
                pass  # asked again at the next poll
