"""Finding the control plane, and starting it when nobody runs one: the embedded default, no set-up step.

`locate(settings)` answers the control plane's URL:

1. `TRAINML_API_URL` (settings.api_url) when set: used as given, never started.
2. Else `TRAINML_HOME/server.json` (written by the server once it listens), or the record the server keeps in
   its lock file `server.lock` when server.json is lost or spoiled, if the server it names answers
   `GET /api/health` for this same home.
3. Else, unless settings.autostart is off, `python -m trainml_cli.server --home HOME` is started detached (its
   own session, so it outlives the command that started it; output appended to `HOME/server.log`), and
   `locate` returns once it answers. It runs with the options saved for the home (HOME/server-options.json,
   serveroptions.py): TLS, GPUs, the backend and the rest survive a crash. Two clients racing to start one are fine:
   the server holds a lock on its home, the loser exits, and both find the winner through server.json.

The same helpers back `trainml server start|stop|restart|status`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import requests

from ..contracts import EXIT_ALREADY_RUNNING, RESTART_SIGNAL, ServerRecord, read_record
from ..errors import Unavailable
from ..settings import Settings
from ..tls import client_verify

START_TIMEOUT = 60.0
LOSER_WAIT = 15.0  # seconds to wait for the control plane that won the race to answer
PROBE_TIMEOUT = 2.0


def health(url: str, timeout: float = PROBE_TIMEOUT, verify=True) -> dict | None:
    """The server's /api/health answer, or None if nothing (or not a control plane) answers there."""
    try:
        response = requests.get(url.rstrip("/") + "/api/health", timeout=timeout, verify=verify)
        body = response.json() if response.ok else None
    except (requests.RequestException, ValueError):
        return None
    return body if isinstance(body, dict) and body.get("status") == "ok" else None


def running(settings: Settings) -> dict | None:
    """The server recorded under settings.home (its contracts.ServerRecord's fields) with its health, if it
    answers for this home."""
    tried = set()
    for record in (settings.read_server_file(lock_fallback=False), _lock_record(settings)):
        if not record or record.url in tried:
            continue
        tried.add(record.url)
        answer = health(record.url, verify=client_verify(settings.ca_file, record.tls_certfile))
        if answer and _same_home(answer.get("home"), settings):
            return {**record.to_dict(), **answer, "url": record.url}
    return None


def _lock_record(settings: Settings) -> ServerRecord | None:
    """The record the running server keeps in its lock file (see server/daemon.py)."""
    return read_record(settings.lock_file)


def locate(settings: Settings) -> str:
    if settings.api_url:
        return settings.api_url.rstrip("/")
    info = running(settings)
    if info:
        return info["url"]
    if not settings.autostart:
        raise Unavailable(f"no control plane answers for {settings.home}; start one with `trainml server start`")
    return start(settings)["url"]


def start(settings: Settings, options: dict | None = None, timeout: float = START_TIMEOUT) -> dict:
    """Start the control plane for settings.home in the background; returns its server info once it answers.

    `options` (serveroptions dests) override the ones saved for the home, and are saved in turn; the control
    plane takes every other option from the saved file."""
    from ..serveroptions import to_argv

    info = running(settings)
    if info:
        return info
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    given = dict(options or {})
    # Settings that say where to listen, other than the defaults, count as chosen (an SDK caller's Settings).
    for name in ("host", "port"):
        if getattr(settings, name) != getattr(Settings, name):
            given.setdefault(name, getattr(settings, name))
    command = [sys.executable, "-m", "trainml_cli.server", "--home", str(settings.home), *to_argv(given)]
    # 0600: the log quotes job names, paths and requests; the home it sits in is the user's alone too.
    with open(settings.server_log, "ab", opener=lambda path, flags: os.open(path, flags, 0o600)) as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=str(settings.home), start_new_session=True, close_fds=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = running(settings)
        if info:
            return info
        if process.poll() == EXIT_ALREADY_RUNNING:
            # Another one holds the lock: it answers within moments (it may still be starting), or it is wedged.
            deadline = min(deadline, time.monotonic() + LOSER_WAIT)
            holder = _lock_record(settings)
            if time.monotonic() + 0.05 >= deadline:
                raise Unavailable(
                    f"a control plane holds the lock on {settings.home} (pid {holder.pid if holder else '?'}) but "
                    f"does not answer at {holder.url if holder else 'its address'}; see {settings.server_log}"
                )
        elif process.poll() is not None:
            info = running(settings)
            if info:
                return info
            raise Unavailable(
                f"the control plane for {settings.home} exited with code {process.returncode} while starting; "
                f"last lines of {settings.server_log}:\n{_tail(settings.server_log)}"
            )
        time.sleep(0.05)
    raise Unavailable(f"the control plane for {settings.home} did not answer within "
                      f"{timeout:g}s; see {settings.server_log}")


def stop(settings: Settings, timeout: float = 30.0, sig: int = signal.SIGTERM) -> dict | None:
    """Stop the control plane for settings.home (SIGTERM, then SIGKILL after `timeout`); its info, or None.

    `sig=RESTART_SIGNAL` stops it leaving its endpoints serving, for the next control plane to adopt."""
    info = running(settings)
    if not info:
        return None
    pid = int(info["pid"])
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return info
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return info
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return info


def restart(settings: Settings, options: dict | None = None, timeout: float = START_TIMEOUT) -> dict:
    """Replace the running control plane with a new one (an upgrade) while its endpoints keep serving.

    The new one gets the saved options, overridden by `options`. Returns the new server's info."""
    from ..serveroptions import given_in

    old = stop(settings, timeout=timeout, sig=RESTART_SIGNAL)
    given = dict(options or {})
    if old and old.get("args") and not settings.options_file.exists():
        # A control plane from before the options file: its command line said what it was started with.
        given = {**given_in(old["args"]), **given}
    return start(settings, given, timeout=timeout)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own child that exited, not yet reaped) is not alive.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


def _same_home(reported, settings: Settings) -> bool:
    try:
        return reported is not None and os.path.realpath(reported) == os.path.realpath(settings.home)
    except (TypeError, ValueError):
        return False


def _tail(path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
