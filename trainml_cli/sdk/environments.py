"""`client.environments`: trainML's environment names and the virtualenvs the control plane built for endpoints.

    [env.name for env in await client.environments.list()]   # trainML's: a list of Environment objects
    listing = await client.environments.listing()           # {"environments": [...], "interpreters": [...]}
    await client.environments.remove("3f2a9c1d")             # a key or a unique prefix; 409 while a job uses it
    removed = await client.environments.prune()              # every environment no job uses -> [keys]
"""

from __future__ import annotations

import json
from urllib.parse import quote

from ..environment import TRAINML_ENVIRONMENTS, python_of_type


class Environment:
    """One environment with trainML's fields (id, name, py_version, framework, version, cuda_version); `here`
    says what it means on this platform, `dict` is the whole record."""

    def __init__(self, record: dict):
        self.dict = record

    id = property(lambda self: self.dict["id"])
    name = property(lambda self: self.dict["name"])
    py_version = property(lambda self: self.dict.get("py_version"))
    framework = property(lambda self: self.dict.get("framework"))
    version = property(lambda self: self.dict.get("version"))
    cuda_version = property(lambda self: self.dict.get("cuda_version"))
    here = property(lambda self: self.dict.get("here"))

    def __str__(self) -> str:
        return json.dumps(self.dict)

    def __repr__(self) -> str:
        return f"<Environment {self.id}>"


class Environments:
    def __init__(self, client):
        self._client = client

    async def list(self) -> list[Environment]:
        """trainML's environment names (what each means here), then the environments built for jobs."""
        found = [Environment(_trainml(name, *spec)) for name, spec in TRAINML_ENVIRONMENTS.items()]
        for env in (await self.listing())["environments"]:
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


def _trainml(name: str, framework: str, version: str | None) -> dict:
    python = python_of_type(name)
    what = f"{framework} {version}" if version else framework
    return {"id": name, "name": name, "py_version": python, "framework": framework, "version": version,
            "cuda_version": None,  # no image here: CUDA is whatever the machine and the pip wheels bring
            "here": f"Python {python} when this machine has it, else the default; {what} is not preinstalled: "
                    "add it with environment.packages.pip (--pip-packages)"}
