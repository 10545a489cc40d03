"""An endpoint's replicas on Ray over time: which one died, and which one serves in its place.

Serve replaces a replica whose process dies (killed, out of memory, a crash in native code) on its own, and its
status says nothing once the new one runs: without this, `job get` would say `Restarts: 0` and `job logs` nothing.
From the application's status, read at every poll anyway, a replica that leaves the running ones is looked up in
the head's actor table: an actor that is dead for a reason other than being stopped (Serve stops a replica with
`ray.kill` when it scales down, replaces it for a new version, or removes the application) died. Each death
counts as one restart of the job and is logged with its pid, node and cause; the replica that next starts
serving is logged as its replacement.
"""

from __future__ import annotations

import time

from ...errors import TrainMLError
from .base import EndpointListener
from .rayhead import RayHead

# Ray's reasons for an actor's death that are a stop, not a crash (ActorDiedErrorContext.Reason).
_STOPPED = {"RAY_KILL", "INTENDED_USER_EXIT", "OUT_OF_SCOPE", "REF_DELETED", "OWNER_DIED"}
LOOK_FOR = 30.0  # seconds a replica that left is looked up: the head may record its death a moment late
LOOK_EVERY = 1.0


def _short(replica_id: str) -> str:
    return replica_id[:8]


def _where(replica: dict) -> str:
    node = replica.get("node_ip") or (replica.get("node_id") or "")[:8]
    return f"replica {_short(replica.get('replica_id') or '?')} (pid {replica.get('pid')}) on node {node}"


def death(actor: dict | None) -> str | None:
    """Why the actor died, if it died rather than being stopped; None while alive or when stopped."""
    if not actor or actor.get("state") != "DEAD":
        return None
    context = (actor.get("death_cause") or {}).get("actor_died_error_context") or {}
    reason = context.get("reason") or ""
    if reason in _STOPPED:
        return None
    message = (context.get("error_message") or reason or "the actor died").strip().splitlines()
    return message[0] if message else reason


class ReplicaWatch:
    """Fed each poll's replica list (rayapps.replicas); tells the listener about deaths and replacements."""

    def __init__(self, head: RayHead, listener: EndpointListener):
        self.head = head
        self.listener = listener
        self.running: dict[str, dict] = {}  # replica id -> its record, while RUNNING
        self.left: dict[str, tuple[dict, float, float]] = {}  # left RUNNING: (record, since, next look)
        self.died: list[tuple[dict, float]] = []  # dead, not yet replaced, with when it left (oldest first)
        self.fresh: list[tuple[dict, float]] = []  # started, no death known yet to pair it with (Serve may start
        # the replacement before the head's actor table says the old one died)
        self._first = True

    async def see(self, replicas: list[dict]) -> None:
        now = time.monotonic()
        current = {r["replica_id"]: r for r in replicas if r.get("replica_id") and r.get("state") == "RUNNING"}
        if self._first:  # what already runs (a deploy, an adoption) is the baseline, not a replacement
            self._first = False
            self.running = current
            return
        for replica_id, replica in self.running.items():
            if replica_id not in current and replica.get("actor_id"):
                self.left[replica_id] = (replica, now, now)
        for replica_id, replica in current.items():
            if replica_id not in self.running:
                self.fresh.append((replica, now))
        self.fresh = [(replica, since) for replica, since in self.fresh if now - since < LOOK_FOR]
        self.running = current
        await self._look(now)
        for gone, left in list(self.died):  # paired with the first replica that started since it left
            started = next((entry for entry in self.fresh if entry[1] >= left), None)
            if started is not None:
                self.died.remove((gone, left))
                self.fresh.remove(started)
                self.listener.event(f"{_where(started[0])} is serving again in place of {_short(gone['replica_id'])}")

    async def _look(self, now: float) -> None:
        for replica_id, (replica, since, next_look) in list(self.left.items()):
            if now < next_look:
                continue
            try:
                actor = await self.head.actor(replica["actor_id"])
            except TrainMLError:
                actor = {"state": "?"}  # the head is away: look again
            cause = death(actor)
            if cause is not None:
                del self.left[replica_id]
                self.died.append((replica, since))
                self.listener.restarted(f"{_where(replica)} died: {cause}; Ray Serve replaces it")
            elif (actor or {}).get("state") == "DEAD" or now - since > LOOK_FOR:
                del self.left[replica_id]  # stopped by Serve, or nothing known in time: not counted
            else:
                self.left[replica_id] = (replica, since, now + LOOK_EVERY)
