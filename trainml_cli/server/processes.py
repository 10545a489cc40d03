"""Endpoint processes as the operating system sees them: groups, start times, and ones we did not start.

An endpoint is the leader of its own process group (its workers are in it), recorded in the job as pid plus
the process's start time (clock ticks since boot, /proc/PID/stat field 22): a pid alone may have been reused
by another process since. A control plane that starts after another one died finds its endpoints still
serving; `AdoptedProcess` lets it watch one it did not start (not its child, so no wait(): a pidfd tells when
it exits, though not its exit code).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

from ..launchspec import EXIT_LOAD_FAILED

STOP_GRACE = 10.0
UNKNOWN_EXIT = -1000  # the returncode of an adopted process: it exited, with a code only its parent saw


def kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: [state, ppid, pgrp, session, ...]."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def process_start_time(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def is_endpoint(pid: int | None, pid_start: int | None) -> bool:
    """Whether `pid` is still the endpoint process recorded with this start time (not a reused pid, not a zombie)."""
    if not pid or pid_start is None:
        return False
    fields = _stat(pid)
    if not fields or len(fields) < 20 or fields[0] in ("Z", "X") or int(fields[19]) != pid_start:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read()  # the runtime, or the same process scaled to zero (runtime/dormant.py, by path)
            return b"trainml_cli.runtime" in command or b"trainml_cli/runtime/dormant.py" in command
    except OSError:
        return False


def group_members(pgid: int, not_before: int | None) -> list[int]:
    """Live processes in group `pgid` started no earlier than its leader was (a reused pid is not ours)."""
    members = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        fields = _stat(int(entry))
        if not fields or len(fields) < 20 or fields[0] == "Z":
            continue
        if int(fields[2]) == pgid and (not_before is None or int(fields[19]) >= not_before):
            members.append(int(entry))
    return members


async def reap_orphans(pgid: int | None, pid_start: int | None, grace: float = STOP_GRACE) -> bool:
    """End an endpoint's process group that an earlier control plane left running; True if one was found."""
    if not pgid or pid_start is None or not group_members(pgid, pid_start):
        return False
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in group_members(pgid, pid_start):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not group_members(pgid, pid_start):
                return True
            await asyncio.sleep(0.1)
    return True


def runtimes_naming(model_dir: str) -> list[int]:
    """Endpoint processes (group leaders) started on this model folder: `--model-dir` names it. How a control plane
    finds one that its predecessor started but died before recording (between the spawn and the record)."""
    wanted = os.fsencode(model_dir)
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        fields = _stat(int(entry))
        if (fields and int(fields[2]) == int(entry) and b"trainml_cli.runtime" in argv
                and any(a == b"--model-dir" and b == wanted for a, b in zip(argv, argv[1:]))):
            found.append(int(entry))
    return found


class AdoptedProcess:
    """An endpoint process an earlier control plane started, with the face of an asyncio subprocess."""

    def __init__(self, pid: int, pid_start: int | None):
        self.pid = pid
        self.pid_start = pid_start
        self.returncode: int | None = None
        self._exited: asyncio.Future | None = None
        self._watcher: asyncio.Future | None = None

    async def wait(self) -> int:
        if self._exited is None:
            self._exited = asyncio.get_running_loop().create_future()
            self._watcher = asyncio.ensure_future(self._watch())
        await asyncio.shield(self._exited)
        return self.returncode

    def close(self) -> None:
        """Stop watching (the control plane leaves it serving, or it is gone)."""
        watcher = self._watcher
        if watcher is not None and not watcher.done():
            watcher.cancel()

    async def _watch(self) -> None:
        try:
            await self._until_gone()
        except asyncio.CancelledError:
            return  # closed while it runs: nobody waits any more
        except Exception:  # whatever went wrong with the pidfd, looking at /proc still tells
            while is_endpoint(self.pid, self.pid_start):
                await asyncio.sleep(0.1)
        self.returncode = UNKNOWN_EXIT
        if not self._exited.done():
            self._exited.set_result(UNKNOWN_EXIT)

    async def _until_gone(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            fd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            return
        except (OSError, AttributeError):  # no pidfds (an old kernel): look every 0.1 s
            fd = None
        if fd is not None:
            readable = loop.create_future()
            try:
                loop.add_reader(fd, lambda: readable.done() or readable.set_result(None))
            except (OSError, NotImplementedError, ValueError):
                os.close(fd)
                fd = None
            else:
                try:
                    await readable
                    return
                finally:
                    loop.remove_reader(fd)
                    os.close(fd)
        while is_endpoint(self.pid, self.pid_start):
            await asyncio.sleep(0.1)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "is still running"
    if code == UNKNOWN_EXIT:
        return "exited (an earlier control plane started it, so its exit code is unknown)"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    if code == EXIT_LOAD_FAILED:
        return "exited with code 3 (the model code could not be loaded)"
    return f"exited with code {code}"


