"""`client.environments`: trainML's environment names and the virtualenvs the control plane built for endpoints.

    [env.name for env in await client.environments.list()]   # trainML's: a list of Environment objects
    listing = await client.environments.listing()           # {"environments", "interpreters", "trainml"}
    await client.environments.remove("3f2a9c1d")             # a key or a unique prefix; 409 while a job uses it
    removed = await client.environments.prune()              # every environment no job uses -> [keys]
"""

from __future__ import annotations

import json
from urllib.parse import quote

from ..frameworks import FRAMEWORKS


class Environment:
    """One environment with trainML's fields (id, name, py_version, framework, version, cuda_version); for
    trainML's names, `packages` (what the name adds to a job's environment) and `download` (its size); `here`
    says what it means on this platform, `dict` is the whole record."""

    def __init__(self, record: dict):
        self.dict = record

    id = property(lambda self: self.dict["id"])
    name = property(lambda self: self.dict["name"])
    py_version = property(lambda self: self.dict.get("py_version"))
    framework = property(lambda self: self.dict.get("framework"))
    version = property(lambda self: self.dict.get("version"))
    cuda_version = property(lambda self: self.dict.get("cuda_version"))
    packages = property(lambda self: self.dict.get("packages") or [])
    download = property(lambda self: self.dict.get("download"))
    here = property(lambda self: self.dict.get("here"))

    def __str__(self) -> str:
        return json.dumps(self.dict)

    def __repr__(self) -> str:
        return f"<Environment {self.id}>"


class Environments:
    def __init__(self, client):
        self._client = client

    async def list(self) -> list[Environment]:
        """trainML's environment names (what each adds here), then the environments built for jobs."""
        listing = await self.listing()
        # The control plane's table is the one its jobs follow; an older one without it: this package's.
        names = listing.get("trainml") or [f.to_dict() for f in FRAMEWORKS.values()]
        found = [Environment(_trainml(record)) for record in names]
        for env in listing["environments"]:
            found.append(Environment({
                "id": env["key"], "name": env["key"], "py_version": env.get("python"), "framework": None,
                "version": None, "cuda_version": None, "packages": list(env.get("pip") or []),
                "here": "built for " + (", ".join(env.get("jobs") or []) or "no job now"), "built": env}))
        return found

    async def listing(self) -> dict:
        """{environments: [{key, python, pip, size, jobs, in_use, ...}], interpreters: [...]}: what was built."""
        return await self._client.http.request("GET", "/api/environments")

    async def remove(self, key: str) -> str:
        """Remove one environment; returns its full key."""
        answer = await self._client.http.request("DELETE", f"/api/environments/{quote(key, safe='')}")
        return answer["id"]

    async def prune(self) -> list[str]:
        return (await self._client.http.request("POST", "/api/environments/prune"))["removed"]


def _trainml(record: dict) -> dict:
    adds = ", ".join(record["packages"])
    return {**record, "here": f"Python {record['py_version']} when this machine has it, else the default; adds "
                              f"{adds} to the job's environment (about {record['download']} to download once); the "
                              "job's own pins of those packages win"}
