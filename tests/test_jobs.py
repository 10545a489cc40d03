"""Jobs against the real control plane and real endpoint processes: lifecycle, failures, resources, billing."""

from __future__ import annotations

import time

import pytest
import requests

from conftest import MODELS, route, run, wait_until
from trainml_cli.errors import Conflict, JobFailed, NotFound, RouteSpecError, UsageError


def local(name: str) -> dict:
    return {"source_type": "local", "source_uri": str(MODELS / name)}


ECHO_ROUTES = {"routes": [route()]}


def test_full_lifecycle(control_plane):
    async def scenario():
        async with control_plane.client() as client:
            job = await client.jobs.create("echo", model=local("echo"), endpoint=ECHO_ROUTES)
            assert job.status == "new" and job.url is None
            await job.wait_for("running", timeout=60)
            url = job.url
            assert url.startswith("http://127.0.0.1:")
            assert requests.post(url + "/predict", json={"text": "hi"}, timeout=10).json() == {"echo": "hi"}
            assert await job.call("/predict", {"text": "again"}) == {"echo": "again"}
            assert await job.call("POST /predict", {"text": "x"}) == {"echo": "x"}

            listed = await client.jobs.list()
            assert [j.id for j in listed] == [job.id]
            assert (await client.jobs.get("echo")).id == job.id  # by unique name
            assert (await client.jobs.get(job.id)).name == "echo"

            with pytest.raises(Conflict, match="stop it first"):
                await job.remove()

            await job.stop()
            assert job.status == "stopped" and job.url is None
            with pytest.raises(requests.ConnectionError):
                requests.post(url + "/predict", json={"text": "hi"}, timeout=5)
            assert job.dict["run_time"] > 0 and job.credits > 0

            await job.start()
            await job.wait_for("running", timeout=60)
            assert job.url == url  # the port is kept across stop and start
            assert await job.call("/predict", {"text": "back"}) == {"echo": "back"}
            with pytest.raises(Conflict, match="only a stopped or failed job can be started"):
                await job.start()

            statuses = [e["message"] async for e in job.logs() if e["message"].startswith("status: ")]
            assert statuses == [
                "status: waiting for data/model download", "status: waiting for resources", "status: starting",
                "status: running", "status: stopping", "status: stopped", "status: waiting for resources",
                "status: starting", "status: running",
            ]

            await job.remove(force=True)
            with pytest.raises(NotFound):
                await client.jobs.get(job.id)
            assert not (control_plane.home / "jobs" / job.id).exists()
            assert await client.jobs.list() == []
            assert control_plane.endpoint_pids() == []

    run(scenario())


def test_duplicate_names_need_an_id(control_plane):
    async def scenario():
        async with control_plane.client() as client:
            a = await client.jobs.create("same", model=local("echo"), endpoint=ECHO_ROUTES)
            b = await client.jobs.create("same", model=local("echo"), endpoint=ECHO_ROUTES)
            with pytest.raises(Conflict) as caught:
                await client.jobs.get("same")
            assert a.id in str(caught.value) and b.id in str(caught.value)
            for job in (a, b):
                await job.remove(force=True)

    run(scenario())


def test_model_code_that_cannot_load_fails_the_job_with_its_traceback(control_plane):
    async def scenario():
        async with control_plane.client() as client:
            job = await client.jobs.create("broken", model=local("import_error"), endpoint=ECHO_ROUTES)
            with pytest.raises(JobFailed) as caught:
                await job.wait_for("running", timeout=60)
            assert "helper_that_does_not_exist" in job.reason
            assert job.reason.splitlines()[0] == (
                "model code failed to load: route POST /predict: importing predict.py "
                "failed: ModuleNotFoundError: No module named 'helper_that_does_not_exist'")
            assert "helper_that_does_not_exist" in str(caught.value) + "\n".join(caught.value.details)
            assert job.restarts == 0  # exit code 3: restarting would not help
            assert job.url is None

    run(scenario())


