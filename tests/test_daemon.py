"""The control plane as a process: always findable through its lock file, one per home, and `server restart`
replacing it while its endpoints keep serving. Real processes; the CLI as a script runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import requests

from conftest import MODELS, processes_mentioning, route, run, wait_until
from test_supervisor import Traffic, alive

ECHO = {"source_type": "local", "source_uri": str(MODELS / "echo")}
ROUTES = {"routes": [route()]}


def trainml(home, *argv, timeout=60):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TRAINML_HOME": str(home), "NO_COLOR": "1"}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run([sys.executable, "-m", "trainml_cli", *argv], capture_output=True, text=True, env=env,
                          timeout=timeout)


def control_planes(home) -> list[int]:
    return [pid for pid in processes_mentioning(str(home)) if _is_control_plane(pid)]


def _is_control_plane(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"trainml_cli.server" in f.read()
    except OSError:
        return False


@pytest.mark.parametrize("spoil", ["deleted", "truncated", "garbage", "another url"])
def test_a_lost_or_spoiled_server_file_neither_hangs_a_client_nor_starts_a_second_server(control_plane, spoil):
    server_file = control_plane.home / "server.json"
    if spoil == "deleted":
        server_file.unlink()
    elif spoil == "truncated":
        server_file.write_text(server_file.read_text()[:10])
    elif spoil == "garbage":
        server_file.write_bytes(os.urandom(200))
    else:
        server_file.write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": 1}))
    began = time.monotonic()
    status = trainml(control_plane.home, "server", "status", "--format", "json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["url"] == control_plane.url
    listed = trainml(control_plane.home, "job", "list", "--format", "json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    assert time.monotonic() - began < 20  # each call used to hang for 60 s
    assert control_planes(control_plane.home) == [control_plane.process.pid]
    # The server writes its file again.
    wait_until(lambda: _names(server_file, control_plane.url), timeout=10, message="server.json to be rewritten")
    server_file.unlink()
    stopped = trainml(control_plane.home, "server", "stop")
    assert stopped.returncode == 0 and f"Control plane at {control_plane.url} stopped." in stopped.stdout
    assert control_plane.process.wait(timeout=30) is not None


def _names(path, url) -> bool:
    try:
        return json.loads(path.read_text())["url"] == url
    except (OSError, ValueError, KeyError):
        return False


def test_two_control_planes_never_share_a_home_even_without_a_server_file(control_plane):
    (control_plane.home / "server.json").unlink()
    result = subprocess.run([sys.executable, "-m", "trainml_cli.server", "--home", str(control_plane.home)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 75
    assert f"a control plane already runs for {control_plane.home} at {control_plane.url}" in result.stderr


def test_server_restart_replaces_the_control_plane_while_endpoints_serve(control_plane):
    async def create():
        async with control_plane.client() as client:
            return (await client.jobs.create("echo", model=ECHO, endpoint=ROUTES, wait=True)).dict

    job = run(create())
    old = control_plane.process.pid
    with Traffic(job["url"]) as traffic:
        wait_until(lambda: traffic.ok >= 20, timeout=20, message="traffic to flow")
        restarted = trainml(control_plane.home, "server", "restart", "--format", "json")
        assert restarted.returncode == 0, restarted.stderr + restarted.stdout
        served = traffic.ok
        wait_until(lambda: traffic.ok >= served + 50, timeout=20, message="calls after the restart")
    assert traffic.failed == 0
    assert control_plane.process.wait(timeout=10) == 76  # the old one ended for a restart (EXIT_RESTART)
    info = json.loads(restarted.stdout)
    assert info["pid"] != old and control_planes(control_plane.home) == [info["pid"]]
    # Started again with the old one's options (saved for the home), and it adopted the endpoint.
    assert json.loads((control_plane.home / "server-options.json").read_text())["options"] == {"port": 0}
    assert info["options"]["port"] == 0 and info["options"]["gpus"] is None
    token = (control_plane.home / "token").read_text().strip()
    record = requests.get(f"{info['url']}/api/jobs/{job['id']}", headers={"Authorization": f"Bearer {token}"},
                          timeout=10).json()
    assert (record["status"], record["pid"], record["url"], record["restarts"]) == (
        "running", job["pid"], job["url"], 0)
    stopped = trainml(control_plane.home, "server", "stop")
    assert stopped.returncode == 0, stopped.stderr
    wait_until(lambda: not alive(job["pid"]), timeout=20, message="`server stop` to stop the endpoint too")
    assert control_planes(control_plane.home) == []


def test_server_install_writes_a_systemd_user_unit_that_never_kills_endpoints(tmp_path):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TRAINML_HOME": str(tmp_path / "my home"),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-m", "trainml_cli", "server", "install", "--gpus", "none"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    unit_path = tmp_path / "config" / "systemd" / "user" / "trainml.service"
    assert f"Wrote {unit_path}" in result.stdout and "systemctl --user enable --now trainml" in result.stdout
    unit = unit_path.read_text()
    # Only the home: the options are the saved ones, so a later `server restart --gpus ...` holds for the service.
    assert f'ExecStart={sys.executable} -m trainml_cli.server --home "{tmp_path / "my home"}"\n' in unit
    saved = json.loads((tmp_path / "my home" / "server-options.json").read_text())
    assert saved["options"] == {"gpus": "none"}
    for line in ("KillMode=process", "Restart=on-failure", "ExecReload=/bin/kill -USR1 $MAINPID",
                 "RestartForceExitStatus=76", "WantedBy=default.target"):
        assert line in unit.splitlines()
