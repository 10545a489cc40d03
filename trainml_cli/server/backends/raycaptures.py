"""A Ray job's captured calls (`--capture`), brought from every node into the job's folder, as a local job keeps them.

A local endpoint writes its captures straight into the job's folder. A Ray replica runs on any node, so it writes
them where that node keeps its own files, and the control plane pulls them through the head, which it reaches
anyway (it never imports ray, and a replica need not reach the control plane):

- each replica's writer (runtime/capture.py: sampled, redacted, behind its bounded queue) appends to segments in
  its node's Ray log folder, `trainml-capture/<application>/`, bounded there by --capture-size, and seals one (renames
  `NAME.jsonl.part` to `NAME.jsonl`) at least every second, and when the replica stops (runtime/serve_entry.py);
- `CaptureDrain.drain`, every DRAIN_EVERY seconds while the job runs and once more after its replicas are gone,
  lists each live node's sealed segments of the application (`GET /api/v0/logs?node_id=..&glob=..`), reads the ones
  not drained yet (`GET /api/v0/logs/file?node_id=..&filename=..`), and appends their lines to the job's own
  segments (`TRAINML_HOME/jobs/JOB_ID/requests/`, 0600, bounded by --capture-size: capturefiles.Segments), which
  `job requests`, the API and replay read as they read a local job's.

Each replica's segments are sealed in name order (their names start with the time they were opened), so what was
drained is one name per node and writer process, kept in `requests/drained.json`: a control plane that restarts and
adopts the application drains on from there, never twice. The nodes' copies are not removed (Ray's log API only
reads); they stay within --capture-size per node and go with the Ray session's log folder.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path

from ...capturefiles import RAY_CAPTURE_FOLDER, SUFFIX, Segments
from ...errors import TrainMLError
from ...launchspec import DEFAULT_CAPTURE_SIZE
from .rayhead import RayHead

log = logging.getLogger("trainml.server")

DRAIN_EVERY = 1.0  # seconds between drains while the job runs
FINAL_DRAIN = 30.0  # seconds the last drain (after the replicas have stopped) may take
STATE = "drained.json"  # in the job's capture folder: per node and writer, the last segment drained


def writer(name: str) -> str:
    """The writer process of a segment `<ns>-<pid>.jsonl`."""
    return name[:-len(SUFFIX)].rpartition("-")[2]


def pending(node: str, files: list[str], drained: dict[str, str]) -> list[str]:
    """The sealed segments of `files` (paths in the node's log folder) not drained yet, oldest first."""
    found = []
    for path in files:
        name = path.rpartition("/")[2]
        if name.endswith(SUFFIX) and name > drained.get(f"{node}:{writer(name)}", ""):
            found.append(path)
    return sorted(found, key=lambda path: path.rpartition("/")[2])


def follow(drain: CaptureDrain | None, head: RayHead, app_name: str, launch) -> CaptureDrain | None:
    """The watch loop's turn: the job's drain (made once its launch captures; a revision may turn capture on),
    started in the background when one is due."""
    runtime = launch.runtime
    if drain is None and runtime.capture and runtime.capture_dir:
        drain = CaptureDrain(head, app_name, runtime.capture_dir, runtime.capture_size or DEFAULT_CAPTURE_SIZE)
    if drain is not None:
        drain.tick()
    return drain


class CaptureDrain:
    """One Ray job's captures, drained from the nodes into its folder."""

    def __init__(self, head: RayHead, app_name: str, folder: str | os.PathLike, size: int):
        self.head = head
        self.glob = f"{RAY_CAPTURE_FOLDER}/{app_name}/*{SUFFIX}"
        self.folder = Path(folder)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.segments = Segments(str(self.folder), size)
        self.drained: dict[str, str] = self._load()
        self.kept = 0  # entries drained by this control plane
        self._task: asyncio.Task | None = None
        self._last = 0.0

    def tick(self) -> None:
        if (self._task is None or self._task.done()) and time.monotonic() - self._last >= DRAIN_EVERY:
            self._last = time.monotonic()
            self._task = asyncio.create_task(self._drain_quietly(), name=f"ray-captures-{self.glob}")

    async def _drain_quietly(self) -> None:
        try:
            await self.drain()
        except (TrainMLError, OSError) as exc:  # the head is away, or the disk: the next drain tries again
            log.warning("could not drain captured calls (%s): %s", self.glob, exc)

    async def finish(self, last: bool = True) -> None:
        """End the drains; with `last`, once more first (the replicas have stopped and sealed what they held)."""
        if self._task is not None and not self._task.done():
            if last:
                await asyncio.wait([self._task], timeout=FINAL_DRAIN)
            self._task.cancel()
        if last:
            try:
                await asyncio.wait_for(self._drain_quietly(), FINAL_DRAIN)
            except asyncio.TimeoutError:
                log.warning("the last drain of captured calls (%s) took over %gs", self.glob, FINAL_DRAIN)
        self.close()

    async def drain(self) -> int:
        """Bring every node's new sealed segments into the job's folder; the number of lines kept. A node or a
        segment that cannot be read now is read at the next drain."""
        kept = 0
        for node in await self.head.node_ids():
            try:
                files = await self.head.log_files(node, self.glob)
            except TrainMLError as exc:
                log.debug("cannot list captured calls on node %s: %s", node, exc)
                continue
            for path in pending(node, files, self.drained):
                data = await self.head.log_file(node, path)
                name = path.rpartition("/")[2]
                if data:
                    lines = [line + b"\n" for line in data.split(b"\n") if line.strip()]
                    if lines:
                        self.segments.write(lines)
                        kept += len(lines)
                # Gone (removed on the node as its oldest) or read: either way, never read again.
                self.drained[f"{node}:{writer(name)}"] = name
                self._save()
        self.kept += kept
        return kept

    def close(self) -> None:
        self.segments.close()

    def _load(self) -> dict[str, str]:
        try:
            state = json.loads((self.folder / STATE).read_text())
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, str)} \
            if isinstance(state, dict) else {}

    def _save(self) -> None:
        path = self.folder / STATE
        temporary = path.with_name(f"{STATE}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump(self.drained, file)
        os.replace(temporary, path)