def test_crashing_while_starting_again_and_again_fails_the_job(control_plane):
    async def scenario():
        async with control_plane.client() as client:
            job = await client.jobs.create("crashy", model=local("crash_on_start"), endpoint=ECHO_ROUTES)
            with pytest.raises(JobFailed):
                await job.wait_for("running", timeout=60)
            assert "crashed 3 times while starting" in job.reason
            assert "about to crash" in job.reason
            assert job.restarts == 2
            events = [e["message"] async for e in job.logs() if e["stream"] == "event"]
            assert sum("exited with code 1" in m for m in events) == 3

    run(scenario())


def test_invalid_routes_are_refused_before_sending_and_by_the_server(shared_plane):
    bad = {"routes": [route(), {"verb": "POST", "path": "/x", "file": "predict", "function": "f",
                                "body": [{"name": "a", "type": "string"}]}]}

    async def scenario():
        async with shared_plane.client() as client:
            with pytest.raises(RouteSpecError, match=r"route 2 \(POST /x\): body\[0\].type"):
                await client.jobs.create("bad", model=local("echo"), endpoint=bad)

    run(scenario())
    payload = {"name": "bad", "model": {"source_type": "git", "source_uri": "https://example.invalid/r.git"},
               "endpoint": bad}
    response = shared_plane.api("POST", "/api/jobs", json=payload)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_route"
    assert body["details"] == ["route 2 (POST /x): body[0].type: 'string' is not one of "
                               "str, int, float, bool, dict, list, file"]
    assert shared_plane.api("GET", "/api/jobs").json() == []


@pytest.mark.parametrize("payload, message", [
    ({"type": "training"}, "type: 'training' is not supported"),
    ({"resources": {"cpu_count": 0}},
     "resources.cpu_count: 0 is too small; CPU count must be a whole number, 1 or more"),
    ({"resources": {"gpu_types": ["rtx3090"], "gpu_count": 1}},
     "asks for 1 GPU(s) of type rtx3090 but this machine has 0"),
    ({"resources": {"gpu_types": ["a100"], "gpu_count": 1, "max_price": 0.5}},
     "resources.max_price: 0.5 credits/hour is below the price of a100"),
    ({"environment": {"env": [{"key": "1BAD", "value": "x"}]}}, "environment.env[0].key: '1BAD'"),
    ({"model": {"source_type": "trainml", "source_uri": "nope"}}, "model 'nope' not found"),
    ({"endpoint": {"routes": [route()], "max_queue": -1}}, "endpoint.max_queue: -1"),
    ({"model": {"source_type": "svn", "source_uri": "x"}}, "model.source_type"),
    ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
], ids=["type", "cpu_count", "no-such-gpu", "max_price", "env-key", "stored-model", "max_queue", "source-type",
        "extra-field"])
def test_bad_payloads_are_422_naming_the_field_and_create_nothing(shared_plane, payload, message):
    base = {"name": "x", "model": {"source_type": "git", "source_uri": "https://example.invalid/r.git"},
            "endpoint": {"routes": [route()]}}
    response = shared_plane.api("POST", "/api/jobs", json={**base, **payload})
    assert response.status_code in (404, 422), response.text
    assert message in response.json()["message"]
    assert shared_plane.api("GET", "/api/jobs").json() == []


def test_environment_reaches_the_model_and_cpu_jobs_see_no_gpu(control_plane):
    env_routes = {"routes": [route("/env", "getenv", [{"name": "name", "type": "str"}])]}

    async def scenario():
        async with control_plane.client() as client:
            job = await client.jobs.create("env", model=local("environ"), endpoint=env_routes,
                                           environment={"env": [{"key": "GREETING", "value": "hello"}]},
                                           resources={"cpu_count": 2}, wait=True)
            assert (await job.call("/env", {"name": "GREETING"}))["value"] == "hello"
            assert (await job.call("/env", {"name": "CUDA_VISIBLE_DEVICES"}))["value"] == ""
            assert (await job.call("/env", {"name": "TRAINML_API_TOKEN"}))["value"] is None
            assert job.dict["hourly_rate"] == pytest.approx(0.02)  # 2 CPUs at 0.01
            await job.remove(force=True)

    run(scenario())


