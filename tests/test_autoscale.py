"""Autoscaling on the local backend with real processes: an endpoint with --min-replicas 0 lets its workers go
after the idle timeout and wakes on the next call, holding the calls meanwhile (also after a control plane died
by kill -9); one with min 1 adds a replica under sustained load and removes it once the load is gone."""

from __future__ import annotations

import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from conftest import MODELS, run, wait_until
from trainml_cli.limits import cpu_count

BODY = [{"name": "text", "type": "str"},
        {"name": "seconds", "type": "float", "optional": True, "default_value": "0"}]
ROUTE = {"verb": "POST", "path": "/predict", "file": "predict", "function": "predict", "body": BODY}


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def live_workers(record: Path) -> set[int]:
    """Processes that imported the model (it writes its pid at import) and still run."""
    return {int(p.name) for p in record.iterdir() if alive(int(p.name))}


def create(plane, record: Path, name: str = "scaled", resources: dict | None = None, **scaling) -> dict:
    async def scenario():
        async with plane.client() as client:
            job = await client.jobs.create(
                name, model={"source_type": "local", "source_uri": str(MODELS / "pid_record")},
                endpoint={"routes": [ROUTE], **scaling}, **({"resources": resources} if resources else {}),
                environment={"env": [{"key": "PID_RECORD_DIR", "value": str(record)}]})
            await job.wait_for("running", timeout=120)
            return job.dict

    return run(scenario())


def pss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Pss:")) / 1024


def job_record(plane, job_id: str) -> dict:
    return plane.api("GET", f"/api/jobs/{job_id}").json()


def call(url: str, seconds: float = 0.0) -> requests.Response:
    return requests.post(url + "/predict", json={"text": "x", "seconds": seconds}, timeout=150)


def test_scaled_to_zero_after_the_idle_timeout_and_woken_by_calls_held_meanwhile(start_control_plane, tmp_path):
    plane = start_control_plane()
    record = tmp_path / "pids"
    record.mkdir()
    job = create(plane, record, min_replicas=0, max_replicas=1, idle_timeout=3)
    url = job["url"]
    assert call(url).status_code == 200
    wait_until(lambda: not live_workers(record), timeout=60, message="every worker to exit after the idle timeout")

    ping = requests.get(url + "/ping", timeout=10)
    assert ping.status_code == 200 and ping.json()["status"] == "scaled_to_zero"
    assert not live_workers(record)  # a health check does not wake it
    # The control plane reads the replicas from the endpoint every few seconds: the one stopping goes at the next.
    shown = wait_until(lambda: (r := job_record(plane, job["id"]))["replicas"] == [] and r, timeout=30,
                       message="job get to show no replica")
    assert shown["status"] == "running"
    # What holds the socket at zero is a small process (runtime/dormant.py, about 5 MiB; the leader was 20)
    wait_until(lambda: pss_mib(shown["pid"]) < 15, timeout=30, message="the endpoint's process to shrink at zero")

    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: call(url), range(5)))
    assert [a.status_code for a in answers] == [200] * 5
    assert len({a.json()["pid"] for a in answers}) == 1 and live_workers(record)
    shown = wait_until(lambda: (r := job_record(plane, job["id"]))["replicas"] and r, timeout=10,
                       message="job get to show the woken replica")
    assert shown["scale"]["cold_start_ms"] > 0
    metrics = plane.api("GET", f"/api/jobs/{job['id']}/metrics").json()
    assert "cold_start_ms" in str(metrics)
    # The log is read from the endpoint's output files as they grow: under load the lines may come a moment later.
    wait_until(lambda: all(line in plane.api("GET", f"/api/jobs/{job['id']}/logs").text
                           for line in ("scaled to 0 replicas", "cold start")),
               timeout=30, message="the log to say it scaled to zero and how long the cold start took")


