"""Running the control plane as a process: one per TRAINML_HOME, found by its address file.

`serve` takes an exclusive lock on `HOME/server.lock` (two control planes on one home would start every
endpoint twice), makes sure the API token exists, binds the socket itself (port 0: the kernel picks a free one)
and runs the app on uvicorn. Once the platform is ready it writes `HOME/server.json`:

    {"url": "http://127.0.0.1:41234", "pid": 1234, "home": "/home/me/.trainml", "version": "0.1.0", "started": "...",
     "options": {"host": "127.0.0.1", "port": 0, "gpus": null, "backend": "local", ...}}

(contracts.ServerRecord, which clients read with the same code.)

`options` are the effective ones (every option, `trainml server status` shows them). The ones chosen for this
home are saved then too, in `HOME/server-options.json` (serveroptions.save_options), for every later start.

Clients (the SDK, the CLI) read that file to find the server; it is removed on a clean exit. The same record is
written into the lock file, which only the lock holder writes, and server.json is rewritten within a second
when it goes missing or is spoiled: a client always finds the running server (settings.read_server_file).

SIGTERM or SIGINT stop the server gracefully: it stops answering, then stops every endpoint (their jobs keep
their status, so the next start resumes them). SIGUSR1 (`trainml server restart`) stops it the same way but
leaves the endpoints serving; the next control plane adopts them.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path

from .. import __version__
from ..contracts import RESTART_SIGNAL, ServerRecord, write_record
from ..errors import Conflict, ServerError, UsageError
from ..serveroptions import save_options
from ..settings import Settings
from .logs import iso_time

log = logging.getLogger("trainml.server")


class AlreadyRunning(Conflict):
    """Another control plane holds this home's lock (`python -m trainml_cli.server` exits
    contracts.EXIT_ALREADY_RUNNING)."""


WATCH_EVERY = 1.0  # seconds between two checks that server.json still names this server
_REPEAT_COUNTS = (10, 100, 1000)  # failed rewrites of server.json that are logged again (then every 1000th)


def _server_record(settings: Settings, url: str | None, options: dict, certfile: str | None = None) -> ServerRecord:
    return ServerRecord(url=url, pid=os.getpid(), home=str(settings.home), version=__version__,
                        started=iso_time(time.time()), options=options, tls_certfile=certfile)


def _write_server_file(settings: Settings, record: ServerRecord) -> None:
    write_record(settings.server_file, record)


def _write_lock_record(fd: int, record: ServerRecord | None) -> None:
    """The record in the lock file: a client finds the server there when server.json is lost."""
    text = record.to_json().encode() if record else b""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, text, 0)
    except OSError:
        pass


class _ServerFileWatch:
    """Rewrites server.json whenever it no longer names this server (deleted, truncated, overwritten)."""

    def __init__(self, settings: Settings, record: ServerRecord):
        self.settings = settings
        self.record = record
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="server-file-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failures = 0  # attempts in a row that could not write it: said once, then counted, not every second
        while not self._stop.wait(WATCH_EVERY):
            found = self.settings.read_server_file(lock_fallback=False)
            if found and found.pid == os.getpid() and found.url == self.record.url:
                continue
            path = self.settings.server_file
            try:
                _write_server_file(self.settings, self.record)
            except OSError as exc:
                failures += 1
                if failures == 1:
                    log.warning("%s was missing or spoiled and cannot be written again (%s); clients still find "
                                "this server through %s; retrying every %gs", path, exc.strerror or exc,
                                self.settings.lock_file, WATCH_EVERY)
                elif failures in _REPEAT_COUNTS or failures % _REPEAT_COUNTS[-1] == 0:
                    log.warning("%s still cannot be written (%d attempts)", path, failures)
                continue
            if failures:
                log.warning("%s written again after %d failed attempts", path, failures)
            else:
                log.warning("%s was missing or spoiled; wrote it again", path)
            failures = 0

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _save_options(settings: Settings, chosen: dict) -> None:
    try:
        save_options(settings, chosen)
    except OSError as exc:  # it serves all the same; only a later start will not know these options
        log.warning("cannot save the options to %s (%s): a start after a crash will not have them",
                    settings.options_file, exc.strerror or exc)


def _remove_server_file(settings: Settings) -> None:
    found = settings.read_server_file()
    if found and found.pid == os.getpid():
        settings.server_file.unlink(missing_ok=True)


def _lock(home: Path, settings: Settings) -> int:
    fd = os.open(home / "server.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        found = settings.read_server_file()  # (falls back to the lock file's record)
        where = f" at {found.url} (pid {found.pid})" if found else ""
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


def serve(settings: Settings, options=None, *, log_level: str = "info", chosen: dict | None = None) -> bool:
    """Run the control plane in this process until SIGTERM or SIGINT (or SIGUSR1: leave the endpoints serving).

    `chosen` (serveroptions.resolve) are saved for the home once it is up, so every later start has them.
    Returns True when it stopped for a restart (SIGUSR1), leaving the endpoints serving.
    """
    import uvicorn

    from ..connections import GuardedProtocol, fit_open_files, too_large_body
    from ..tls import check_pair, exposure_warnings
    from .app import ServerOptions, create_app

    class ControlPlaneProtocol(GuardedProtocol):
        too_large_answer = too_large_body("control plane")

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = options or ServerOptions()
    pair = check_pair(options.tls_certfile, options.tls_keyfile)  # before anything is created
    if pair:
        options = dataclasses.replace(options, tls_certfile=pair[0], tls_keyfile=pair[1])
    scheme = "https" if pair else "http"
    effective = {"host": settings.host, "port": settings.port, **dataclasses.asdict(options)}
    home = settings.home
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = _lock(home, settings)
    _write_lock_record(lock, _server_record(settings, None, effective))
    sock = None
    watch: list[_ServerFileWatch] = []
    try:
        sock = _bind(settings.host, settings.port)
        host, port = sock.getsockname()[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        url = f"{scheme}://[{shown}]:{port}" if ":" in shown else f"{scheme}://{shown}:{port}"
        for line in exposure_warnings(host, tls=bool(pair)):
            log.warning("%s", line.removeprefix("warning: "))

        def ready(platform) -> None:
            platform.url = url
            record = _server_record(settings, url, effective, pair[0] if pair else None)
            _write_lock_record(lock, record)
            _write_server_file(settings, record)
            if chosen is not None:
                _save_options(settings,
                              {**chosen, **({"tls_certfile": pair[0], "tls_keyfile": pair[1]} if pair else {})})
            watch.append(_ServerFileWatch(settings, record))
            log.info("control plane listening on %s (home %s, pid %d)", url, home, os.getpid())

        # Cleaned up here rather than after server.run: uvicorn re-raises SIGTERM/SIGINT once it has shut down.
        def stopped(_platform) -> None:
            for watcher in watch:
                watcher.stop()
            _remove_server_file(settings)

        app = create_app(settings, options, on_ready=ready, on_stopped=stopped)
        max_connections, lowered = fit_open_files(options.max_connections)
        if lowered:
            log.warning("%s", lowered)
        config = uvicorn.Config(
            app,
            # The endpoints' header cap, header-read timeout and connection cap (idle connections make room):
            # with --host the control plane faces the same clients (an 8 MiB header, slowloris, 10,000 idle
            # sockets) and must not be the easier target.
            http=ControlPlaneProtocol,
            ws="none",  # no route is a websocket: uvicorn need not load a websockets library at start
            limit_concurrency=max_connections,
            log_level=log_level,
            access_log=False,
            lifespan="on",
            # Long-polls and log followers would hold a graceful shutdown open forever.
            timeout_graceful_shutdown=3,
            ssl_certfile=pair[0] if pair else None,
            ssl_keyfile=pair[1] if pair else None,
        )
        server = uvicorn.Server(config)

        def restart(_signum, _frame) -> None:  # only flags; uvicorn's own loop does the shutting down
            app.state.detach = True
            server.should_exit = True

        signal.signal(RESTART_SIGNAL, restart)
        server.run(sockets=[sock])
        if not server.started:
            raise ServerError(f"the control plane for {home} could not start; see the messages above")
        return bool(getattr(app.state, "detach", False))
    finally:
        for watcher in watch:
            watcher.stop()
        _remove_server_file(settings)
        _write_lock_record(lock, None)
        if sock is not None:
            sock.close()
        os.close(lock)
