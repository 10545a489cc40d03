"""An endpoint scaled to zero: its leader's process, replaced by a tiny one that only holds the socket.

Once an autoscaled endpoint's last worker has exited (runtime/autoscaler.py, --min-workers 0), its leader writes
what the time at zero needs to an anonymous file (a memfd, inherited: nothing on disk) and replaces itself, by
exec, with this module run as a script: `python -I -S .../runtime/dormant.py FD`. Exec keeps the pid (the control
plane watches and adopts that pid), the process group, the listening socket (inheritable) and stdout/stderr (the
job log), and gives back every page of the leader's: asyncio, our modules, the heap. What runs here is the
standard library's sockets and selectors only, without `site` (about 5 MiB of PSS against about 20 MiB for the
leader), so fifty endpoints at zero stay far under a gigabyte.

It accepts from the socket and reads each request's head (bounded: HEAD_LIMIT bytes, HEAD_TIMEOUT seconds):

- `GET /ping` is answered 200 with a body saying the endpoint is scaled to zero (health checks never wake it);
- `GET /metrics` is answered with the group's counts as the leader left them (nothing is counted at zero);
- anything else is a call: this process starts a worker at once (`posix_spawn`, the command line the leader
  gave; not for a job with GPUs, which waits for them first: server/backends/gpulease.py) and execs the leader
  back (`python -m trainml_cli.runtime ...`, its own command line) beside it, with every connection open now
  made inheritable and listed, with the bytes read from it, in a memfd whose number is in WAKE_ENV. The leader holds
  them (runtime/waker.py) until the worker is ready, so the leader's own start overlaps the worker's, and counts
  the cold start from the moment the call was read here.

Over TLS no head can be read without the certificate's key, so any connection wakes it. A control plane that
adopted the endpoint can still take the socket (handover.py, loaded by path: it is a standard-library leaf).
This module imports nothing of the package: the leader imports its names (`write_dormant`, `read_wake`).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys
import time

HEAD_LIMIT = 64 * 1024  # bytes of request line and headers read while scaled to zero
HEAD_TIMEOUT = 10.0  # seconds a connection may take to send them
RETRY_AFTER = b"5"
WAKE_ENV = "TRAINML_WAKE_FD"  # set for the leader exec'd back: the connections it takes over


def write_dormant(*, fd: int, argv: list[str], tls: bool, hand_over: bool, max_connections: int, ping: bytes,
                  metrics_json: bytes, metrics_text: bytes, text_type: bytes, metrics_dir: str | None,
                  cold_start_ms: float | None, worker: list[str] | None, ready: list[int]) -> str:
    """The file this process reads at start (the leader writes it just before its exec)."""
    state = {"cold_start_ms": cold_start_ms, "worker": worker, "ready": ready,
             "fd": fd, "argv": argv, "tls": tls, "hand_over": hand_over, "max_connections": max_connections,
             "ping": ping.decode(), "metrics_json": metrics_json.decode(), "metrics_text": metrics_text.decode(),
             "text_type": text_type.decode(), "metrics_dir": metrics_dir}
    return _write_private(state)


def read_wake(environ=os.environ) -> dict | None:
    """{woken_at, metrics_dir, cold_start_ms (the last one), worker (the pid started, or None), ready (the pipe it
    writes its pid to once loaded), held: [(fd, bytes read)]} for a leader exec'd back by a call; None otherwise."""
    fd = environ.pop(WAKE_ENV, None)
    if not fd:
        return None
    wake = _read_private(fd)
    wake["held"] = [(fd, data.encode("latin-1")) for fd, data in wake["held"]]
    return wake


def _write_private(data: dict) -> str:
    """`data` in an anonymous file (memfd) the exec'd process inherits: nothing on disk to leak if it dies first.
    Its descriptor's number, for the next command line or environment."""
    fd = os.memfd_create("trainml-dormant", 0)  # no MFD_CLOEXEC: it survives the exec
    os.write(fd, json.dumps(data).encode())
    os.lseek(fd, 0, os.SEEK_SET)
    return str(fd)


def _read_private(fd: str) -> dict:
    with os.fdopen(int(fd), "rb") as file:
        return json.loads(file.read())


class _Stop(Exception):
    pass


def _stop(_signum, _frame):
    raise _Stop


