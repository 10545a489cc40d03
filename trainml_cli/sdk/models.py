"""`client.models` and `Model`: model code stored by the platform and reused by jobs (`source_type: trainml`).

    model = await client.models.create("sentiment", "local", "examples/sentiment")
    await model.connect(); await model.wait_for("ready")      # trainML's steps; here create has stored it
    job = await client.jobs.create("s1", model={"source_type": "trainml", "source_uri": "sentiment"}, endpoint=...)

trainML uploads a local model after create (`connect`) and reports its progress (`attach`); here create returns
once the code is stored, so a model is `ready` from the start, `connect`, `attach` and `disconnect` have nothing
left to do, and `wait_for` returns at once for what a ready model has reached (`downloading`, `ready`).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from urllib.parse import quote

from ..errors import NotFound, UsageError, WaitTimeout
from .waits import ARCHIVED, MODEL_TARGETS, check_timeout

CREATE_TIMEOUT = 900.0  # the server fetches the code (a git clone) before it answers


class Model:
    def __init__(self, client, record: dict):
        self._client = client
        self.dict = record

    def __repr__(self) -> str:
        return f"<Model {self.id} {self.name!r}>"

    def __str__(self) -> str:  # trainML's: the record as JSON
        return json.dumps(self.dict)

    id = property(lambda self: self.dict["id"])
    name = property(lambda self: self.dict["name"])
    source_type = property(lambda self: self.dict.get("source_type"))
    source_uri = property(lambda self: self.dict.get("source_uri"))
    size = property(lambda self: self.dict.get("size"))
    created = property(lambda self: self.dict.get("created"))
    status = property(lambda self: self.dict.get("status", "ready"))  # stored before create returned

    async def refresh(self) -> Model:
        self.dict = await self._client.http.request("GET", f"/api/models/{quote(self.id, safe='')}")
        return self

    async def connect(self) -> None:
        """trainML's upload step; create has uploaded the code already."""

    async def disconnect(self) -> None:
        """trainML's end of the upload; nothing is left open here."""

    async def attach(self, msg_handler=None) -> None:
        """trainML's progress of the model's creation: it is complete once create returns, so nothing follows."""

    async def wait_for(self, status: str, timeout: float = 300) -> Model:
        """trainML's wait: `downloading` and `ready` are reached (the code is stored), `archived` once the model
        is removed (WaitTimeout after `timeout` seconds); `exporting` never happens here (UsageError)."""
        if status not in MODEL_TARGETS:
            raise UsageError.at(("status",), f"{status!r} is not a model status to wait for; one of "
                                f"{', '.join(MODEL_TARGETS)}", label="wait_for")
        check_timeout(timeout)
        if status == "exporting":
            raise UsageError.at(("status",), "models are not exported here: a stored model stays ready",
                                label="wait_for")
        if status != ARCHIVED:
            return self
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self.refresh()
            except NotFound:
                return self
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"model {self.name} is still stored after {timeout:g}s (waiting for archived)")
            await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    async def remove(self, force: bool = False) -> None:
        """Remove the stored model (`force` is trainML's; jobs made from it keep running either way)."""
        await self._client.http.request("DELETE", f"/api/models/{quote(self.id, safe='')}")

    async def rename(self, name: str) -> Model:
        self.dict = await self._client.http.request("PATCH", f"/api/models/{quote(self.id, safe='')}",
                                                    json={"name": name})
        return self


class Models:
    def __init__(self, client):
        self._client = client

    async def create(self, name: str, source_type: str, source_uri: str, type: str = "evefs",
                     project_uuid: str | None = None, *, git_ref: str | None = None, **kwargs) -> Model:
        """Store model code from a local folder (packed and uploaded) or a git URI; returns once it is stored.
        trainML's signature: `type` and `project_uuid` mean nothing here; `source_options={"branch": ...}`
        is the same as `git_ref`."""
        options = kwargs.pop("source_options", None) or {}
        git_ref = git_ref or options.get("branch")
        given = sorted(key for key, value in kwargs.items() if value is not None)
        if given:
            raise UsageError(f"models.create: {', '.join(given)} {'is' if len(given) == 1 else 'are'} not "
                             "supported here")
        source_type = str(source_type).lower()
        payload = {"name": name, "source_type": source_type, "source_uri": source_uri}
        if source_type == "local":
            folder = Path(source_uri).expanduser()
            upload = await self._client.upload(folder)
            payload.update(source_uri=str(folder.resolve()), upload_id=upload["id"])
        elif source_type == "git":
            payload["source_uri"] = git_uri(source_uri)
            if git_ref:
                payload["git_ref"] = git_ref
        else:
            raise UsageError(f"source_type {source_type!r} is not one of local, git")
        record = await self._client.http.request("POST", "/api/models", json=payload, timeout=CREATE_TIMEOUT)
        return Model(self._client, record)

    async def get(self, id_or_name: str) -> Model:
        return Model(self._client, await self._client.http.request("GET", f"/api/models/{quote(id_or_name, safe='')}"))

    async def list(self) -> list[Model]:
        return [Model(self._client, record) for record in await self._client.http.request("GET", "/api/models")]

    async def remove(self, id_or_name: str, **kwargs) -> None:
        """trainML's `models.remove(id)`: always removes (jobs made from it keep running)."""
        await self._client.http.request("DELETE", f"/api/models/{quote(id_or_name, safe='')}")

    async def rename(self, id_or_name: str, name: str) -> Model:
        return await (await self.get(id_or_name)).rename(name)


def git_uri(uri):
    """A repository given as a local path is cloned by the server as a file:// URI."""
    if isinstance(uri, str) and uri.startswith("/") and Path(uri).exists():
        return Path(uri).resolve().as_uri()
    return uri
