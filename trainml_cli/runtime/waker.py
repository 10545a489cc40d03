"""While an autoscaled endpoint has no worker ready, its leader answers the socket itself: it holds calls, wakes.

The leader (runtime/autoscaler.py) never imports the model. Scaled to zero, it accepts from the endpoint's
listening socket and reads each request's head (bounded: size and time):

- `GET /ping` is answered at once with 200 and a body saying the endpoint is scaled to zero, so health checks
  (the control plane's among them) never wake it;
- `/metrics` is answered from the worker group's metrics files (the counts survive the workers);
- anything else is a call: it wakes a worker and is held, not refused, until a worker has loaded the code, up to
  --cold-start-timeout (then 503 with Retry-After and the reason). Once a worker is ready the leader stops
  accepting (new connections go straight to the workers, from the same queue), and passes each held connection on
  by connecting to its own port and piping bytes both ways for as long as the caller keeps it open.

Over TLS the head cannot be read without the certificate's key, so every connection is a call (a /ping wakes it).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time

from .. import errors
from .dormant import RETRY_AFTER, answer_head

HEAD_LIMIT = 64 * 1024  # bytes of request line and headers read while scaled to zero
HEAD_TIMEOUT = 10.0  # seconds a connection may take to send them
PIPE_CHUNK = 64 * 1024


async def hold(scaler, conn: socket.socket, read: bytes | None = None) -> None:
    """Serve one connection accepted while no worker was ready (`read`: what dormant.py read of it, a call)."""
    conn.setblocking(False)
    try:
        reader, writer = await asyncio.open_connection(sock=conn, limit=HEAD_LIMIT)
    except OSError:
        conn.close()
        return
    try:
        head = read or b""
        if read is None and not scaler.tls:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
                return
            method, path = _request_line(head)
            if path == "/ping" and method in ("GET", "HEAD"):
                body = json.dumps(ping(scaler)).encode()
                return await _reply(writer, 200, body, head_only=method == "HEAD")
            if path == "/metrics" and method == "GET":
                wants_json = b"format=json" in head.split(b"\r\n", 1)[0] or b"application/json" in head.lower()
                body, kind = await asyncio.to_thread(metrics_reply, scaler, wants_json)
                return await _reply(writer, 200, body, content_type=kind)
        problem = await scaler.until_ready()
        if problem:
            body = json.dumps({"error": errors.NotReady.kind, "message": problem}).encode()
            return await _reply(writer, errors.NotReady.http_status, body, retry=True)
        await _pipe(scaler, head, reader, writer)
    finally:
        writer.close()


def ping(scaler) -> dict:
    waking = bool(scaler.workers)
    return {"status": "scaled_to_zero", "replicas": 0, "waking": waking,
            "message": "a worker is starting for the calls held" if waking else
            "no worker is running; the next call starts one (a cold start)"}


def metrics_reply(scaler, wants_json: bool) -> tuple[bytes, bytes]:
    """/metrics while no worker runs: the group's counts from its files (they outlive the workers)."""
    from .metrics import PROMETHEUS_TEXT, Metrics

    if scaler._metrics is None:
        scaler._metrics = Metrics(scaler.config.metrics_dir, lambda: (0, 0))
    if not wants_json:
        return scaler._metrics.text(), PROMETHEUS_TEXT
    summary = {"pid": os.getpid(), "status": "scaled_to_zero", **scaler._metrics.totals(),
               "max_concurrency": scaler.config.max_concurrency, "max_queue": scaler.config.max_queue,
               **scaler.state().metrics()}
    return json.dumps(summary).encode(), b"application/json"


def _request_line(head: bytes) -> tuple[str, str]:
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3:
        return "", ""
    return parts[0], parts[1].split("?", 1)[0]


async def _reply(writer, status: int, body: bytes, *, content_type: bytes = b"application/json",
                 retry: bool = False, head_only: bool = False) -> None:
    try:
        writer.write(answer_head(status, len(body), content_type, retry) + (b"" if head_only else body))
        await asyncio.wait_for(writer.drain(), HEAD_TIMEOUT)
    except (OSError, asyncio.TimeoutError):
        pass


async def _pipe(scaler, head: bytes, reader, writer) -> None:
    """Hand a held connection to a worker: a new connection to our own port (a worker accepts it from the shared
    queue), the bytes already read first, then both ways until either side closes."""
    try:
        up_reader, up_writer = await asyncio.open_connection(scaler.loopback, scaler.port)
    except OSError as exc:
        body = json.dumps({"error": errors.NotReady.kind, "message": f"the woken worker cannot be reached: {exc}"})
        return await _reply(writer, errors.NotReady.http_status, body.encode(), retry=True)
    try:
        up_writer.write(head)
        await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))
    finally:
        up_writer.close()


async def _copy(source, sink) -> None:
    try:
        while True:
            data = await source.read(PIPE_CHUNK)
            if not data:
                break
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except OSError:
        sink.close()


class Child:
    """A worker dormant.py started before it exec'd the leader back: the leader's child, which asyncio did not
    start, watched through a pidfd (the few calls of asyncio.subprocess.Process the leader makes)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None
        self._exited = asyncio.Event()
        self._fd = os.pidfd_open(pid)
        asyncio.get_running_loop().add_reader(self._fd, self._reap)

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, 0
        if pid == 0:
            return
        asyncio.get_running_loop().remove_reader(self._fd)
        os.close(self._fd)
        self.returncode = os.waitstatus_to_exitcode(status)
        self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)


class Held:
    """Counts the connections held now, bounded like a worker's connections (past it: 503 at once)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.now = 0
        self.tasks: set[asyncio.Task] = set()

    def start(self, scaler, conn: socket.socket, read: bytes | None = None) -> None:
        if self.now >= self.limit:
            try:
                conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nretry-after: "
                             + RETRY_AFTER + b"\r\nconnection: close\r\n\r\n")
            except OSError:
                pass
            conn.close()
            return
        self.now += 1
        task = asyncio.get_running_loop().create_task(hold(scaler, conn, read))
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self.now -= 1
        self.tasks.discard(task)

    async def cancel(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def since(started: float | None) -> float | None:
    return None if started is None else round((time.monotonic() - started) * 1000.0, 1)
