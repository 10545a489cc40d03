"""Line stamps on a local endpoint's output: each line its processes print, on stdout or stderr, begins with the
time it was printed (contracts.line_stamp), so the control plane, which follows the two streams as two files,
stores their lines in the order they were printed: a traceback on stderr stays after the summary printed on
stdout before it, and the lines of two calls in the same instant are not grouped by stream.

Installed by `python -m trainml_cli.runtime` when the control plane asks for it (contracts.OUTPUT_STAMPS_ENV),
before anything else writes; the control plane takes the stamps off before a line reaches the log. Writes that
pass Python's text streams (a C extension, a child process, sys.stdout.buffer) carry none and keep their place
in their own stream.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from ..contracts import OUTPUT_STAMPS_ENV, line_stamp


class StampedStream:
    """A text stream that begins each line written through it with the time of the write."""

    def __init__(self, stream):
        self._stream = stream
        self._at_line_start = True
        self._lock = threading.Lock()  # one line's stamp and text stay together across threads

    def write(self, text: str) -> int:
        if not text:
            return 0
        with self._lock:
            pieces = []
            for index, part in enumerate(text.split("\n")):
                if index:
                    pieces.append("\n")
                    self._at_line_start = True
                if part:
                    if self._at_line_start:
                        pieces.append(line_stamp(time.monotonic_ns()))
                        self._at_line_start = False
                    pieces.append(part)
            self._stream.write("".join(pieces))
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name):  # flush, fileno, buffer, encoding, isatty...: the stream's own
        return getattr(self._stream, name)


def install() -> None:
    """Stamp sys.stdout and sys.stderr when the control plane asked for it."""
    if os.environ.get(OUTPUT_STAMPS_ENV) == "1" and not isinstance(sys.stdout, StampedStream):
        sys.stdout = StampedStream(sys.stdout)
        sys.stderr = StampedStream(sys.stderr)
