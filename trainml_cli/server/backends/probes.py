"""Watching an endpoint from the event loop, for both backends: a minimal HTTP GET (its /ping, its /metrics) and
waiting for the first of several events (an exit, a stop, a timer).
"""

from __future__ import annotations

import asyncio

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
