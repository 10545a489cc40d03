"""`client.secrets`: values go in, never come out.

    await client.secrets.put("HF_TOKEN", value)       # stored 0600 by the control plane
    [s["name"] for s in await client.secrets.list()]  # names and times only
    job = await client.jobs.create(..., environment={"secrets": ["HF_TOKEN"]})   # $HF_TOKEN in the endpoint
"""

from __future__ import annotations

from urllib.parse import quote


class Secrets:
    def __init__(self, client):
        self._client = client

    async def put(self, name: str, value: str) -> dict:
        return await self._client.http.request("PUT", f"/api/secrets/{quote(name, safe='')}", json={"value": value})

    async def list(self) -> list[dict]:
        return await self._client.http.request("GET", "/api/secrets")

    async def remove(self, name: str) -> None:
        await self._client.http.request("DELETE", f"/api/secrets/{quote(name, safe='')}")
