"""The control plane's options are data that persists (TRAINML_HOME/server-options.json): whoever starts it
after a crash (the next CLI call, `server restart`, the systemd unit) starts it with the options it had. Real
control planes killed with SIGKILL, the CLI as a script, certificates made by openssl."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys

import pytest
import requests

from conftest import MODELS, kill_everything_under, route, run, wait_until
from test_tls import make_certificate

ECHO = {"source_type": "local", "source_uri": str(MODELS / "echo")}


def trainml(home, *argv, timeout=120):
    """The CLI as a user runs it on this home: it finds the control plane there, or starts one."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TRAINML_HOME": str(home), "NO_COLOR": "1",
           "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "UV_CACHE_DIR": os.environ.get("UV_CACHE_DIR", "")}
    return subprocess.run([sys.executable, "-m", "trainml_cli", *argv], capture_output=True, text=True, env=env,
                          timeout=timeout)


def server_record(home) -> dict:
    return json.loads((home / "server.json").read_text())


def api(home, path: str):
    info = server_record(home)
    token = (home / "token").read_text().strip()
    return requests.get(info["url"] + path, headers={"Authorization": f"Bearer {token}"}, timeout=30,
                        verify=info.get("tls_certfile", True)).json()


def command_line(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().decode().split("\0")[:-1]


def gpu_types(home) -> dict:
    return {row["type"]: row for row in api(home, "/api/gpus")}


def test_tls_survives_a_kill_9_of_the_control_plane(start_control_plane, tmp_path):
    cert, key = make_certificate(tmp_path)
    plane = start_control_plane("--tls-certfile", str(cert), "--tls-keyfile", str(key))

    async def create():
        async with plane.client() as client:
            job = await client.jobs.create("secure", model=ECHO, endpoint={"routes": [route()]}, wait=True)
            return job.dict

    job = run(create())
    assert job["url"].startswith("https://")
    plane.kill(signal.SIGKILL)

    # The next CLI call starts a control plane for the home: over HTTPS again, and it adopts the endpoint.
    listed = trainml(plane.home, "job", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert server_record(plane.home)["url"].startswith("https://127.0.0.1:")
    listing = [(j["name"], j["status"], j["url"]) for j in json.loads(listed.stdout)]
    assert listing == [("secure", "running", job["url"])]
    called = trainml(plane.home, "job", "call", "secure", "/predict", "--data", '{"text": "after the crash"}')
    assert called.returncode == 0 and "after the crash" in called.stdout, called.stderr

    # The endpoint restarted by this control plane (its process killed) serves HTTPS too.
    os.killpg(job["pid"], signal.SIGKILL)
    wait_until(lambda: api(plane.home, f"/api/jobs/{job['id']}")["restarts"] >= 1, timeout=60,
               message="the endpoint to be restarted")
    wait_until(lambda: api(plane.home, f"/api/jobs/{job['id']}")["status"] == "running", timeout=120,
               message="the restarted endpoint to run")
    answer = requests.post(job["url"] + "/predict", json={"text": "restarted"}, verify=str(cert), timeout=30)
    assert answer.json() == {"echo": "restarted"}
    called = trainml(plane.home, "job", "call", "secure", "/predict", "--data", '{"text": "still https"}')
    assert called.returncode == 0 and "still https" in called.stdout, called.stderr


def test_declared_gpus_survive_a_kill_9_and_the_auto_start(start_control_plane):
    plane = start_control_plane("--gpus", "0:rtx3090,1:rtx3090")
    assert gpu_types(plane.home)["rtx3090"]["count"] == 2
    plane.kill(signal.SIGKILL)
    listed = trainml(plane.home, "job", "list")
    assert listed.returncode == 0, listed.stderr
    assert server_record(plane.home)["pid"] != plane.process.pid
    assert gpu_types(plane.home)["rtx3090"]["count"] == 2  # not what nvidia-smi says (nothing here)


@pytest.fixture
def home(tmp_path):
    """A home whose control planes (started by the CLI here) are all ended after the test, however it ends."""
    yield tmp_path / "home"
    kill_everything_under(tmp_path / "home")


def test_server_restart_takes_options_saves_them_and_never_repeats_one(home):
    started = trainml(home, "server", "start", "--gpus", "none", "--stop-grace", "3")
    assert started.returncode == 0, started.stderr
    options_file = home / "server-options.json"
    assert stat.S_IMODE(options_file.stat().st_mode) == 0o600
    assert json.loads(options_file.read_text())["options"] == {"gpus": "none", "stop_grace": 3}

    restarted = trainml(home, "server", "restart", "--gpus", "0:rtx3090", "--format", "json")
    assert restarted.returncode == 0, restarted.stderr
    info = json.loads(restarted.stdout)
    assert info["options"]["gpus"] == "0:rtx3090" and info["options"]["stop_grace"] == 3  # given, and kept
    assert gpu_types(home)["rtx3090"]["count"] == 1
    assert json.loads(options_file.read_text())["options"] == {"gpus": "0:rtx3090", "stop_grace": 3}
    assert stat.S_IMODE(options_file.stat().st_mode) == 0o600

    status = trainml(home, "server", "status")
    assert status.returncode == 0 and "Options:   --gpus 0:rtx3090 --stop-grace 3" in status.stdout, status.stdout

    # A crash, the auto-start, a restart again: the options hold and no option is ever given twice.
    os.kill(info["pid"], signal.SIGKILL)
    assert trainml(home, "job", "list").returncode == 0
    assert trainml(home, "server", "restart").returncode == 0
    pid = server_record(home)["pid"]
    flags = [word for word in command_line(pid) if word.startswith("--")]
    assert len(flags) == len(set(flags)), command_line(pid)
    status = json.loads(trainml(home, "server", "status", "--format", "json").stdout)
    options = status["options"]
    assert (options["gpus"], options["stop_grace"], options["port"]) == ("0:rtx3090", 3, 0)
    assert gpu_types(home)["rtx3090"]["count"] == 1
    assert trainml(home, "server", "stop").returncode == 0


def test_a_server_file_that_cannot_be_written_is_logged_once_then_counted(control_plane):
    server_file = control_plane.home / "server.json"
    server_file.unlink()
    server_file.mkdir()  # it cannot be rewritten while this is here
    try:
        wait_until(lambda: "(10 attempts)" in control_plane.log(), timeout=60,
                   message="ten failed rewrites to be counted")
    finally:
        server_file.rmdir()
    wait_until(lambda: "written again after" in control_plane.log(), timeout=30, message="the rewrite")
    log = control_plane.log()
    assert "Traceback" not in log
    assert log.count("cannot be written again") == 1
    assert server_record(control_plane.home)["url"] == control_plane.url
