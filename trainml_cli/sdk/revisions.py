"""A job's revisions from the SDK: list them, deploy a new one on the same URL (`update`), serve an older one
again (`rollback`); a revision that did not take over raises RevisionFailed with the job's last log lines.

`JobRevisions` is a part of `Job` (jobs.py), which holds the client and the record.
"""

from __future__ import annotations

from ..errors import RevisionFailed, TrainMLError
from ..states import headline
from .jobpayload import update_payload

UPDATE_TIMEOUT = 1800.0  # seconds an update may take: fetching and building an environment can be long


class JobRevisions:
    async def revisions(self) -> list[dict]:
        """The job's revisions, oldest first: {revision, status (starting, serving, retired, failed), created,
        source, reason, ...}; revision 1 is what create made."""
        return await self._client.http.request("GET", self._path + "/revisions")

    async def update(self, *, model: dict | None = None, endpoint: dict | None = None,
                     environment: dict | None = None, resources: dict | None = None,
                     timeout: float = UPDATE_TIMEOUT, if_changed: bool = False, strategy: str | None = None) -> dict:
        """Deploy a new revision on the same URL without a failed call and return it once it serves: what is
        given replaces the serving revision's (model, endpoint fields such as routes, environment fields,
        resources); nothing given redeploys the same spec (a git branch's head fetched again). Raises
        RevisionFailed (the serving revision goes on) with the reason and the job's last log lines. With
        `if_changed`, code and spec the same as the serving revision's deploy nothing: the answer is the serving
        revision with `unchanged: true`.

        GPUs (`resources={"gpu_types": [...], "gpu_count": N}`) and `endpoint={"auth": True}` change too: a key
        made for it is the job's once it serves (`await job.connection()`). `strategy="recreate"` stops the
        serving revision first (for GPUs free only then; calls wait meanwhile); the default, "blue-green", is
        refused (Conflict) when the new revision's GPUs are not free beside the serving one's."""
        payload = await update_payload(self._client, model, endpoint, environment, resources)
        if if_changed:
            payload["if_changed"] = True
        if strategy is not None:
            payload["strategy"] = strategy
        revision = await self._client.http.request("POST", self._path + "/revisions", json=payload, timeout=timeout)
        return await self._served(revision)

    async def rollback(self, to: int | None = None, timeout: float = UPDATE_TIMEOUT,
                       strategy: str | None = None) -> dict:
        """Serve revision `to` again (default: the newest retired one before the serving one), with its code, GPUs
        and auth."""
        body = {"to": to} if to is not None else {}
        if strategy is not None:
            body["strategy"] = strategy
        revision = await self._client.http.request("POST", self._path + "/rollback", json=body, timeout=timeout)
        return await self._served(revision)

    async def _served(self, revision: dict) -> dict:
        if revision.get("status") != "failed":
            return revision
        tail = []
        try:
            tail = [entry.get("message", "") async for entry in self.logs(tail=10)]
        except TrainMLError:
            pass
        head = headline(revision.get("reason")) or "no reason given"
        message = (f"revision {revision['revision']} of job {self.name} failed: {head}\n"
                   "the serving revision goes on serving")
        if tail:
            message += "\nlast log lines:\n" + "\n".join(f"  {line}" for line in tail)
        raise RevisionFailed(message, details=tail)

