"""Endpoint keys end to end: a job created with auth, called by key holders only, the key kept out of records,
lists and logs, and rotated. Real control plane, real endpoint, the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import requests

from conftest import MODELS, route, run

ECHO = {"source_type": "local", "source_uri": str(MODELS / "echo")}


def trainml(plane, *argv):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TRAINML_HOME": str(plane.home),
           "TRAINML_API_URL": plane.url, "NO_COLOR": "1", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "trainml_cli", *argv], capture_output=True, text=True, env=env,
                          timeout=120)


def test_only_key_holders_call_an_endpoint_and_the_key_stays_out_of_records_and_logs(control_plane):
    async def scenario():
        async with control_plane.client() as client:
            job = await client.jobs.create("guarded", model=ECHO, endpoint={"routes": [route()], "auth": True})
            await job.wait_for("running", timeout=60)
            key = (await job.connection())["key"]
            assert await job.call("/predict", {"text": "hi"}) == {"echo": "hi"}  # the SDK sends the key
            return job, key

    job, key = run(scenario())
    assert key.startswith("tmlk_") and len(key) > 40
    url = job.url + "/predict"
    missing = requests.post(url, json={"text": "x"}, timeout=10)
    assert missing.status_code == 401 and missing.json()["error"] == "unauthorized"
    wrong = requests.post(url, json={"text": "x"}, headers={"Authorization": "Bearer " + key[:-1] + "x"}, timeout=10)
    assert wrong.status_code == 401
    good = requests.post(url, json={"text": "x"}, headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert good.status_code == 200 and good.json() == {"echo": "x"}
    assert requests.get(job.url + "/ping", timeout=10).status_code == 200

    # The key is in the connect answer only: never in a job record, the list, the events or the logs.
    assert control_plane.api("GET", f"/api/jobs/{job.id}/connect").json()["key"] == key
    assert control_plane.api("GET", f"/api/jobs/{job.id}/connect", auth=False).status_code == 401
    for path in (f"/api/jobs/{job.id}", "/api/jobs", f"/api/jobs/{job.id}/logs?limit=1000"):
        text = control_plane.api("GET", path).text
        assert key not in text, path
    assert control_plane.api("GET", f"/api/jobs/{job.id}").json()["endpoint"]["auth"] is True
    key_file = control_plane.home / "jobs" / job.id / "endpoint.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    for pid in control_plane.endpoint_pids():
        assert key.encode() not in open(f"/proc/{pid}/cmdline", "rb").read()

    # The CLI: the create output's curl examples and `job connect` carry the key; `job get` and `job list` don't.
    created = trainml(control_plane, "job", "create", "endpoint", "guarded-cli", "--model-dir", str(MODELS / "echo"),
                      "--route", '{"verb": "POST", "path": "/predict", "file": "predict", "function": "predict", '
                      '"body": [{"name": "text", "type": "str"}]}', "--auth")
    assert created.returncode == 0, created.stderr
    cli_key = next(line.split()[2] for line in created.stdout.splitlines() if line.startswith("Endpoint key: "))
    assert f"-H 'Authorization: Bearer {cli_key}'" in created.stdout
    curl = next(line for line in created.stdout.splitlines() if line.startswith("curl "))
    answer = subprocess.run(curl, shell=True, capture_output=True, text=True, timeout=30)
    assert answer.stdout.strip() == '{"echo":"text"}', answer
    connect = trainml(control_plane, "job", "connect", "guarded-cli")
    assert cli_key in connect.stdout
    for argv in (("job", "get", "guarded-cli"), ("job", "list"), ("job", "get", "guarded-cli", "--format", "json"),
                 ("job", "logs", "guarded-cli")):
        shown = trainml(control_plane, *argv)
        assert shown.returncode == 0 and cli_key not in shown.stdout + shown.stderr, argv
    for log in (control_plane.home / "jobs").rglob("*.log"):
        assert key not in log.read_text(errors="replace") and cli_key not in log.read_text(errors="replace")
    assert key not in control_plane.log()

    # Rotation: once the command returns, the new key works and the old one does not, without a restart.
    rotated = trainml(control_plane, "job", "rotate-key", "guarded")
    assert rotated.returncode == 0, rotated.stderr
    new_key = rotated.stdout.split("New key for job guarded: ")[1].split()[0]
    assert new_key != key
    assert requests.post(url, json={"text": "x"}, headers={"Authorization": f"Bearer {new_key}"}, timeout=10).ok
    assert requests.post(url, json={"text": "x"}, headers={"Authorization": f"Bearer {key}"},
                         timeout=10).status_code == 401
    assert trainml(control_plane, "job", "call", "guarded", "/predict", "--data", '{"text": "after"}').returncode == 0

    # A job without a key has nothing to rotate.
    async def plain():
        async with control_plane.client() as client:
            return await client.jobs.create("open", model=ECHO, endpoint={"routes": [route()]})

    open_job = run(plain())
    refused = trainml(control_plane, "job", "rotate-key", open_job.id)
    assert refused.returncode == 1 and "has no endpoint key" in refused.stderr


def test_right_after_rotate_key_returns_every_worker_takes_the_new_key_and_refuses_the_old(control_plane):
    """No window: a caller that rotates and calls at once with the new key gets 200, from whichever worker."""
    async def scenario():
        async with control_plane.client() as client:
            job = await client.jobs.create("rotating", model=ECHO, endpoint={"routes": [route()], "auth": True},
                                           resources={"cpu_count": 2})  # two worker processes
            await job.wait_for("running", timeout=60)
            return job, (await job.connection())["key"]

    job, key = run(scenario())
    url = job.url + "/predict"

    def call(with_key):
        return requests.post(url, json={"text": "x"}, headers={"Authorization": f"Bearer {with_key}"},
                             timeout=10).status_code

    for rotation in range(5):
        assert [call(key) for _ in range(4)] == [200] * 4  # every worker has looked at its key file just now
        answer = control_plane.api("POST", f"/api/jobs/{job.id}/rotate-key")
        assert answer.status_code == 200, answer.text
        old, key = key, answer.json()["key"]
        assert [call(key) for _ in range(4)] == [200] * 4, f"rotation {rotation + 1}: the new key was refused"
        assert [call(old) for _ in range(4)] == [401] * 4, f"rotation {rotation + 1}: the old key still works"
