"""`client.gpus`: the GPU types, their prices, and the GPUs the control plane hands out; `client.gpu_types`:
the same as trainML's GpuType objects.

    [(g["type"], g["free"]) for g in await client.gpus.list()]
    [(t.id, t.credits_per_hour_max) for t in await client.gpu_types.list()]
"""

from __future__ import annotations

import json


class Gpus:
    def __init__(self, client):
        self._client = client

    async def list(self) -> list[dict]:
        """[{type, names, price, count, free}]: price in credits per hour per GPU."""
        return await self._client.http.request("GET", "/api/gpus")


class GpuType:
    """trainML's fields: `id` (what gpu_types takes), `name`, `abbrv`, `credits_per_hour_min/max` (one price
    here); `count` and `free` are this platform's GPUs of the type."""

    def __init__(self, row: dict):
        self.dict = row

    id = property(lambda self: self.dict["type"])
    name = property(lambda self: (self.dict.get("names") or [self.dict["type"]])[0])
    abbrv = property(lambda self: self.dict["type"])
    credits_per_hour_min = property(lambda self: self.dict.get("price"))
    credits_per_hour_max = property(lambda self: self.dict.get("price"))
    count = property(lambda self: self.dict.get("count", 0))
    free = property(lambda self: self.dict.get("free", 0))

    def __str__(self) -> str:
        return json.dumps(self.dict)

    def __repr__(self) -> str:
        return f"<GpuType {self.id}>"


class GpuTypes:
    def __init__(self, client):
        self._client = client

    async def list(self) -> list[GpuType]:
        return [GpuType(row) for row in await self._client.http.request("GET", "/api/gpus")]
