"""A local endpoint's output, revision by revision: which files each revision's processes print to, following
them into the job's log with the revision that printed each line, and what the supervisor learns from them.

Each revision's processes write `stdout.log` and `stderr.log` in that revision's folder (the job's folder for
revision 1, `revisions/N/` after: where its routes.json is). During a switch (switch.py) the serving revision
and the one starting beside it print at the same time; separate files are what tells their lines apart, since
a line carries nothing of who printed it.

Only the serving revision's read offsets are recorded in the job's record (tailing.py), with its number, so a
control plane that adopts the endpoint goes on where the last one stopped. A revision started beside it is read
from the end its files had when it started (earlier lines there were read while it served before); one that was
switched away from is read until its process has ended, then let go.

From the lines it also takes what the supervisor needs: the `ready:` line of each process that has loaded the
code (a switch waits for all of a new revision's workers) and the runtime's load-failure record, which is for
the control plane, not the job's log.
"""

from __future__ import annotations

import asyncio
import os
import re
import time

from ...contracts import LoadFailure, find_load_failure, is_load_failure
from ..tailing import POLL, SAVE_EVERY, STREAMS, OutputTail, output_files
from .base import EndpointListener, Launch

READY_LINE = re.compile(r"^ready: .* \(pid (\d+)\)$")  # the runtime's line once a process has loaded the code


class RevisionOutput:
    """Follows the output files of every revision of one endpoint that may still print."""

    def __init__(self, launch: Launch, listener: EndpointListener):
        self.listener = listener
        self.load_failure: LoadFailure | None = None  # the runtime's record of why the model code did not load
        self.ready_pids: set[int] = set()  # processes whose code has loaded (their `ready:` line), for a switch
        recorded = listener.log_offsets() or {}
        # Offsets recorded before revisions had their own files are revision 1's: the job folder's files.
        same = int(recorded.get("revision") or 1) == launch.revision
        self.current = self._tail(launch, recorded if same else _ends(launch))
        self._tails: list[OutputTail] = [self.current]

    def _tail(self, launch: Launch, offsets: dict) -> OutputTail:
        revision = launch.revision
        tail = OutputTail(launch.output_dir, offsets, lambda stream, line: self._line(stream, line, revision),
                          lambda offsets: self._save(tail, revision, offsets))
        return tail

    def _save(self, tail: OutputTail, revision: int, offsets: dict) -> None:
        if tail is self.current:  # only the serving revision's place is the job's to remember
            self.listener.save_log_offsets({**offsets, "revision": revision})

    def _line(self, stream: str, line: str, revision: int) -> None:
        if is_load_failure(line):
            self.load_failure = find_load_failure([line]) or self.load_failure
            return
        ready = READY_LINE.match(line)
        if ready:
            self.ready_pids.add(int(ready.group(1)))
        self.listener.output(stream, line, revision)

    def open_for_child(self) -> dict[str, object]:
        """The serving revision's files, for a process of it (a start or a restart)."""
        return self.current.open_for_child()

    def beside(self, launch: Launch) -> OutputTail:
        """Start following a revision about to start beside the serving one; its process gets
        `tail.open_for_child()`."""
        tail = self._tail(launch, _ends(launch))
        self._tails.append(tail)
        return tail

    def serve(self, tail: OutputTail) -> OutputTail:
        """`tail`'s revision now serves; returns the one that served, read on until `let_go` (it drains)."""
        old, self.current = self.current, tail
        tail.save()
        return old

    def let_go(self, tail: OutputTail) -> None:
        """Its process has ended: read its last lines, unfinished one too, and stop following it."""
        if tail in self._tails:
            self._tails.remove(tail)
            tail.finish(last_lines=True)

    def catch_up(self) -> None:
        for tail in list(self._tails):
            tail.catch_up()

    async def follow(self) -> None:
        """Read every POLL seconds and record the serving revision's offsets every SAVE_EVERY, until cancelled."""
        saved = time.monotonic()
        while True:
            busy = False
            for tail in list(self._tails):
                busy = tail.read() or busy
            if time.monotonic() - saved >= SAVE_EVERY:
                saved = time.monotonic()
                self.current.save()
            await asyncio.sleep(0.01 if busy else POLL)  # a flood is read in steps, yielding between

    def finish(self, last_lines: bool = False) -> None:
        for tail in self._tails:
            tail.finish(last_lines=last_lines or tail is not self.current)
        self._tails = []


def _ends(launch: Launch) -> dict:
    """Where a revision's files end now: what is there was printed (and read) while it served before."""
    ends = {}
    for stream, path in output_files(launch.output_dir).items():
        try:
            ends[stream] = os.stat(path).st_size
        except OSError:
            ends[stream] = 0
    return {s: ends[s] for s in STREAMS}
