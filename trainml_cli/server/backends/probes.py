"""Watching an endpoint from the event loop, for both backends: a minimal HTTP GET (its /ping, its /metrics) and
waiting for the first of several events (an exit, a stop, a timer), and the pipe a local endpoint says it has
loaded on.
"""

from __future__ import annotations

import asyncio
import os

LINE_LIMIT = 1024 * 1024  # bytes of a /ping or /metrics answer we read at most


async def first(*aws) -> None:
    """Wait until the first of these finishes; cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def http_get(host: str, port: int, path: str, timeout: float, ssl=None) -> tuple[int | None, bytes]:
    """A minimal HTTP/1.0 GET on the event loop (no thread, no client library); (None, b"") on any failure."""
    writer = None
    try:
        async def exchange():
            nonlocal writer
            reader, writer = await asyncio.open_connection(host, port, ssl=ssl)
            writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            data = b""
            while len(data) < LINE_LIMIT and (chunk := await reader.read(65536)):  # HTTP/1.0: the body ends at EOF
                data += chunk
            return data

        data = await asyncio.wait_for(exchange(), timeout)
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, body
    except (OSError, asyncio.TimeoutError, ValueError, IndexError):
        return None, b""
    finally:
        if writer is not None:
            writer.close()


class ReadyPipe:
    """A pipe whose write end the runtime inherits (--ready-fd) and writes its pid to once its code has loaded."""

    def __init__(self):
        self.read_fd, self.write_fd = os.pipe()
        self._loop = None

    def close_write_end(self) -> None:
        if self.write_fd is not None:
            os.close(self.write_fd)
            self.write_fd = None

    def watch(self) -> asyncio.Event:
        """An event set when the runtime writes (or the pipe closes: it exited)."""
        event = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        os.set_blocking(self.read_fd, False)
        self._loop.add_reader(self.read_fd, self._readable, event)
        return event

    def _readable(self, event: asyncio.Event) -> None:
        try:
            os.read(self.read_fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            pass
        self._loop.remove_reader(self.read_fd)  # once is all it says
        event.set()

    def close(self) -> None:
        self.close_write_end()
        if self.read_fd is not None:
            if self._loop is not None:
                self._loop.remove_reader(self.read_fd)
            os.close(self.read_fd)
            self.read_fd = None
