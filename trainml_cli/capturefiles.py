"""Captured calls on disk: JSONL segments in one folder, bounded in size, the oldest removed first.

Written by an endpoint's processes (runtime/capture.py), each appending to segments of its own, and on the Ray
backend by the control plane too, which drains the replicas' sealed segments from each node into the job's folder
(server/backends/raycaptures.py). Segment names start with the time they were opened (`<ns>-<pid>.jsonl`), so name
order is age order across writers. Files are created 0600 in a folder of mode 0700: they hold request bodies.

A segment written to be drained is written as `NAME.jsonl.part` and renamed to `NAME.jsonl` (sealed) when it is
closed, at most `seal_after` seconds after it was opened: a reader that takes only sealed segments reads each one
once, whole, and never a line being written.

A leaf: standard library only.
"""

from __future__ import annotations

import os
import time

SEGMENTS = 10  # a segment is at most a tenth of the size bound: the bound is kept to within one segment
SUFFIX = ".jsonl"
PART = ".part"  # a segment still being written, when segments are sealed
RAY_CAPTURE_FOLDER = "trainml-capture"  # under a Ray node's log folder: <this>/<application>/<segments>


class Segments:
    """The segment one process appends to: a new one past a tenth of the size bound (or once due to be sealed),
    older ones removed so that the folder stays within `size` bytes."""

    def __init__(self, folder: str, size: int, seal_after: float | None = None):
        self.folder = folder
        self.size = size
        self.seal_after = seal_after
        self.limit = max(size // SEGMENTS, 1)
        self.fd = -1
        self.name = ""
        self.opened = 0.0
        self.written = 0

    def write(self, lines: list[bytes]) -> None:
        """Append whole lines, in as few writes as the segment's size allows."""
        if self.fd < 0 or os.fstat(self.fd).st_nlink == 0:
            self.open()  # (st_nlink 0: another writer removed it as the oldest)
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

    def seal_if_due(self) -> None:
        """Seal the segment being written once it is `seal_after` seconds old (a drained writer's turn)."""
        if self.seal_after is not None and self.fd >= 0 and time.monotonic() - self.opened >= self.seal_after:
            self.close()

    def _flush(self, chunk: list[bytes], size: int) -> None:
        os.write(self.fd, b"".join(chunk))
        self.written += size

    def open(self) -> None:
        self.close()
        name = f"{time.time_ns():020d}-{os.getpid()}{SUFFIX}"
        self.bound(keep=self.limit)
        self.name = name + (PART if self.seal_after is not None else "")
        self.fd = os.open(os.path.join(self.folder, self.name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND,
                          0o600)
        self.opened = time.monotonic()
        self.written = 0

    def bound(self, keep: int) -> None:
        """Remove the oldest segments until the rest and `keep` more bytes fit in the size bound."""
        segments = []
        for entry in os.scandir(self.folder):
            if entry.name.endswith((SUFFIX, SUFFIX + PART)):
                try:
                    segments.append((entry.name, entry.stat().st_size))
                except FileNotFoundError:
                    pass
        segments.sort()
        total = sum(size for _, size in segments) + keep
        for name, size in segments:
            if total <= self.size:
                break
            try:
                os.unlink(os.path.join(self.folder, name))
            except FileNotFoundError:
                pass
            total -= size

    def close(self) -> None:
        if self.fd < 0:
            return
        os.close(self.fd)
        self.fd = -1
        if self.name.endswith(PART):
            path = os.path.join(self.folder, self.name)
            try:
                if self.written:
                    os.rename(path, path[:-len(PART)])
                else:
                    os.unlink(path)
            except FileNotFoundError:  # removed as the oldest meanwhile
                pass