def test_a_control_plane_killed_while_scaled_to_zero_leaves_an_endpoint_that_still_wakes(start_control_plane,
                                                                                        tmp_path):
    plane = start_control_plane()
    record = tmp_path / "pids"
    record.mkdir()
    job = create(plane, record, min_replicas=0, max_replicas=1, idle_timeout=3)
    wait_until(lambda: not live_workers(record), timeout=60, message="every worker to exit after the idle timeout")
    plane.kill(signal.SIGKILL)
    answer = call(job["url"])
    assert answer.status_code == 200 and answer.json()["pid"] in live_workers(record)


def test_a_replica_is_added_under_load_and_removed_after_the_idle_timeout(start_control_plane, tmp_path):
    high = min(3, cpu_count())
    if high < 2:
        import pytest

        pytest.skip("one CPU: no room for a second replica")
    plane = start_control_plane()
    record = tmp_path / "pids"
    record.mkdir()
    job = create(plane, record, min_replicas=1, max_replicas=high, max_concurrency=2, upscale_delay=1,
                 idle_timeout=3)
    url = job["url"]
    first = live_workers(record)
    assert len(first) == 1
    pids: set[int] = set()
    failures, answers = [], []
    stop = threading.Event()

    def load():  # keep-alive callers: each keeps its connection unless told to close it
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    response = session.post(url + "/predict", json={"text": "x", "seconds": 0.2}, timeout=150)
                    (answers if response.status_code == 200 else failures).append(response.status_code)
                    if response.status_code == 200:
                        pids.add(response.json()["pid"])
                except requests.RequestException as exc:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=load, daemon=True) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(live_workers(record)) >= 2, timeout=30, message="a second replica under load")
        # The callers already connected are handed over too (connections.shed), not only new connections.
        wait_until(lambda: pids - first, timeout=30, message="the second replica answering the keep-alive callers")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not failures
    wait_until(lambda: len(live_workers(record)) == 1, timeout=60, message="scaling back after the idle timeout")
    log = plane.api("GET", f"/api/jobs/{job['id']}/logs").text
    assert "scaling to 2 replicas" in log and "scaling to 1 replicas" in log


def test_a_job_at_zero_gives_its_gpu_back_and_a_call_waits_for_it_then_503s_naming_why(start_control_plane,
                                                                                       tmp_path):
    plane = start_control_plane("--gpus", "0:rtx3090")
    gpu = {"gpu_types": ["rtx3090"], "gpu_count": 1}
    record = tmp_path / "pids"
    record.mkdir()
    job = create(plane, record, resources=gpu, min_replicas=0, max_replicas=1, idle_timeout=3, cold_start_timeout=8)
    assert [g["index"] for g in job["gpus"]] == ["0"]
    wait_until(lambda: not live_workers(record), timeout=60, message="every worker to exit after the idle timeout")
    wait_until(lambda: job_record(plane, job["id"])["gpus"] == [], timeout=30, message="its GPU back to the pool")

    other = create(plane, tmp_path, name="other", resources=gpu)  # takes the GPU the sleeping job gave back
    assert [g["index"] for g in other["gpus"]] == ["0"]
    answer = call(job["url"])
    assert answer.status_code == 503 and answer.headers["retry-after"]
    assert "GPU" in answer.json()["message"] and "--cold-start-timeout" in answer.json()["message"]
    assert not live_workers(record)

    plane.api("POST", f"/api/jobs/{other['id']}/stop").raise_for_status()
    wait_until(lambda: job_record(plane, other["id"])["status"] == "stopped", timeout=60, message="the other job")
    answer = call(job["url"])  # the GPU is free again: handed back, and the call served on it
    assert answer.status_code == 200, (answer.text, plane.api("GET", f"/api/jobs/{job['id']}/logs").text[-3000:])
    assert answer.json()["pid"] in live_workers(record)
    assert [g["index"] for g in job_record(plane, job["id"])["gpus"]] == ["0"]
