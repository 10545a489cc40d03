"""Streaming routes end to end: a real control plane, real endpoint processes on loopback, `trainml job call
--stream` and the SDK's `job.stream`, and a caller that goes away mid-stream."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from conftest import ControlPlane, kill_everything_under

MODELS = Path(__file__).parent / "models"
WAIT = 30.0  # seconds for anything here; it takes well under one


def route(path, function, *names, type="str"):
    return json.dumps({"verb": "POST", "path": path, "file": "predict", "function": function,
                       "body": [{"name": n, "type": "int" if n == "n" else type} for n in names]})


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    plane = ControlPlane(tmp_path_factory.mktemp("streams") / "home").start()
    yield plane
    plane.stop()
    kill_everything_under(plane.home)


@pytest.fixture(scope="module")
def env(plane):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TRAINML_HOME": str(plane.home),
           "TRAINML_API_URL": plane.url, "NO_COLOR": "1"}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def trainml(env, *argv, **kwargs):
    return subprocess.run([sys.executable, "-m", "trainml_cli", *argv], capture_output=True, text=True, env=env,
                          timeout=120, **kwargs)


def create(env, name, model, *routes, extra=()):
    argv = ["job", "create", "endpoint", name, "--model-dir", str(MODELS / model), "--format", "json"]
    for spec in routes:
        argv += ["--route", spec]
    done = trainml(env, *argv, *extra)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_job_call_stream_prints_each_item_as_it_arrives(env, tmp_path):
    create(env, "tokens", "stream_tokens", route("/tokens", "tokens", "n", "gate"))
    gate = tmp_path / "gate"
    call = subprocess.Popen([sys.executable, "-m", "trainml_cli", "job", "call", "tokens", "/tokens", "--stream",
                             "-d", json.dumps({"n": 3, "gate": str(gate)})], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = call.stdout.readline()  # the function is still waiting for the gate this test has not opened
        assert first == '"first"\n' and call.poll() is None
        gate.touch()
        rest, err = call.communicate(timeout=WAIT)
    finally:
        call.kill()
    assert call.returncode == 0, err
    assert [json.loads(line) for line in rest.splitlines()] == [
        {"i": i, "text": f"line {i}\nwith a newline"} for i in (1, 2)]
    # The running endpoint's /openapi.json says the route streams: its example is `curl -N`, which shows items
    # as they come.
    connect = trainml(env, "job", "connect", "tokens")
    assert connect.returncode == 0, connect.stderr
    lines = connect.stdout.splitlines()
    assert lines[0].startswith("curl -N -X POST http://127.0.0.1:") and lines[-1].startswith("Endpoint is running at:")
    # The dashboard's Connect page asks the endpoint the same, and shows the same -N.
    link = trainml(env, "server", "dashboard", "--format", "json")
    assert link.returncode == 0, link.stderr
    session = requests.Session()
    assert session.get(json.loads(link.stdout)["url"], timeout=10).status_code == 200
    job_id = json.loads(trainml(env, "job", "get", "tokens", "--format", "json").stdout)["id"]
    page = session.get(f"{json.loads(link.stdout)['url'].split('/dashboard/')[0]}/dashboard/jobs/{job_id}/connect",
                       timeout=10).text
    assert "curl -N -X POST http://ENDPOINT_URL/tokens" in page


def test_the_sdk_stream_yields_items_then_raises_an_error_mid_stream(env, plane):
    from trainml_cli import TrainML
    from trainml_cli.errors import ModelError

    create(env, "fails", "stream_fails", route("/s", "after_one", "text"))
    done = trainml(env, "job", "call", "fails", "/s", "--stream", "-d", '{"text": "x"}')
    assert done.returncode == ModelError.exit_code
    assert done.stdout == '{"got": "x"}\n'
    assert "cannot go on after 'x'" in done.stderr and "Traceback" not in done.stderr

    async def items():
        got = []
        async with TrainML(api_url=plane.url, home=plane.home) as client:
            job = await client.jobs.get("fails")
            with pytest.raises(ModelError, match="cannot go on after 'y'"):
                async for item in job.stream("/s", {"text": "y"}):
                    got.append(item)
        return got

    assert asyncio.run(items()) == [{"got": "y"}]


def test_a_caller_going_away_closes_the_generator_and_frees_the_only_slot(env, tmp_path):
    job = create(env, "forever", "stream_forever", route("/s", "forever", "closed"),
                 extra=("--max-concurrency", "1", "--max-queue", "0"))
    url = job["url"].rstrip("/") + "/s"
    closed = tmp_path / "closed"
    with requests.post(url, json={"closed": str(closed)}, stream=True, timeout=WAIT) as response:
        assert response.status_code == 200 and response.headers["x-request-id"]
        lines = response.iter_lines()
        assert [next(lines), next(lines)] == [b"0", b"1"]
        assert requests.post(url, json={"closed": str(tmp_path / "other")}, timeout=WAIT).status_code == 503
    deadline = time.monotonic() + WAIT
    while not closed.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert closed.exists(), "the generator's finally did not run after the caller left"
    while time.monotonic() < deadline:  # the slot is free once the thread lets go, right after the finally
        with requests.post(url, json={"closed": str(tmp_path / "again")}, stream=True, timeout=WAIT) as again:
            if again.status_code == 200:
                assert next(again.iter_lines()) == b"0"
                return
        time.sleep(0.05)
    raise AssertionError("the slot was not freed after the caller left")
