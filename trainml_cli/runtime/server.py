"""Run the endpoint: one uvicorn process, or N worker processes sharing one listening socket, or an autoscaled
group (`--min-workers`, runtime/autoscaler.py).

With `--workers N` this process only supervises: it binds the socket (or takes the inherited one), starts N
copies of `python -m trainml_cli.runtime --workers 1 --fd FD`, replaces a worker that dies, and stops them all
when one reports that the model code cannot load (restarting would only fail again).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from .. import handover
from ..errors import UsageError
from .config import EXIT_LOAD_FAILED, EXIT_PLATFORM_FAILED, RuntimeConfig
from .loader import check_files, enter_model_dir
from .metrics import make_directory, mark_dead


def serve(config: RuntimeConfig) -> int:
    """Serve until stopped; returns the process exit code. Raises ModelCodeError for a missing file."""
    _check_security_files(config)  # before chdir: relative paths are the caller's
    root = enter_model_dir(config.model_dir)
    config.model_dir = str(root)  # workers start in this directory; a relative path would no longer resolve
    check_files(root, config.routes)
    owned = None
    if config.metrics_dir is None:  # the first process of a group makes the directory its workers share
        config.metrics_dir = owned = make_directory()
        config.metrics_dir_owned = True
    try:
        if config.min_workers is not None:
            return _autoscale(config)
        if config.workers > 1:
            return _supervise_workers(config)
        return _serve_one(config, root)
    finally:
        if owned:
            shutil.rmtree(owned, ignore_errors=True)


def _listening_socket(config: RuntimeConfig) -> socket.socket:
    if config.fd is not None:
        return socket.socket(fileno=config.fd)  # family and type are read from the descriptor
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"{config.host}:{config.port} is already in use; "
                             "choose another --port (0: any free one)") from None
        raise UsageError(f"cannot listen on {config.host}:{config.port}: {exc.strerror}") from None
    sock.listen(2048)
    return sock


def _serve_one(config: RuntimeConfig, root) -> int:
    import uvicorn

    from .app import EndpointApp
    from .ownpaths import Health

    sock = _listening_socket(config)
    if config.hand_over:
        handover.offer(sock)
    host, port = sock.getsockname()[:2]
    server_box: list = []
    app = EndpointApp(config, root, on_failed=lambda: setattr(server_box[0], "should_exit", True),
                      on_ready=_tell_leader(config.ready_fd))
    from ..connections import GuardedProtocol, fit_open_files

    max_connections, lowered = fit_open_files(config.max_connections)
    if lowered:
        print(f"warning: {lowered}", file=sys.stderr, flush=True)
    uv_config = uvicorn.Config(
        app,
        # X-Forwarded-For from a local proxy only changes scope["client"], which only a capture record reads: the
        # middleware (a coroutine frame and a header scan per request) runs only then.
        proxy_headers=bool(config.capture),
        http=GuardedProtocol,  # httptools with a header size cap, a header-read timeout, idle connections evicted
        ws=_websockets(),
        lifespan="on",
        access_log=False,  # ours is cheaper and says what users want: verb, path, status, latency
        log_level="warning",
        timeout_graceful_shutdown=max(5, int(config.timeout)),
        backlog=2048,
        limit_concurrency=max_connections,
        ssl_certfile=config.tls_certfile,
        ssl_keyfile=config.tls_keyfile,
    )
    server = uvicorn.Server(uv_config)
    server_box.append(server)
    print(f"serving {len(config.routes)} route(s) on {_scheme(config)}://{host}:{port} (pid {os.getpid()})", flush=True)
    try:
        server.run(sockets=[sock])
    except SystemExit:  # uvicorn exits 3 on any startup failure; 3 is ours for "the model code did not load"
        if app.health is Health.FAILED:
            return EXIT_LOAD_FAILED
        print(f"error: the endpoint could not start: {app.platform_error or 'the server failed to start'}",
              file=sys.stderr, flush=True)
        return EXIT_PLATFORM_FAILED
    if app.health is Health.FAILED:
        return EXIT_LOAD_FAILED
    print(f"stopped (pid {os.getpid()})", flush=True)
    return 0


def _supervise_workers(config: RuntimeConfig) -> int:
    sock = _listening_socket(config)
    sock.set_inheritable(True)
    if config.hand_over:
        handover.offer(sock)
    host, port = sock.getsockname()[:2]
    command = [sys.executable, "-m", "trainml_cli.runtime", *config.to_args(), "--workers", "1"]
    command += ["--fd", str(sock.fileno())]
    # Each worker accepts only once its code has loaded: the group counts as running (its /ping answers) as soon
    # as one worker has, and a call must never meet another still loading (503 "loading"). Until the first has
    # loaded, a caller waits in the socket's backlog instead of hearing "loading".
    if not config.load_first:
        command.append("--load-first")
    for route in config.routes:
        command += ["--route", json.dumps(route.to_dict())]
    stopping: list[int] = []
    # Signal handlers only record the signal; the loop below does the work.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda s, _f: stopping.append(s))
    workers = [_start_worker(command, sock) for _ in range(config.workers)]
    print(f"serving {len(config.routes)} route(s) on {_scheme(config)}://{host}:{port} with {config.workers} workers "
          f"(pid {os.getpid()})", flush=True)
    code = 0
    while not stopping:
        time.sleep(0.2)
        for index, worker in enumerate(workers):
            status = worker.poll()
            if status is None:
                continue
            if status in (EXIT_LOAD_FAILED, EXIT_PLATFORM_FAILED):  # a new worker would fail the same way
                stopping.append(0)
                code = status
                break
            print(f"worker pid {worker.pid} exited with status {status}; starting a new one", flush=True)
            mark_dead(worker.pid, config.metrics_dir)
            workers[index] = _start_worker(command, sock)
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + max(5.0, config.timeout)
    for worker in workers:
        try:
            worker.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
    return code


def _autoscale(config: RuntimeConfig) -> int:
    from .autoscaler import serve_autoscaled

    sock = _listening_socket(config)
    sock.set_inheritable(True)
    return serve_autoscaled(config, sock)


def _tell_leader(fd: int | None):
    """A process says it has loaded the code: its pid on the pipe of whoever started it (the leader of an
    autoscaled group, the local backend's supervisor), which need not poll /ping for it."""
    if fd is None:
        return None

    def tell() -> None:
        try:
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:  # the leader is gone: the group is stopping
            pass

    return tell


def _websockets():
    """uvicorn's "auto" WebSocket protocol, imported at the first Upgrade request rather than at every start (the
    websockets library is 7 ms of a cold start). The routes serve no WebSocket: such a request is still handed to
    it, and answered as before; without a WebSocket library, uvicorn answers it as plain HTTP, as before."""
    from importlib.util import find_spec

    if find_spec("websockets") is None and find_spec("wsproto") is None:
        return "none"

    def protocol(**kwargs):
        from uvicorn.protocols.websockets.auto import AutoWebSocketsProtocol

        return AutoWebSocketsProtocol(**kwargs)

    return protocol


def _start_worker(command: list[str], sock: socket.socket) -> subprocess.Popen:
    return subprocess.Popen(command, pass_fds=[sock.fileno()])


def _check_security_files(config: RuntimeConfig) -> None:
    """A certificate pair that does not load, or a key file that cannot be read, is a usage error naming the
    file, before anything listens (never a traceback from uvicorn or a worker)."""
    from ..tls import check_pair
    from .auth import KeyFile

    pair = check_pair(config.tls_certfile, config.tls_keyfile)
    if pair:
        config.tls_certfile, config.tls_keyfile = pair
    if config.key_file:
        config.key_file = os.path.abspath(config.key_file)
        KeyFile(config.key_file)


def _scheme(config: RuntimeConfig) -> str:
    return "https" if config.tls_certfile else "http"
