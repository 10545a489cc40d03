"""Updating and rolling back an endpoint that outlived its control plane (`trainml server restart`, or a kill -9
and the next control plane): the next one adopts it, and a switch takes its listening socket back from it, so
the same guarantees hold (new code on the same URL, no failed call under load, the old process stopped)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import requests

from conftest import processes_mentioning, wait_until
from test_revisions import Load, create, revisions, trainml, write_model


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def test_an_endpoint_adopted_after_a_kill_9_is_updated_and_rolled_back_with_no_failed_call(start_control_plane,
                                                                                          tmp_path):
    plane = start_control_plane()
    folder = write_model(tmp_path / "model", 1)
    url = create(plane, folder)
    first = plane.api("GET", "/api/jobs/live").json()["pid"]
    with Load(url) as load:
        wait_until(lambda: load.count_since(0) >= 30, 60, message="calls before the kill")
        plane.kill()  # SIGKILL: the endpoint serves on, and the next control plane adopts it
        plane.start()
        assert plane.api("GET", "/api/jobs/live").json()["pid"] == first
        write_model(folder, 2, load_seconds=1.0)
        result = trainml(plane, "job", "update", "live", "--model-dir", str(folder))
        returned = time.monotonic()
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"Revision 2 of live is serving at: {url}" in result.stdout
        wait_until(lambda: load.count_since(returned) >= 50, 60, message="calls after the update")
        assert not alive(first)
        second = plane.api("GET", "/api/jobs/live").json()["pid"]
        assert second != first and alive(second)

        killed = time.monotonic()
        plane.kill()  # the new revision's process outlives this control plane too; roll back from the next one
        plane.start()
        result = trainml(plane, "job", "rollback", "live")
        rolled = time.monotonic()
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Revision 1 of live is serving again" in result.stdout
        wait_until(lambda: load.count_since(rolled) >= 50, 60, message="calls after the rollback")
        assert not alive(second)
    assert load.failures == []
    assert {version for sent, version in load.answers if returned < sent < killed} == {2}
    assert {version for sent, version in load.answers if sent > rolled} == {1}
    assert [(r["revision"], r["status"]) for r in revisions(plane)] == [(1, "serving"), (2, "retired")]
    job = plane.api("GET", "/api/jobs/live").json()
    assert (job["status"], job["url"]) == ("running", url)
    assert plane.endpoint_pids() == [job["pid"]]


def test_after_server_restart_an_update_to_two_workers_takes_the_socket_from_the_adopted_endpoint(
        start_control_plane, tmp_path):
    plane = start_control_plane()
    folder = write_model(tmp_path / "model", 1)
    url = create(plane, folder)
    first = plane.api("GET", "/api/jobs/live").json()["pid"]
    # As a user does it: the CLI finds the control plane from its home (it changes port with the restart).
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TRAINML_HOME": str(plane.home), "NO_COLOR": "1",
           "PYTHONPATH": os.environ.get("PYTHONPATH", "")}

    def cli(*argv):
        return subprocess.run([sys.executable, "-m", "trainml_cli", *argv], capture_output=True, text=True,
                              env=env, timeout=300)

    with Load(url) as load:
        wait_until(lambda: load.count_since(0) >= 30, 60, message="calls before the restart")
        restarted = cli("server", "restart", "--format", "json")
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        write_model(folder, 2)
        result = cli("job", "update", "live", "--model-dir", str(folder), "--replicas", "2")
        returned = time.monotonic()
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"Revision 2 of live is serving at: {url}" in result.stdout
        wait_until(lambda: load.count_since(returned) >= 50, 60, message="calls after the update")
    assert load.failures == []
    assert {version for sent, version in load.answers if sent > returned} == {2}
    assert not alive(first)
    new = json.loads(restarted.stdout)
    token = (plane.home / "token").read_text().strip()
    job = requests.get(new["url"] + "/api/jobs/live", headers={"Authorization": f"Bearer {token}"},
                       timeout=10).json()
    assert (job["status"], job["url"], job["endpoint"]["replicas"]) == ("running", url, 2)
    # the new revision's supervisor and its two workers
    assert len(processes_mentioning(str(plane.home), exclude=(new["pid"],))) == 3
    assert cli("server", "stop").returncode == 0