def test_gpus_are_handed_out_exclusively_and_jobs_wait_for_them(start_control_plane):
    plane = start_control_plane("--gpus", "0:rtx3090,1:rtx2080ti")
    env_routes = {"routes": [route("/env", "getenv", [{"name": "name", "type": "str"}])]}
    gpu = {"gpu_types": ["rtx3090"], "gpu_count": 1}

    async def scenario():
        async with plane.client() as client:
            first = await client.jobs.create("gpu1", model=local("environ"), endpoint=env_routes, resources=gpu,
                                             wait=True)
            assert (await first.call("/env", {"name": "CUDA_VISIBLE_DEVICES"}))["value"] == "0"
            assert first.dict["gpus"][0]["type"] == "rtx3090"
            assert first.dict["hourly_rate"] == pytest.approx(0.36)  # one CPU and one rtx3090

            second = await client.jobs.create("gpu2", model=local("environ"), endpoint=env_routes, resources=gpu)
            await second.wait_for("waiting for resources", timeout=30)
            time.sleep(0.5)
            assert (await second.refresh()).status == "waiting for resources"

            third = await client.jobs.create("gpu3", model=local("environ"), endpoint=env_routes, resources=gpu)
            await third.wait_for("waiting for resources", timeout=30)
            await third.stop()  # stopping a job that waits gives nothing up, and takes nothing
            assert third.status == "stopped"

            await first.stop()
            await second.wait_for("running", timeout=60)
            assert (await second.call("/env", {"name": "CUDA_VISIBLE_DEVICES"}))["value"] == "0"
            for job in (first, second, third):
                await job.remove(force=True)

    run(scenario())


def test_a_job_stopped_right_after_it_was_created_is_stopped(control_plane):
    async def scenario():
        async with control_plane.client() as client:
            upload = await client.upload(MODELS / "echo")
            payload = {"name": "quick", "model": {"source_type": "local", "upload_id": upload["id"]},
                       "endpoint": ECHO_ROUTES}
            for _ in range(3):
                created = await client.http.request("POST", "/api/jobs", json=payload)
                await client.http.request("POST", f"/api/jobs/{created['id']}/stop")
                job = await client.jobs.get(created["id"])
                await job.wait_for("stopped", timeout=30)
                await job.remove()
                upload = await client.upload(MODELS / "echo")
                payload["model"]["upload_id"] = upload["id"]
            assert control_plane.endpoint_pids() == []

    run(scenario())


def test_wait_for_times_out_and_rejects_unknown_statuses(control_plane):
    from trainml_cli.errors import WaitTimeout

    async def scenario():
        async with control_plane.client() as client:
            job = await client.jobs.create("echo", model=local("echo"), endpoint=ECHO_ROUTES)
            with pytest.raises(UsageError, match="'runing' is not a status to wait for; one of"):
                await job.wait_for("runing")
            await job.wait_for("running", timeout=60)
            started = time.monotonic()
            with pytest.raises(WaitTimeout, match="still running after 0.5s"):
                await job.wait_for("stopping", timeout=0.5)
            assert time.monotonic() - started < 3
            await job.remove(force=True)

    run(scenario())


def test_wait_learns_of_a_status_change_within_a_fraction_of_a_second(control_plane):
    async def scenario():
        async with control_plane.client() as client:
            job = await client.jobs.create("echo", model=local("echo"), endpoint=ECHO_ROUTES, wait=True)
            other = await client.jobs.get(job.id)

            import asyncio

            async def stop_later():
                await asyncio.sleep(0.3)
                await other.stop(wait=False)
                return time.monotonic()

            stopper = asyncio.create_task(stop_later())
            await job.wait_for("stopping", timeout=10)
            seen = time.monotonic()
            assert seen - await stopper < 0.3
            await job.remove(force=True)

    run(scenario())


def test_endpoint_processes_are_process_group_leaders(control_plane):
    import os

    async def scenario():
        async with control_plane.client() as client:
            job = await client.jobs.create("echo", model=local("echo"), endpoint=ECHO_ROUTES,
                                           resources={"cpu_count": 2}, wait=True)
            pid = job.dict["pid"]
            assert os.getpgid(pid) == pid
            # two workers plus their supervisor, all in the job's group
            wait_until(lambda: len([p for p in control_plane.endpoint_pids() if os.getpgid(p) == pid]) >= 3)
            await job.stop()
            assert control_plane.endpoint_pids() == []

    run(scenario())
