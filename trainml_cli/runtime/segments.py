"""Where captured calls are written: JSONL segments in --capture-dir, bounded by --capture-size.

A capture's writer thread (capture.py) appends whole lines to a segment of its process's own (mode 0600), named so
that name order is age order. Past a tenth of the size bound a new segment is opened, and the oldest segments are
removed until the folder fits again, by every worker process of the endpoint: a segment another worker removed is
noticed (no links left) and replaced.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the recorder whose folder and size bound a segment keeps to
    from .capture import Recorder

SEGMENTS = 10  # a segment is at most a tenth of --capture-size: the bound is kept to within one segment
SUFFIX = ".jsonl"


class Segment:
    """The JSONL file this process appends to; a new one past a tenth of the size bound, older ones removed."""

    def __init__(self, recorder: Recorder):
        self.recorder = recorder
        self.limit = max(recorder.size // SEGMENTS, 1)
        self.fd = -1
        self.written = 0

    def write(self, lines: list[bytes]) -> None:
        """Append whole lines, in as few writes as the segment's size allows."""
        if self.fd < 0 or os.fstat(self.fd).st_nlink == 0:
            self.open()  # (st_nlink 0: another worker removed it as the oldest)
        chunk: list[bytes] = []
        size = 0
        for line in lines:
            if chunk and self.written + size + len(line) > self.limit:
                self._flush(chunk, size)
                self.open()
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        if chunk:
            self._flush(chunk, size)

    def _flush(self, chunk: list[bytes], size: int) -> None:
        os.write(self.fd, b"".join(chunk))
        self.written += size

    def open(self) -> None:
        self.close()
        folder = self.recorder.folder
        name = f"{time.time_ns():020d}-{os.getpid()}{SUFFIX}"
        self.bound(folder, keep=self.limit)
        self.fd = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        self.written = 0

    def bound(self, folder: str, keep: int) -> None:
        """Remove the oldest segments until the rest and `keep` more bytes fit in the size bound."""
        segments = []
        for entry in os.scandir(folder):
            if entry.name.endswith(SUFFIX):
                try:
                    segments.append((entry.name, entry.stat().st_size))
                except FileNotFoundError:
                    pass
        segments.sort()
        total = sum(size for _, size in segments) + keep
        for name, size in segments:
            if total <= self.recorder.size:
                break
            try:
                os.unlink(os.path.join(folder, name))
            except FileNotFoundError:
                pass
            total -= size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
