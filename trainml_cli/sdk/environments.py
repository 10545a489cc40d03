"""`client.environments`: the virtualenvs the control plane built for endpoints, and the interpreters it can use.

    listing = await client.environments.list()      # {"environments": [...], "interpreters": [...]}
    await client.environments.remove("3f2a9c1d")     # a key or a unique prefix; 409 while a job uses it
    removed = await client.environments.prune()      # every environment no job uses -> [keys]
"""

from __future__ import annotations

from urllib.parse import quote


class Environments:
    def __init__(self, client):
        self._client = client

    async def list(self) -> dict:
        return await self._client.http.request("GET", "/api/environments")

    async def remove(self, key: str) -> str:
        """Remove one environment; returns its full key."""
        answer = await self._client.http.request("DELETE", f"/api/environments/{quote(key, safe='')}")
        return answer["id"]

    async def prune(self) -> list[str]:
        return (await self._client.http.request("POST", "/api/environments/prune"))["removed"]
