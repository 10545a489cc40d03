"""The SDK on its own terms: finding or starting the control plane, retries, errors, and what it imports."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest

from conftest import MODELS, kill_everything_under, processes_mentioning, route, run, wait_until
from trainml_cli import TrainML
from trainml_cli.errors import NotFound, RouteSpecError, Unauthorized, Unavailable, UsageError
from trainml_cli.settings import Settings

NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing listens


@pytest.fixture
def home(tmp_path):
    """A home with no control plane; whatever the test starts there is stopped afterwards."""
    path = tmp_path / "home"
    yield path
    from trainml_cli.sdk import autostart

    autostart.stop(Settings(home=path), timeout=15)
    kill_everything_under(path)


def servers_for(home) -> list[int]:
    return [pid for pid in processes_mentioning(str(home))
            if b"trainml_cli.server" in open(f"/proc/{pid}/cmdline", "rb").read()]


def cli(home, *argv) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINML_")}
    return subprocess.run([sys.executable, "-m", "trainml_cli", "--home", str(home), *argv], capture_output=True,
                          text=True, timeout=90, env=env)


def test_the_sdk_starts_a_control_plane_when_none_answers(home):
    async def first():
        async with TrainML(settings=Settings(home=home)) as client:
            assert await client.jobs.list() == []
            return client.http.url

    url = run(first())
    info = json.loads((home / "server.json").read_text())
    assert info["url"] == url
    pid = info["pid"]
    assert os.getsid(pid) == pid  # detached: its own session, so it outlives the command that started it
    assert oct(os.stat(home / "token").st_mode & 0o777) == "0o600"
    assert "control plane listening on" in (home / "server.log").read_text()

    async def second():
        async with TrainML(home=home) as client:
            await client.models.list()
            return client.http.url

    assert run(second()) == url  # found through the home, not started again
    assert servers_for(home) == [pid]

    status = cli(home, "server", "status")
    assert status.returncode == 0, status.stderr
    assert url in status.stdout and str(pid) in status.stdout
    stopped = cli(home, "server", "stop")
    assert stopped.returncode == 0 and f"Control plane at {url} stopped." in stopped.stdout
    wait_until(lambda: not servers_for(home), message="the server to exit")
    assert not (home / "server.json").exists()
    assert cli(home, "server", "status").returncode == 1

    started = cli(home, "server", "start", "--format", "json")
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["url"].startswith("http://127.0.0.1:")
    again = cli(home, "server", "start")
    assert "Control plane already running at:" in again.stdout


def test_clients_racing_to_start_a_control_plane_end_up_with_one(home):
    async def race():
        clients = [TrainML(settings=Settings(home=home)) for _ in range(3)]
        await asyncio.gather(*(c.jobs.list() for c in clients))
        urls = {c.http.url for c in clients}
        for c in clients:
            await c.close()
        return urls

    urls = run(race())
    assert len(urls) == 1
    wait_until(lambda: len(servers_for(home)) == 1, message="the losers to exit")


def test_a_restarted_control_plane_is_found_again(home):
    """The server moved (new port) after a crash: the SDK looks again instead of failing."""
    async def scenario():
        async with TrainML(settings=Settings(home=home)) as client:
            await client.jobs.list()
            old_url = client.http.url
            pid = json.loads((home / "server.json").read_text())["pid"]
            os.kill(pid, 9)
            wait_until(lambda: not servers_for(home), message="the server to die")
            assert await client.jobs.list() == []  # autostarted again
            assert client.http.url != old_url

    run(scenario())


def test_an_unreachable_explicit_url_fails_after_bounded_retries(home):
    async def scenario():
        async with TrainML(api_url=NOWHERE, home=home) as client:
            started = time.monotonic()
            with pytest.raises(Unavailable,
                               match=r"cannot reach the control plane at http://127.0.0.1:9: connection refused"):
                await client.jobs.list()
            return time.monotonic() - started

    assert run(scenario()) < 10
    assert not (home / "server.json").exists()  # an explicit URL is never started


def test_routes_are_checked_before_anything_is_sent(home):
    async def scenario():
        async with TrainML(api_url=NOWHERE, home=home) as client:
            with pytest.raises(RouteSpecError, match=r"route 1 \(POST /ping\): path: /ping is reserved"):
                await client.jobs.create("x", model={"source_type": "git", "source_uri": "https://x/y.git"},
                                         endpoint={"routes": [route("/ping")]})
            with pytest.raises(UsageError,
                               match=r"route 1 \(POST /predict\): file: 'missing' not "
                                     r"found in .*looked for missing.py"):
                await client.jobs.create("x", model={"source_type": "local", "source_uri": str(MODELS / "echo")},
                                         endpoint={"routes": [route(file="missing")]})

    run(scenario())  # Unavailable would mean a request was attempted


def test_server_errors_come_back_as_the_same_classes(control_plane):
    async def scenario():
        async with control_plane.client() as client:
            with pytest.raises(NotFound, match="job 'ghost' not found"):
                await client.jobs.get("ghost")
            with pytest.raises(NotFound, match="model 'ghost' not found"):
                await client.models.get("ghost")
        async with TrainML(api_url=control_plane.url, token="wrong", home=control_plane.home) as client:
            with pytest.raises(Unauthorized, match="the API token is wrong"):
                await client.jobs.list()

    run(scenario())


def test_calls_are_retried_while_the_endpoint_answers_503(control_plane, tmp_path):
    gate = tmp_path / "gate"

    async def scenario():
        async with control_plane.client() as client:
            job = await client.jobs.create("slow",
                                           model={"source_type": "local", "source_uri": str(MODELS / "slow_load")},
                                           endpoint={"routes": [route()]},
                                           environment={"env": [{"key": "TEST_LOAD_GATE", "value": str(gate)}]})
            await job.wait_for("starting", timeout=60)
            call = asyncio.create_task(job.call("/predict", {"text": "patient"}))
            await asyncio.sleep(1.5)  # the endpoint answers 503 (loading) meanwhile
            assert not call.done()
            gate.touch()
            assert await asyncio.wait_for(call, 20) == {"loaded": "patient"}
            await job.wait_for("running", timeout=30)
            await job.remove(force=True)

    run(scenario())


def test_the_sdk_does_not_load_the_server_stack():
    probe = ("import sys, json, trainml_cli.sdk, trainml_cli.cli.main\n"
             "from trainml_cli import TrainML\nTrainML(api_url='http://127.0.0.1:9')\n"
             "print(json.dumps(sorted(m for m in sys.modules "
             "if m.split('.')[0] in ('fastapi', 'uvicorn', 'pydantic', 'starlette') "
             "or m.startswith(('trainml_cli.server', 'trainml_cli.runtime')))))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_a_model_exception_reaches_the_caller_with_its_type(control_plane):
    from trainml_cli.errors import ServerError

    async def scenario():
        async with control_plane.client() as client:
            job = await client.jobs.create("raises",
                                           model={"source_type": "local", "source_uri": str(MODELS / "raises")},
                                           endpoint={"routes": [route("/fail", "fail")]}, wait=True)
            try:
                with pytest.raises(ServerError) as caught:
                    await job.call("/fail", {"text": "x"})
                return str(caught.value)
            finally:
                await job.remove(force=True)

    assert run(scenario()) == "POST /fail: ValueError: cannot handle 'x'"


def test_an_endpoints_errors_reach_the_caller_as_their_classes(control_plane, tmp_path):
    """A model that raises, a call past the endpoint's timeout, an endpoint at capacity: each raises the class of
    errors.py its kind names, with that kind and status, and still the class callers caught before."""
    from trainml_cli.errors import CallTimeout, ModelError, Overloaded, ServerError, WaitTimeout

    model = tmp_path / "model"
    model.mkdir()
    (model / "predict.py").write_text(
        "import os, time\n\n\ndef fail(text):\n    raise ValueError(f'cannot handle {text!r}')\n\n\n"
        "def block(gate):\n    while not os.path.exists(gate):\n        time.sleep(0.01)\n    return {}\n")
    gate = tmp_path / "gate"

    async def scenario():
        async with control_plane.client() as client:
            job = await client.jobs.create(
                "kinds", model={"source_type": "local", "source_uri": str(model)},
                endpoint={"routes": [route("/fail", "fail"),
                                     route("/block", "block", body=[{"name": "gate", "type": "str"}])],
                          "timeout": 1, "max_concurrency": 1, "max_queue": 0}, wait=True)
            caught = {}
            try:
                for name, path, data in (("raises", "/fail", {"text": "x"}),
                                         ("times out", "/block", {"gate": str(gate)}),
                                         ("overloaded", "/fail", {"text": "x"})):  # /block still holds the one slot
                    with pytest.raises(TrainMLError) as error:
                        await job.call(path, data)
                    caught[name] = error.value
            finally:
                gate.touch()
                await job.remove(force=True)
            return caught

    from trainml_cli.errors import TrainMLError

    caught = run(scenario())
    assert [(type(e), e.kind, e.http_status) for e in caught.values()] == [
        (ModelError, "model_error", 500), (CallTimeout, "timeout", 504), (Overloaded, "overloaded", 503)]
    assert str(caught["raises"]) == "POST /fail: ValueError: cannot handle 'x'"
    assert caught["raises"].type == "ValueError"
    assert "timeout of 1s" in str(caught["times out"])
    assert isinstance(caught["raises"], ServerError) and isinstance(caught["times out"], WaitTimeout)
    assert isinstance(caught["overloaded"], Unavailable)
