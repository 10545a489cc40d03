"""`TrainML`: the async SDK client, shaped like trainML's (`from trainml_cli import TrainML`).

    async with TrainML() as client:
        job = await client.jobs.create("echo", model={"source_type": "local", "source_uri": "models/echo"},
                                       endpoint={"routes": [route]}, wait=True)

The control plane is found from `api_url` / TRAINML_API_URL, else from `home` / TRAINML_HOME, where one is
started in the background if none answers (see autostart.py). The token comes from `token` /
TRAINML_API_TOKEN, else from the home's token file. Nothing is contacted until the first call.

trainML's keyword arguments are taken (`TrainML(user=..., key=...)`, `TrainML(project=...)`); those that mean
nothing for a self-hosted control plane are named in one warning, once per process.
"""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path

from .. import packing
from ..settings import Settings
from .environments import Environments
from .gpus import Gpus, GpuTypes
from .http import Http
from .jobs import Jobs
from .models import Models
from .secrets import Secrets

UPLOAD_TIMEOUT = 900.0
# trainML's client arguments for its cloud: accounts, projects, regions, its own config folder and host names.
TRAINML_ONLY = ("user", "key", "region", "project", "config_dir", "domain_suffix", "ws_url", "client_id", "pool_id")
_warned = False


class TrainML:
    def __init__(self, api_url: str | None = None, token: str | None = None, home=None, *,
                 settings: Settings | None = None, **trainml_kwargs):
        _ignore(trainml_kwargs)
        self.settings = settings or Settings.from_env(home=home, api_url=api_url, token=token)
        self.http = Http(self.settings)
        self.jobs = Jobs(self)
        self.models = Models(self)
        self.environments = Environments(self)
        self.secrets = Secrets(self)
        self.gpus = Gpus(self)
        self.gpu_types = GpuTypes(self)

    async def upload(self, folder: Path) -> dict:
        """Pack a model folder and upload it; returns {id, size, files, unpacked_size} for a job or model."""
        archive = await asyncio.to_thread(packing.pack, folder)
        try:
            return await self.http.request(
                "POST", "/api/uploads", data=archive, headers={"Content-Type": "application/gzip"},
                timeout=UPLOAD_TIMEOUT
            )
        finally:
            archive.close()

    async def close(self) -> None:
        await self.http.close()

    async def __aenter__(self) -> TrainML:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


def _ignore(kwargs: dict) -> None:
    """Warn, once, of the trainML arguments given that this platform does not use."""
    global _warned
    given = [name for name in kwargs if kwargs[name] is not None]
    if not given or _warned:
        return
    _warned = True
    unknown = [name for name in given if name not in TRAINML_ONLY]
    verb = "means" if len(given) == 1 else "mean"
    message = f"TrainML(): {', '.join(given)} {verb} nothing for a self-hosted control plane"
    message += f" ({', '.join(unknown)}: not a trainML argument either); ignored" if unknown else "; ignored"
    warnings.warn(message, UserWarning, stacklevel=3)
