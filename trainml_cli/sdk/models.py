"""`client.models` and `Model`: model code stored by the platform and reused by jobs (`source_type: trainml`).

    model = await client.models.create("sentiment", source_type="local", source_uri="examples/sentiment")
    job = await client.jobs.create("s1", model={"source_type": "trainml", "source_uri": "sentiment"}, endpoint=...)
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from ..errors import UsageError

CREATE_TIMEOUT = 900.0  # the server fetches the code (a git clone) before it answers


class Model:
    def __init__(self, client, record: dict):
        self._client = client
        self.dict = record

    def __repr__(self) -> str:
        return f"<Model {self.id} {self.name!r}>"

    id = property(lambda self: self.dict["id"])
    name = property(lambda self: self.dict["name"])
    source_type = property(lambda self: self.dict.get("source_type"))
    source_uri = property(lambda self: self.dict.get("source_uri"))
    size = property(lambda self: self.dict.get("size"))
    created = property(lambda self: self.dict.get("created"))

    async def refresh(self) -> Model:
        self.dict = await self._client.http.request("GET", f"/api/models/{quote(self.id, safe='')}")
        return self

    async def remove(self) -> None:
        await self._client.http.request("DELETE", f"/api/models/{quote(self.id, safe='')}")

    async def rename(self, name: str) -> Model:
        self.dict = await self._client.http.request("PATCH", f"/api/models/{quote(self.id, safe='')}",
                                                    json={"name": name})
        return self


class Models:
    def __init__(self, client):
        self._client = client

    async def create(self, name: str, *, source_type: str, source_uri: str, git_ref: str | None = None) -> Model:
        """Store model code from a local folder (packed and uploaded) or a git URI; returns once it is stored."""
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

    async def remove(self, id_or_name: str) -> None:
        await self._client.http.request("DELETE", f"/api/models/{quote(id_or_name, safe='')}")

    async def rename(self, id_or_name: str, name: str) -> Model:
        return await (await self.get(id_or_name)).rename(name)


def git_uri(uri):
    """A repository given as a local path is cloned by the server as a file:// URI."""
    if isinstance(uri, str) and uri.startswith("/") and Path(uri).exists():
        return Path(uri).resolve().as_uri()
    return uri
