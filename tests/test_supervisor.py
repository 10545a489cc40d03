"""Supervision with real processes: an endpoint killed during traffic comes back on the same URL; a control plane
killed with -9 leaves its endpoints serving and the next one adopts them (or restarts those that died meanwhile);
leftovers are reaped."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from conftest import MODELS, route, run, wait_until
from trainml_cli.errors import Conflict, JobFailed
from trainml_cli.server.processes import process_start_time, reap_orphans
from trainml_cli.server.states import JobStatus, can_move, transition

ECHO = {"source_type": "local", "source_uri": str(MODELS / "echo")}
ROUTES = {"routes": [route()]}


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


class Traffic:
    """Posts to an endpoint from a thread until stopped, counting answers and failures."""

    def __init__(self, url: str):
        self.url = url
        self.ok = 0
        self.failed = 0
        self.last_ok = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        session = requests.Session()
        while not self._stop.is_set():
            try:
                response = session.post(self.url + "/predict", json={"text": "t"}, timeout=10)
                if response.status_code == 200:
                    self.ok += 1
                    self.last_ok = time.monotonic()
                else:
                    self.failed += 1
            except requests.RequestException:
                self.failed += 1
                session = requests.Session()
            time.sleep(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(15)


def test_an_endpoint_killed_during_traffic_serves_again_on_the_same_url(control_plane):
    async def scenario():
        async with control_plane.client() as client:
            job = await client.jobs.create("echo", model=ECHO, endpoint=ROUTES, wait=True)
            url, pid = job.url, job.dict["pid"]
            with Traffic(url) as traffic:
                wait_until(lambda: traffic.ok >= 20, message="traffic before the kill")
                os.kill(pid, signal.SIGKILL)
                killed = time.monotonic()
                wait_until(lambda: traffic.last_ok > killed + 0.2, timeout=20, message="answers after the kill")
                before = traffic.ok
                wait_until(lambda: traffic.ok >= before + 20, message="steady traffic after the restart")
            await job.refresh()
            assert job.status == "running"
            assert job.url == url
            assert job.restarts == 1
            assert job.dict["pid"] != pid and alive(job.dict["pid"])
            events = [e["message"] async for e in job.logs() if e["stream"] == "event"]
            assert f"endpoint process {pid} was killed by SIGKILL" in events
            # A serving endpoint's crash restarts it at once: the downtime is its start-up, no backoff.
            assert "restarting at once (restart 1)" in events
            # Requests that arrived while it was down waited in the socket's backlog instead of being refused.
            assert traffic.failed <= 8, traffic.failed
            # A second crash within a minute is a crash loop in the making: it backs off.
            os.kill(job.dict["pid"], signal.SIGKILL)
            deadline = time.monotonic() + 20
            while job.restarts < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                await job.refresh()
            events = [e["message"] async for e in job.logs() if e["stream"] == "event"]
            assert "restarting in 0.5s (restart 2)" in events
            await job.remove(force=True)

    run(scenario())


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


def test_a_killed_worker_fails_only_the_calls_it_was_running(control_plane):
    async def create():
        async with control_plane.client() as client:
            return (await client.jobs.create("two", model=ECHO, endpoint=ROUTES, resources={"cpu_count": 2},
                                             wait=True)).dict

    job = run(create())
    workers = wait_until(lambda: len(children(job["pid"])) == 2 and children(job["pid"]), timeout=30,
                         message="two workers")
    clients = [Traffic(job["url"]) for _ in range(3)]
    for traffic in clients:
        traffic.__enter__()
    try:
        wait_until(lambda: all(t.ok >= 20 for t in clients), timeout=20, message="traffic to flow")
        os.kill(workers[0], signal.SIGKILL)
        served = sum(t.ok for t in clients)
        wait_until(lambda: sum(t.ok for t in clients) >= served + 300, timeout=30, message="calls after the kill")
        replaced = wait_until(lambda: len(children(job["pid"])) == 2 and workers[0] not in children(job["pid"]),
                              timeout=20, message="the worker to be replaced")
        assert replaced
    finally:
        for traffic in clients:
            traffic.__exit__(None, None, None)
    # Each client has one call in flight at most: only those can have been the dead worker's.
    assert sum(t.failed for t in clients) <= len(clients), [t.failed for t in clients]
    assert alive(job["pid"])  # the endpoint itself never went down


def test_a_hung_endpoint_is_killed_and_started_again(start_control_plane):
    plane = start_control_plane("--unresponsive-after", "1.5")

    async def scenario():
        async with plane.client() as client:
            job = await client.jobs.create("echo", model=ECHO, endpoint=ROUTES, wait=True)
            pid = job.dict["pid"]
            os.kill(pid, signal.SIGSTOP)  # alive, holding its port, answering nothing
            try:
                await asyncio.sleep(1)
                assert (await job.refresh()).status == "running"
                await job.wait_for("starting", timeout=20)
                await job.wait_for("running", timeout=30)
            finally:
                if alive(pid):
                    os.kill(pid, signal.SIGCONT)
            assert job.restarts == 1 and job.dict["pid"] != pid and not alive(pid)
            assert await job.call("/predict", {"text": "unstuck"}) == {"echo": "unstuck"}
            events = [e["message"] async for e in job.logs() if e["stream"] == "event"]
            assert f"endpoint process {pid} has not answered /ping for 1.5s; restarting it" in events
            await job.remove(force=True)

    run(scenario())


def test_stopping_lets_calls_finish_within_the_grace_period_then_kills(start_control_plane, tmp_path):
    plane = start_control_plane("--stop-grace", "2")
    routes = {"routes": [route("/sleep", "sleep", [{"name": "seconds", "type": "float"}]),
                         route("/wait", "wait", [{"name": "gate", "type": "str"}])]}
    blocking = {"source_type": "local", "source_uri": str(MODELS / "blocking")}

    def call_in_background(url, path, body):
        result = {}

        def go():
            try:
                result["response"] = requests.post(url + path, json=body, timeout=30)
            except requests.RequestException as exc:
                result["error"] = exc

        thread = threading.Thread(target=go)
        thread.start()
        return thread, result

    async def scenario():
        async with plane.client() as client:
            job = await client.jobs.create("blocking", model=blocking, endpoint=routes, wait=True)
            thread, result = call_in_background(job.url, "/sleep", {"seconds": 0.8})
            await asyncio.sleep(0.3)
            await job.stop()  # SIGTERM: the call in flight still gets its answer
            thread.join(10)
            assert result["response"].json() == {"slept": 0.8}

            await job.start()
            await job.wait_for("running", timeout=60)
            thread, result = call_in_background(job.url, "/wait", {"gate": str(tmp_path / "never")})
            await asyncio.sleep(0.3)
            started = time.monotonic()
            await job.stop()  # this call never ends: killed after the grace period
            assert 1.5 < time.monotonic() - started < 6
            thread.join(10)
            assert "error" in result
            events = [e["message"] async for e in job.logs() if e["stream"] == "event"]
            assert any(m.endswith("still running 2s after SIGTERM; sending SIGKILL") for m in events)
            await job.remove()

    run(scenario())


def test_a_killed_control_plane_leaves_its_endpoints_serving_and_the_next_one_adopts_them(start_control_plane):
    plane = start_control_plane()

    async def before():
        async with plane.client() as client:
            up = await client.jobs.create("up", model=ECHO, endpoint=ROUTES, wait=True)
            down = await client.jobs.create("down", model=ECHO, endpoint=ROUTES, wait=True)
            await down.stop()
            failed = await client.jobs.create("failed",
                                              model={"source_type": "local",
                                                     "source_uri": str(MODELS / "import_error")},
                                              endpoint=ROUTES)
            with pytest.raises(JobFailed):
                await failed.wait_for("running", timeout=60)
            return up.dict, down.dict, failed.dict

    up, down, failed = run(before())
    with Traffic(up["url"]) as traffic:
        wait_until(lambda: traffic.ok >= 20, timeout=20, message="traffic to flow")
        plane.kill(signal.SIGKILL)
        served_before = traffic.ok
        # Nothing manages it now; it serves on, and what it prints meanwhile is kept for the next control plane.
        answer = requests.post(up["url"] + "/predict", json={"text": "while-down"}, timeout=10)
        assert answer.json() == {"echo": "while-down"}
        wait_until(lambda: traffic.ok >= served_before + 50, timeout=20, message="calls while no control plane runs")
        plane.start()
        wait_until(lambda: traffic.ok >= served_before + 100, timeout=20, message="calls after the restart")
    assert traffic.failed == 0, f"{traffic.failed} of {traffic.ok + traffic.failed} calls failed"
    assert alive(up["pid"])

    async def after():
        async with plane.client() as client:
            jobs = {j.name: j for j in await client.jobs.list()}
            assert sorted(jobs) == ["down", "failed", "up"]
            adopted = jobs["up"]
            assert (adopted.status, adopted.url, adopted.dict["pid"], adopted.restarts) == (
                "running", up["url"], up["pid"], 0)
            assert jobs["down"].status == "stopped" and jobs["down"].dict["created"] == down["created"]
            assert jobs["failed"].status == "failed" and jobs["failed"].reason == failed["reason"]
            messages = [e["message"] async for e in adopted.logs()]
            assert "echo model loaded" in messages  # the first control plane's lines are kept
            assert "predict called with while-down" in messages  # printed while no control plane ran
            assert messages.count("predict called with while-down") == 1
            assert any(m.startswith("control plane restarted; the endpoint "
                                    "kept serving (it was running)") for m in messages)
            assert adopted.dict["run_time"] >= up["run_time"]
            # It goes on logging and supervising as if this control plane had started it.
            await adopted.call("/predict", {"text": "after"})
            await _until_logged(adopted, "predict called with after")
            os.kill(up["pid"], signal.SIGKILL)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                await adopted.refresh()
                if adopted.status == "running" and adopted.dict["pid"] != up["pid"]:
                    break
                await asyncio.sleep(0.1)
            assert (adopted.status, adopted.url, adopted.restarts) == ("running", up["url"], 1)
            assert await adopted.call("/predict", {"text": "again"}) == {"echo": "again"}
            await adopted.stop()
            await adopted.wait_for("stopped", timeout=30)
            assert not alive(adopted.dict["pid"] or up["pid"]) and plane.endpoint_pids() == []
            for job in jobs.values():
                await job.remove(force=True)

    run(after())


async def _until_logged(job, line: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if line in [e["message"] async for e in job.logs(tail=50)]:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{line!r} never reached the log")


def test_an_endpoint_that_died_while_no_control_plane_ran_is_started_again(start_control_plane):
    plane = start_control_plane()

    async def create():
        async with plane.client() as client:
            return (await client.jobs.create("echo", model=ECHO, endpoint=ROUTES, wait=True)).dict

    job = run(create())
    plane.kill(signal.SIGKILL)
    os.killpg(job["pid"], signal.SIGKILL)
    wait_until(lambda: not alive(job["pid"]), timeout=10, message="the endpoint to die")
    with pytest.raises(requests.ConnectionError):
        requests.post(job["url"] + "/predict", json={"text": "x"}, timeout=5)
    plane.start()

    async def resumed():
        async with plane.client() as client:
            again = await client.jobs.get(job["id"])
            await again.wait_for("running", timeout=60)
            assert (again.url, again.restarts) == (job["url"], 1)
            assert again.dict["pid"] != job["pid"]
            assert await again.call("/predict", {"text": "back"}) == {"echo": "back"}
            messages = [e["message"] async for e in again.logs()]
            assert any("resuming the job (it was running; its endpoint process had exited)" in m for m in messages)
            await again.remove(force=True)

    run(resumed())


def test_a_stopped_control_plane_stops_its_endpoints_and_resumes_them(start_control_plane):
    plane = start_control_plane()

    async def create():
        async with plane.client() as client:
            return (await client.jobs.create("echo", model=ECHO, endpoint=ROUTES, wait=True)).dict

    job = run(create())
    plane.stop()  # SIGTERM: graceful
    assert not alive(job["pid"])
    assert not (plane.home / "server.json").exists()
    plane.start()

    async def resumed():
        async with plane.client() as client:
            again = await client.jobs.get(job["id"])
            await again.wait_for("running", timeout=60)
            assert again.url == job["url"]

    run(resumed())


def test_two_control_planes_cannot_share_a_home(control_plane):
    result = subprocess.run([sys.executable, "-m", "trainml_cli.server", "--home", str(control_plane.home)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 75  # EXIT_ALREADY_RUNNING: what autostart waits through
    assert f"a control plane already runs for {control_plane.home} at {control_plane.url}" in result.stderr
    assert requests.get(control_plane.url + "/api/health", timeout=5).ok


def test_leftover_process_groups_are_reaped():
    leader = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"],
                              start_new_session=True)
    wait_until(lambda: len([p for p in os.listdir("/proc") if p.isdigit() and _pgrp(int(p)) == leader.pid]) >= 2)
    started = process_start_time(leader.pid)
    assert run(reap_orphans(leader.pid, started, grace=5)) is True
    leader.wait(5)
    assert [p for p in os.listdir("/proc") if p.isdigit() and _pgrp(int(p)) == leader.pid and alive(int(p))] == []
    # A pid recorded with another start time is somebody else's now: left alone.
    other = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert run(reap_orphans(other.pid, process_start_time(other.pid) - 1000)) is True  # started later: still ours
        other.wait(5)
        survivor = subprocess.Popen(["sleep", "30"], start_new_session=True)
        assert run(reap_orphans(survivor.pid, process_start_time(survivor.pid) + 1000)) is False
        assert survivor.poll() is None
        survivor.kill()
        survivor.wait()
    finally:
        if other.poll() is None:
            other.kill()


def _pgrp(pid: int):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rpartition(")")[2].split()[2])
    except OSError:
        return None


def test_status_transitions_refuse_illegal_moves():
    S = JobStatus
    assert transition(S.NEW, S.WAITING_DOWNLOAD) is S.WAITING_DOWNLOAD
    assert transition("running", "starting") is S.STARTING  # a restart
    assert can_move(S.STARTING, S.STARTING)
    for current, target in [(S.STOPPED, S.RUNNING), (S.FAILED, S.RUNNING), (S.RUNNING, S.NEW), (S.STOPPING, S.RUNNING),
                            (S.NEW, S.RUNNING), (S.STOPPED, S.STOPPED)]:
        with pytest.raises(Conflict, match=f"is {current.value}; it cannot become {target.value}"):
            transition(current, target)
    assert {s for s in S if s.is_live} == {S.NEW, S.WAITING_DOWNLOAD, S.WAITING_RESOURCES, S.STARTING, S.RUNNING}
    assert [s.value for s in S] == ["new", "waiting for data/model download", "waiting for resources", "starting",
                                    "running", "stopping", "stopped", "failed"]


def test_a_job_comes_out_of_the_store_decoded_and_a_status_outside_the_enum_never_goes_in(tmp_path):
    from trainml_cli.server.jobrecord import JobRecord
    from trainml_cli.server.store import Store

    store = Store(tmp_path / "trainml.db")
    store.insert_job(JobRecord(id="j1", name="echo", status=JobStatus.NEW, spec={"type": "endpoint"}, created=1.0,
                               updated=1.0))
    store.update_job("j1", status=JobStatus.RUNNING, gpus=[{"index": 0}], pid=42)
    job = store.job("j1")
    assert (job.status, job.gpus, job.pid, job.source, job.restarts) == (JobStatus.RUNNING, [{"index": 0}], 42, {}, 0)
    assert job.status is JobStatus.RUNNING and store.jobs_named("echo") == [job] == store.jobs()
    with pytest.raises(ValueError):
        store.update_job("j1", status="runing")  # a typo never reaches the table, where it would break every read
    assert store.job("j1").status is JobStatus.RUNNING
    store.close()