class Dormant:
    def __init__(self, state: dict):
        self.state = state
        self.sock = socket.socket(fileno=state["fd"])
        self.sock.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.sock, selectors.EVENT_READ)
        self.open: dict[socket.socket, list] = {}  # connection -> [bytes read, deadline]

    def run(self) -> int:
        while True:
            for key, _ in self.selector.select(timeout=1.0):
                if key.fileobj is self.sock:
                    self._accept()
                else:
                    self._read(key.fileobj)
            now = time.monotonic()
            for conn, (_, deadline) in list(self.open.items()):
                if now > deadline:
                    self._close(conn)

    def _accept(self) -> None:
        for _ in range(64):
            try:
                conn, _ = self.sock.accept()
            except OSError:  # nothing more waiting (or a connection gone before we took it)
                return
            if len(self.open) >= self.state["max_connections"]:
                self._answer(conn, 503, b"", retry=True)
                continue
            conn.setblocking(False)
            self.open[conn] = [b"", time.monotonic() + HEAD_TIMEOUT]
            self.selector.register(conn, selectors.EVENT_READ)
            if self.state["tls"]:
                self._wake()

    def _read(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(HEAD_LIMIT)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            return self._close(conn)
        self.open[conn][0] += data
        read = self.open[conn][0]
        if b"\r\n\r\n" not in read:
            if len(read) >= HEAD_LIMIT:
                self._close(conn)
            return
        line = read.split(b"\r\n", 1)[0].split(b" ")
        method, path = (line[0], line[1].split(b"?", 1)[0]) if len(line) == 3 else (b"", b"")
        if path == b"/ping" and method in (b"GET", b"HEAD"):
            self._forget(conn)
            self._answer(conn, 200, self.state["ping"].encode(), head_only=method == b"HEAD")
        elif path == b"/metrics" and method == b"GET":
            self._forget(conn)
            wants_json = b"format=json" in line[1] or b"application/json" in read.lower()
            if wants_json:
                self._answer(conn, 200, self.state["metrics_json"].encode())
            else:
                self._answer(conn, 200, self.state["metrics_text"].encode(), self.state["text_type"].encode())
        else:
            self._wake()

    def _wake(self) -> None:
        """A call: a worker starts (unless the job waits for GPUs) and the leader comes back beside it, taking over
        every connection open now with what was read from it."""
        worker = None
        if self.state["worker"]:  # before the connections are inheritable: the worker must not hold them open
            worker = os.posix_spawn(self.state["worker"][0], self.state["worker"], os.environ)
        held = []
        for conn, (read, _) in self.open.items():
            conn.set_inheritable(True)
            held.append([conn.fileno(), read.decode("latin-1")])
        wake = _write_private({"woken_at": time.monotonic(), "held": held,
                               "metrics_dir": self.state["metrics_dir"],
                               "cold_start_ms": self.state["cold_start_ms"], "worker": worker,
                               "ready": self.state["ready"]})
        self.sock.set_inheritable(True)
        argv = self.state["argv"]
        os.execve(argv[0], argv, {**os.environ, WAKE_ENV: wake})

    def _forget(self, conn: socket.socket) -> None:
        self.selector.unregister(conn)
        del self.open[conn]

    def _close(self, conn: socket.socket) -> None:
        self._forget(conn)
        conn.close()

    @staticmethod
    def _answer(conn: socket.socket, status: int, body: bytes, content_type: bytes = b"application/json",
                retry: bool = False, head_only: bool = False) -> None:
        try:
            conn.setblocking(True)
            conn.settimeout(HEAD_TIMEOUT)
            conn.sendall(answer_head(status, len(body), content_type, retry) + (b"" if head_only else body))
        except OSError:
            pass
        conn.close()


def answer_head(status: int, length: int, content_type: bytes, retry: bool) -> bytes:
    """The status line and headers of an answer that closes its connection (here, and the waker's: waker.py)."""
    reason = {200: b"OK", 503: b"Service Unavailable"}.get(status, b"")
    lines = [b"HTTP/1.1 %d %s" % (status, reason), b"content-type: " + content_type,
             b"content-length: %d" % length, b"connection: close"]
    if retry:
        lines.append(b"retry-after: " + RETRY_AFTER)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def main(fd: str) -> int:
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    state = _read_private(fd)
    dormant = Dormant(state)
    if state["hand_over"]:
        _offer(dormant.sock)
    try:
        dormant.run()
    except _Stop:
        pass
    if state["metrics_dir"]:  # the leader's to remove when the endpoint stops; the leader is gone
        import shutil

        shutil.rmtree(state["metrics_dir"], ignore_errors=True)
    print(f"stopped while scaled to zero (pid {os.getpid()})", flush=True)
    return 0


def _offer(sock: socket.socket) -> None:
    import importlib.util

    where = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "handover.py")
    spec = importlib.util.spec_from_file_location("trainml_handover", where)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.offer(sock)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
