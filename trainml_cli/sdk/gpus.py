"""`client.gpus`: the GPU types, their prices, and the GPUs the control plane hands out.

    [(g["type"], g["free"]) for g in await client.gpus.list()]
"""

from __future__ import annotations


class Gpus:
    def __init__(self, client):
        self._client = client

    async def list(self) -> list[dict]:
        """[{type, names, price, count, free}]: price in credits per hour per GPU."""
        return await self._client.http.request("GET", "/api/gpus")
