"""Running the control plane as a process: one per TRAINML_HOME, found by its address file.

`serve` takes an exclusive lock on `HOME/server.lock` (two control planes on one home would start every
endpoint twice), makes sure the API token exists, binds the socket itself (port 0: the kernel picks a free one)
and runs the app on uvicorn. Once the platform is ready it writes `HOME/server.json`:

    {"url": "http://127.0.0.1:41234", "pid": 1234, "home": "/home/me/.trainml", "version": "0.1.0", "started": "..."}

Clients (the SDK, the CLI) read that file to find the server; it is removed on a clean exit. SIGTERM or SIGINT
stop the server gracefully: it stops answering, then stops every endpoint (their jobs keep their status, so the
next start resumes them).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from .. import __version__
from ..errors import Conflict, ServerError, UsageError
from ..settings import Settings
from .logs import iso_time

log = logging.getLogger("trainml.server")


class AlreadyRunning(Conflict):
    """Another control plane holds this home's lock (`python -m trainml_cli.server` exits EXIT_ALREADY_RUNNING)."""


# The SDK's autostart knows this number: a server it started that exits with it lost a start race to another
# client's server, which it then waits for.
EXIT_ALREADY_RUNNING = 75


def _write_server_file(settings: Settings, url: str) -> None:
    data = {"url": url, "pid": os.getpid(), "home": str(settings.home), "version": __version__, "started": iso_time(time.time())}
    partial = settings.server_file.with_suffix(".partial")
    partial.write_text(json.dumps(data) + "\n")
    partial.rename(settings.server_file)


def _remove_server_file(settings: Settings) -> None:
    info = settings.read_server_file()
    if info and info.get("pid") == os.getpid():
        settings.server_file.unlink(missing_ok=True)


def _lock(home: Path, settings: Settings) -> int:
    fd = os.open(home / "server.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        info = settings.read_server_file() or {}
        where = f" at {info['url']} (pid {info.get('pid')})" if info.get("url") else ""
        raise AlreadyRunning(f"a control plane already runs for {home}{where}") from None
    return fd


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(1024)
    return sock


def serve(settings: Settings, options=None, *, log_level: str = "info") -> None:
    """Run the control plane in this process until SIGTERM or SIGINT."""
    import uvicorn

    from .app import ServerOptions, create_app

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    home = settings.home
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = _lock(home, settings)
    sock = None
    try:
        sock = _bind(settings.host, settings.port)
        host, port = sock.getsockname()[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        url = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
        if host not in ("127.0.0.1", "::1", "localhost"):
            log.warning("listening on %s: anyone who can reach it and has the token can run code on this machine", host)

        def ready(platform) -> None:
            platform.url = url
            _write_server_file(settings, url)
            log.info("control plane listening on %s (home %s, pid %d)", url, home, os.getpid())

        # Cleaned up here rather than after server.run: uvicorn re-raises SIGTERM/SIGINT once it has shut down.
        app = create_app(settings, options or ServerOptions(), on_ready=ready, on_stopped=lambda _: _remove_server_file(settings))
        config = uvicorn.Config(
            app,
            log_level=log_level,
            access_log=False,
            lifespan="on",
            # Long-polls and log followers would hold a graceful shutdown open forever.
            timeout_graceful_shutdown=3,
        )
        server = uvicorn.Server(config)
        server.run(sockets=[sock])
        if not server.started:
            raise ServerError(f"the control plane for {home} could not start; see the messages above")
    finally:
        _remove_server_file(settings)
        if sock is not None:
            sock.close()
        os.close(lock)
