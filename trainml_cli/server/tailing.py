"""An endpoint's output: files the endpoint writes and the control plane follows.

An endpoint's stdout and stderr are `stdout.log` and `stderr.log` in its job folder, opened for append: never
pipes. A pipe ends with the control plane; the endpoint's next print would then fail (EPIPE) and whatever it
printed until a new control plane came up would be lost. A file outlives both sides.

The control plane follows each file from an offset it records in the job record once the lines read up to it
are in the database (`save`), so a restarted control plane goes on where the last one stopped: every line is
stored at least once (a kill -9 may store the last second's lines twice, never lose them).

Bytes already read are freed by punching a hole at the start of the file (fallocate PUNCH_HOLE): offsets stay
valid and the file takes no more disk than what is still unread. Where the filesystem cannot punch holes, a
file read to its end past TRUNCATE_AT bytes is truncated instead (a line written in that instant may be lost).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import time
from pathlib import Path
from typing import Callable

from ..contracts import split_stamp

log = logging.getLogger("trainml.server")

STREAMS = ("stdout", "stderr")
POLL = 0.05  # seconds between reads: a printed line reaches a log follower well within a second
SAVE_EVERY = 1.0  # seconds between two records of the offsets
READ_MAX = 1024 * 1024  # bytes per file per poll, so a flood cannot hold the event loop
LINE_LIMIT = 1024 * 1024  # a "line" longer than this is cut into pieces
PUNCH_EVERY = 8 * 1024 * 1024  # free the read part of a file each time this much more has been read
TRUNCATE_AT = 64 * 1024 * 1024
_PUNCH = 0x01 | 0x02  # FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE


def output_files(folder: Path) -> dict[str, Path]:
    return {stream: folder / f"{stream}.log" for stream in STREAMS}


class OutputTail:
    """Follows one job's output files, handing each complete line to `emit(stream, line)`."""

    def __init__(self, folder: Path, offsets: dict, emit: Callable[[str, str], None],
                 save: Callable[[dict], None]):
        self.paths = output_files(folder)
        self.emit = emit
        self.on_save = save
        self.offsets = {s: int((offsets or {}).get(s) or 0) for s in STREAMS}  # end of the last line handed on
        self._buffers = {s: b"" for s in STREAMS}
        self._freed = {s: 0 for s in STREAMS}
        self._fds: dict[str, int] = {}
        self._saved = dict(self.offsets)
        self._pending: dict[str, int] = {}  # offsets of the lines read this round, recorded once handed on
        self._printed = {s: 0 for s in STREAMS}  # when the last stamped line of each stream was printed
        self._last_save = time.monotonic()
        folder.mkdir(parents=True, exist_ok=True)
        for stream, path in self.paths.items():
            self._fds[stream] = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def open_for_child(self) -> dict[str, object]:
        """The files as the endpoint gets them (append mode); close them once it is started."""
        return {stream: open(path, "ab") for stream, path in self.paths.items()}

    def read(self) -> bool:
        """Hand on what was written since the last read, the lines of both streams in the order they were printed
        (by their stamps, contracts.line_stamp); True if anything was."""
        got = False
        lines: list[tuple[int, int, str, str]] = []  # (printed at, which stream, stream, line)
        for order, stream in enumerate(STREAMS):
            fd = self._fds.get(stream)
            if fd is None:
                continue
            position = self.offsets[stream] + len(self._buffers[stream])
            try:
                size = os.fstat(fd).st_size
                if size < position:  # truncated (by us, or by hand): start again from its beginning
                    self.offsets[stream], self._buffers[stream], position = 0, b"", 0
                if size == position:
                    continue
                chunk = os.pread(fd, min(READ_MAX, size - position), position)
            except OSError:
                continue
            if chunk:
                got = True
                lines += ((at, order, stream, line) for at, line in self._take(stream, chunk))
        # A line without a stamp keeps its place in its own stream (it takes the one before it's time); a
        # stable sort keeps each stream's own order, and stdout's first for lines of one instant.
        lines.sort(key=lambda item: (item[0], item[1]))
        for _, _, stream, line in lines:
            self.emit(stream, line)
        self.offsets.update(self._pending)
        self._pending.clear()
        return got

    def _take(self, stream: str, chunk: bytes) -> list[tuple[int, str]]:
        """The complete lines in a chunk, each with the time it was printed; the rest waits for its end."""
        buffer = self._buffers[stream] + chunk
        consumed = self.offsets[stream]
        found = []
        if b"\n" in chunk:
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                consumed += len(raw) + 1
                found.append(self._unstamp(stream, raw.decode(errors="replace").rstrip("\r")))
        if len(buffer) > LINE_LIMIT:
            consumed += len(buffer)
            found.append(self._unstamp(stream, buffer.decode(errors="replace")))
            buffer = b""
        self._pending[stream], self._buffers[stream] = consumed, buffer
        return found

    def _unstamp(self, stream: str, line: str) -> tuple[int, str]:
        at, line = split_stamp(line)
        if at is None:
            at = self._printed[stream]
        self._printed[stream] = at
        return at, line

    def catch_up(self, rounds: int = 64) -> None:
        """Read until nothing new is there (bounded: a writer that never stops cannot hold us)."""
        for _ in range(rounds):
            if not self.read():
                return

    async def follow(self) -> None:
        """Read every POLL seconds and record the offsets every SAVE_EVERY, until cancelled."""
        while True:
            busy = self.read()
            if time.monotonic() - self._last_save >= SAVE_EVERY:
                self.save()
            await asyncio.sleep(0.01 if busy else POLL)  # a flood is read in READ_MAX steps, yielding between

    def save(self) -> None:
        self._last_save = time.monotonic()
        if self.offsets != self._saved:
            try:
                self.on_save(dict(self.offsets))
            except Exception:  # a full disk must not stop the endpoint's log; the next save tries again
                log.exception("could not record log offsets")
                return
            self._saved = dict(self.offsets)
        self._free()

    def finish(self, last_lines: bool = False) -> None:
        """Read what is left and record the offsets; `last_lines`: the writer is gone, so hand on an unfinished
        last line too. Closes the files."""
        self.catch_up()
        if last_lines:
            for stream in STREAMS:
                if self._buffers[stream]:
                    self.offsets[stream] += len(self._buffers[stream])
                    self.emit(stream, split_stamp(self._buffers[stream].decode(errors="replace").rstrip("\r"))[1])
                    self._buffers[stream] = b""
        self.save()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def _free(self) -> None:
        for stream, fd in self._fds.items():
            done = self._saved[stream] // 4096 * 4096
            if done - self._freed[stream] < PUNCH_EVERY:
                continue
            if _punch_hole(fd, done):
                self._freed[stream] = done
            elif done >= TRUNCATE_AT and not self._buffers[stream]:
                try:
                    if os.fstat(fd).st_size == self.offsets[stream]:
                        os.ftruncate(fd, 0)
                        self.offsets[stream] = self._freed[stream] = 0
                        self.on_save(dict(self.offsets))
                        self._saved = dict(self.offsets)
                except OSError:
                    pass


_fallocate = None


def _punch_hole(fd: int, length: int) -> bool:
    global _fallocate
    try:
        if _fallocate is None:
            libc = ctypes.CDLL(None, use_errno=True)
            _fallocate = libc.fallocate
            _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        return _fallocate(fd, _PUNCH, 0, length) == 0
    except (OSError, AttributeError):
        return False
