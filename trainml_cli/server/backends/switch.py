"""Switching a local endpoint to a new revision on the same socket, without a failed call.

The control plane holds each job's listening socket (local.py). A new revision's process gets the same socket
beside the serving one, started with `--load-first`: it begins to accept only once its code has loaded (every
worker's `ready:` line), and a revision that cannot load exits 3 having accepted nothing. Both processes then
accept from the one queue; the old one gets SIGTERM, and uvicorn's graceful shutdown stops accepting, closes
its idle keep-alive connections, answers the calls in flight with `Connection: close` and exits (SIGKILL after
the stop grace). Nothing queued is lost: it waits in the shared backlog for the new process. SO_REUSEPORT is
not used: closing one listener of such a group drops what waits in its own queue.

An endpoint adopted after a control plane restart holds the only copy of its socket: `hold_socket` asks its
process for it first (handover.py), and the switch goes on as for any other.

`recreate` (`--strategy recreate`, for GPUs that are free only once the serving revision stops) does it the
other way round: the old process drains and exits first, then the new one starts on the same socket, so what
callers send meanwhile waits in the backlog (the downtime it returns); if the new one cannot load, the
supervisor starts the serving revision again.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace

from ... import handover
from ...errors import Conflict, RevisionFailed
from ..processes import kill_group, process_start_time
from .base import Launch
from .probes import first
from .scaling import initial_workers

POLL = 0.05


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


async def hold_socket(endpoint) -> None:
    """Make sure the control plane holds `endpoint`'s listening socket, taking it back from an adopted endpoint's
    process; raises Conflict saying why it cannot."""
    if endpoint.sock is not None:
        return
    process = endpoint.process
    if process is None or process.returncode is not None:
        raise Conflict("the endpoint is restarting; update it once it is running again")
    try:
        endpoint.sock = await asyncio.to_thread(handover.take, process.pid, endpoint.port)
    except OSError as exc:
        raise Conflict(f"the endpoint's socket cannot be taken back from its process: {exc}; stop and start the "
                       "job once, then update it") from None
    endpoint.listener.event(f"took the listening socket of adopted endpoint process {process.pid} back for a "
                            "switch")


async def switch(endpoint, launch: Launch, timeout: float, on_spawn=None) -> tuple[int, int | None]:
    """Start `launch` beside `endpoint`'s serving process, wait until all its workers have loaded the code, make
    it the endpoint's process, then drain and stop the old one. Returns the new (pid, start time); raises
    RevisionFailed with the reason when it cannot load or is not ready within `timeout` seconds. `on_spawn(pid,
    start time)` records the new process, so that a control plane dying meanwhile leaves no unknown process on
    the socket (the next one ends it)."""
    old = await _serving(endpoint)
    candidate, tail, launch = await _start_loaded(endpoint, launch, timeout, on_spawn, beside=old.pid)
    old_tail = _take_over(endpoint, launch, candidate, tail)
    endpoint.listener.event(f"revision {launch.revision} is serving (process {candidate.pid}); process {old.pid} "
                            "stops accepting and finishes its calls in flight")
    await endpoint._terminate(old)
    endpoint.output.let_go(old_tail)
    endpoint.listener.event(f"endpoint process {old.pid} of the previous revision has stopped")
    return candidate.pid, process_start_time(candidate.pid)


async def recreate(endpoint, launch: Launch, timeout: float, on_spawn=None) -> tuple[int, int | None, float]:
    """`--strategy recreate`: stop the serving process (it finishes its calls in flight), then start `launch` on
    the same socket; calls sent meanwhile wait in its backlog. Returns the new (pid, start time) and the
    downtime: seconds during which no process accepted calls. A revision that cannot load raises RevisionFailed
    and the supervisor starts the serving revision again, as after a crash."""
    old = await _serving(endpoint)
    say = endpoint.listener.event
    endpoint.resumed.clear()
    endpoint.replacing = True  # the supervisor waits for the new process instead of restarting the old one
    try:
        say(f"revision {launch.revision}: stopping process {old.pid} first (--strategy recreate); calls wait in the "
            "socket's backlog until the new revision has loaded")
        stopped = time.monotonic()
        await endpoint._terminate(old)
        try:
            candidate, tail, launch = await _start_loaded(endpoint, launch, timeout, on_spawn)
        except BaseException:
            say("the serving revision starts again")
            endpoint.resumed.set()
            raise
        old_tail = _take_over(endpoint, launch, candidate, tail)
    finally:
        endpoint.replacing = False
    downtime = time.monotonic() - stopped
    endpoint.output.let_go(old_tail)
    say(f"revision {launch.revision} is serving (process {candidate.pid}) after {downtime:.2f} s without a process "
        "accepting calls")
    return candidate.pid, process_start_time(candidate.pid), downtime


async def _serving(endpoint):
    await hold_socket(endpoint)
    old = endpoint.process
    if old is None or old.returncode is not None:
        raise Conflict("the endpoint is restarting; update it once it is running again")
    return old


async def _start_loaded(endpoint, launch: Launch, timeout: float, on_spawn, beside: int | None = None):
    """Start `launch` on the endpoint's socket with `--load-first` and wait until every worker has loaded the
    code; (the process, its output files, the launch as it ran). Raises RevisionFailed, having ended it, when
    it cannot."""
    launch = replace(launch, runtime=replace(launch.runtime, load_first=True))
    fd = endpoint.sock.fileno()
    output = endpoint.output
    output.load_failure = None
    tail = output.beside(launch)  # its own files: its lines are told from the serving revision's
    files = tail.open_for_child()
    try:
        candidate = await asyncio.create_subprocess_exec(
            *launch.command(fd), stdin=asyncio.subprocess.DEVNULL, stdout=files["stdout"], stderr=files["stderr"],
            env=launch.env, cwd=str(launch.model_dir), pass_fds=(fd,), start_new_session=True)
    finally:
        for file in files.values():
            file.close()
    if on_spawn is not None:
        on_spawn(candidate.pid, process_start_time(candidate.pid))
    where = f" beside process {beside}" if beside else ""
    endpoint.listener.event(f"revision {launch.revision}: endpoint process {candidate.pid} started{where}; it "
                            "accepts once its code has loaded")
    workers = initial_workers(launch.runtime)
    deadline = time.monotonic() + timeout
    try:
        while True:
            loaded = {pid for pid in output.ready_pids if _group_of(pid) == candidate.pid}
            if len(loaded) >= workers:
                break
            if candidate.returncode is not None:
                output.catch_up()
                failure = output.load_failure
                headline = failure.headline if failure else f"the new revision's process exited with code " \
                                                            f"{candidate.returncode} before it was ready"
                raise RevisionFailed(headline + "\n" + "\n".join(endpoint.listener.tail()))
            if endpoint._stop.is_set():
                raise RevisionFailed("the job was stopped while its new revision was starting")
            if time.monotonic() > deadline:
                raise RevisionFailed(f"the new revision was not ready within {timeout:g} seconds\n"
                                     + "\n".join(endpoint.listener.tail()))
            await first(asyncio.sleep(POLL), candidate.wait())
    except BaseException:
        if candidate.returncode is None:
            await endpoint._terminate(candidate, grace=2.0)
        kill_group(candidate.pid, 9)
        output.let_go(tail)
        raise
    output.ready_pids -= loaded
    return candidate, tail, launch


def _take_over(endpoint, launch: Launch, candidate, tail):
    """From here the supervisor watches the new process; returns the old one's output files, to let go of once
    it has exited."""
    endpoint.launch = launch
    endpoint.process = candidate
    endpoint.swapped.set()
    endpoint.switched_at = time.time()
    return endpoint.output.serve(tail)
