"""Start the real endpoint runtime as a child process on an ephemeral loopback port, for runtime tests.

The test binds 127.0.0.1:0 and hands the listening socket to the child (`--fd`), as the control plane does,
so there is no guessing of free ports and no race for them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

MODELS = Path(__file__).parent / "models"


def route(path, function, body=(), verb="POST", positional=False, file="predict"):
    return {"verb": verb, "path": path, "file": file, "function": function, "positional": positional,
            "body": list(body)}


def param(name, type_, **extra):
    return {"name": name, "type": type_, **extra}


class Endpoint:
    def __init__(self, proc: subprocess.Popen, port: int, log_path: Path):
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.session = requests.Session()

    def post(self, path, json_body=None, **kwargs):
        return self.session.post(self.url + path, json=json_body, timeout=kwargs.pop("timeout", 10), **kwargs)

    def get(self, path, **kwargs):
        return self.session.get(self.url + path, timeout=kwargs.pop("timeout", 10), **kwargs)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_ready(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"endpoint exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/ping", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise AssertionError(f"endpoint not ready after {timeout}s:\n{self.log()}")

    def wait_exit(self, timeout=20.0) -> int:
        return self.proc.wait(timeout)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def start(model: str | Path, routes: list[dict], *args: str, tmp_path: Path, env: dict | None = None) -> Endpoint:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    log_path = tmp_path / f"endpoint-{port}.log"
    command = [sys.executable, "-m", "trainml_cli.runtime", "--model-dir",
               str(MODELS / model if isinstance(model, str) else model),
               "--fd", str(sock.fileno())]
    for r in routes:
        command += ["--route", json.dumps(r)]
    command += list(args)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command, pass_fds=[sock.fileno()], stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, start_new_session=True,
        )
    sock.close()
    return Endpoint(proc, port, log_path)
