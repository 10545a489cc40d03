"""A job scaled to zero holds no GPU: its GPUs go back to this machine's pool for other jobs while it sleeps.

An autoscaled local endpoint with --min-replicas 0 and GPUs is placed on its GPUs as any job (the first worker
loads its code on them). From then on its leader process (runtime/autoscaler.py) says where it stands in its
scale file (contracts.ScaleState) and this loop, in the control plane, follows it:

- no worker left and none wanted: the job is at zero; its GPUs are released (`GpuPool.release`), so a job waiting
  for them, or one created now, takes them;
- `wants_gpus`: a call woke it; the pool hands it GPUs of its types as soon as enough are free (the same ones or
  others) and the devices are written to contracts.GPU_GRANT_FILE, which the leader waits for before it starts a
  worker with them as CUDA_VISIBLE_DEVICES. Meanwhile its calls are held; past --cold-start-timeout they get 503
  with Retry-After and a body saying the GPUs are taken, and the leader goes back to zero (GPUs granted after
  that are released again).

The pool lives in the control plane, so a job with GPUs wakes only while one runs (a CPU-only job wakes without
it); an adopted endpoint's lease resumes from its scale file. The job's record shows the GPUs it holds now.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from ...contracts import GPU_GRANT_FILE, read_scale, write_grant
from .. import resources as res
from .base import EndpointListener, Launch

POLL = 0.05  # seconds between two looks at the scale file (a small read; only for these jobs)


def needs_lease(launch: Launch) -> bool:
    """An autoscaled job that may scale to zero and runs on GPUs."""
    return bool(launch.runtime.scale_file and launch.runtime.min_workers == 0
                and res.gpus_needed(launch.resources or {}))


async def follow(pool: res.GpuPool, launch: Launch, listener: EndpointListener, adopted: bool) -> None:
    """Release and hand back the job's GPUs as its leader sleeps and wakes, until cancelled (the job ends)."""
    job_id, resources = launch.job_id, launch.resources
    path = Path(launch.runtime.scale_file)
    grant = path.with_name(GPU_GRANT_FILE)
    stale = None if adopted else _written(path)  # a launch: the file an earlier run left says nothing yet
    while True:
        await asyncio.sleep(POLL)
        if stale is not None:
            if _written(path) == stale:
                continue
            stale = None
        state = read_scale(path)
        if state is None:
            continue
        holding = pool.held_by(job_id)
        if holding and not state.workers and not state.wants_gpus:
            await pool.release(job_id)
            listener.gpus([])
            listener.event(f"scaled to zero: GPU(s) {', '.join(holding)} back to the pool")
        elif holding and state.wants_gpus and not state.workers and not grant.exists():
            # The leader threw the grant away as stale: written as its last calls gave up, just before a new call
            # woke it, while the pool still counts those GPUs as the job's. The same GPUs, handed again. (Once the
            # leader has taken a grant, until it writes its new worker, this leaves one more: thrown away next time.)
            write_grant(grant, ",".join(g.device for g in pool.gpus if g.index in holding))
        elif not holding and state.wants_gpus:
            gpus = pool.try_take(job_id, resources)
            if gpus is None:
                listener.event(f"waking: waiting for {res.gpus_needed(resources)} free GPU(s) of type "
                               f"{' or '.join(resources['gpu_types'])}, held by other jobs")
                gpus = await _acquire_while_wanted(pool, launch)
                if gpus is None:
                    continue
            write_grant(grant, ",".join(g["device"] for g in gpus))
            listener.gpus(gpus)
            listener.event(f"waking: GPU(s) {', '.join(g['index'] for g in gpus)} handed back")


async def _acquire_while_wanted(pool: res.GpuPool, launch: Launch) -> list | None:
    """GPUs once free, or None once the leader stopped wanting them (its calls gave up: it went back to zero)."""
    taking = asyncio.ensure_future(pool.acquire(launch.job_id, launch.resources))
    try:
        while not taking.done():
            await asyncio.wait([taking], timeout=POLL * 4)
            state = read_scale(launch.runtime.scale_file)
            if not taking.done() and state is not None and not state.wants_gpus:
                return None
        return taking.result()
    finally:
        if not taking.done():
            taking.cancel()
            await asyncio.gather(taking, return_exceptions=True)



def _written(path: Path) -> tuple:
    try:
        stat = path.stat()
        return stat.st_ino, stat.st_mtime_ns  # each write is a new file (contracts.write_scale)
    except OSError:
        return ()
