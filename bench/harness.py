"""Shared by the bench scripts: start a server pinned to one core, load it with wrk pinned to the other.

Each script compares against a baseline measured in the same run, so the ratios mean something on any machine.
Needs wrk (Debian package `wrk`) and taskset; loopback only, every run bounded by wrk's duration.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER_CORE = "0"
LOAD_CORE = "1" if (os.cpu_count() or 1) > 1 else "0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(command: list[str], core: str) -> list[str]:
    return (["taskset", "-c", core] if shutil.which("taskset") else []) + command


@contextmanager
def server(command: list[str], port: int, cwd: Path = ROOT, ready_path: str = "/ping", env: dict | None = None):
    log = tempfile.NamedTemporaryFile(prefix="bench-server-", suffix=".log", delete=False)
    proc = subprocess.Popen(pinned(command, SERVER_CORE), cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})}, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start: {' '.join(command)}\n{Path(log.name).read_text()[-2000:]}")
            time.sleep(0.1)
        yield proc
    finally:
        # The whole group: some servers (LitServe) run their work in child processes.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # children that outlived their parent
        except ProcessLookupError:
            pass
        os.unlink(log.name)


def wrk(url: str, body: str, connections: int, seconds: int, threads: int = 2) -> dict:
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(
        'wrk.method = "POST"\n'
        f"wrk.body = [[{body}]]\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    script.close()
    threads = min(threads, connections)
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency", "-s", script.name,
               url]
    try:
        out = subprocess.run(pinned(command, LOAD_CORE), capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    return parse_wrk(out, seconds)


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(out: str, seconds: int) -> dict:
    total = int(re.search(r"(\d+) requests in", out).group(1))
    duration = float(re.search(r"requests in ([\d.]+)s", out).group(1)) or seconds
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    percentile = {m.group(1): _ms(m.group(2)) for m in re.finditer(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M)}
    failed = int(non2xx.group(1)) if non2xx else 0
    return {
        "requests": total,
        "rps": total / duration,
        "ok_rps": (total - failed) / duration,
        "non2xx": failed,
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
        "p50_ms": percentile.get("50"),
        "p99_ms": percentile.get("99"),
    }


def require_wrk() -> None:
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
