"""Create to running: `job create endpoint` through the SDK until the job's URL answers, against a bare FastAPI
app's launch until it answers, in the same run.

    python bench/create.py [--rounds 7] [--events]

A real control plane (and every endpoint it starts) on core 0; this process (the SDK, the probes) on core 1. Each
round, taking turns:

- trainml: `TrainML.jobs.create` of a job without packages (a local folder: packed, uploaded, unpacked, the
  control plane's own interpreter), from the call until `POST /predict` on the job's URL first answers 200 (and,
  apart, until the job's status is running, which `trainml job create endpoint` waits for); the job is removed
  after;
- FastAPI: `uvicorn bench.fastapi_app:app` launched on core 0, from the launch until `POST /predict` first answers
  200 (the same function, the same body).

Both are probed every PROBE seconds (a refused or 503 call is retried), so each figure is late by at most that.
--events prints the job's platform events with their times since the create call: where create's time goes.
Target (issue 22): create at most 1.0x the bare launch (medians of the rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import LOAD_CORE, ROOT, SERVER_CORE, free_port, pinned

sys.path.insert(0, str(ROOT / "tests"))
from conftest import ControlPlane, kill_everything_under, route  # noqa: E402
from trainml_cli import TrainML  # noqa: E402

PROBE = 0.005
BODY = b'{"text": "hello world", "n": 3}'
ROUTE = {**route(body=[{"name": "text", "type": "str"}, {"name": "n", "type": "int"}]), "positional": True}
TIMEOUT = 60.0


async def answers(port: int) -> bool:
    """True when POST /predict answers 200 (one connection, closed after)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    try:
        writer.write(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY)
        line = await asyncio.wait_for(reader.readline(), TIMEOUT)
        return line.split()[1:2] == [b"200"]
    except (OSError, asyncio.TimeoutError, IndexError):
        return False
    finally:
        writer.close()


async def until_answers(port: int, began: float) -> float:
    while not await answers(port):
        if time.monotonic() - began > TIMEOUT:
            raise SystemExit(f"nothing answered on port {port} in {TIMEOUT:g} s")
        await asyncio.sleep(PROBE)
    return time.monotonic() - began


async def create_once(client: TrainML, folder: Path, name: str) -> tuple[float, float, str]:
    """Seconds from the create call until the job's URL answers, and until its status is running (what `trainml
    job create endpoint` waits for before it prints the URL); the job's id."""
    began = time.monotonic()
    job = await client.jobs.create(name, model={"source_type": "local", "source_uri": str(folder)},
                                   endpoint={"routes": [ROUTE]})
    running = asyncio.create_task(until_running(await client.jobs.get(job.id), began))
    while not job.url:  # the URL is known once the control plane has bound the endpoint's socket
        if time.monotonic() - began > TIMEOUT:
            raise SystemExit(f"job {name} has no URL after {TIMEOUT:g} s: {job.dict.get('status')}")
        await asyncio.sleep(PROBE)
        job = await client.jobs.get(job.id)
    seconds = await until_answers(int(job.url.rsplit(":", 1)[1]), began)
    return seconds, await running, job.id


async def until_running(job, began: float) -> float:
    await job.wait_for("running", TIMEOUT)  # a long poll: the control plane answers at the change
    return time.monotonic() - began


async def launch_once() -> float:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "bench.fastapi_app:app", "--port", str(port), "--log-level",
               "warning", "--no-access-log"]
    began = time.monotonic()
    process = subprocess.Popen(pinned(command, SERVER_CORE), cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        return await until_answers(port, began)
    finally:
        process.terminate()
        process.wait(10)


def print_events(home: Path, job_id: str, began: float) -> None:
    db = sqlite3.connect(home / "trainml.db")
    try:
        for when, message in db.execute("SELECT time, message FROM logs WHERE job_id = ? AND stream NOT IN "
                                        "('stdout', 'stderr') ORDER BY id", (job_id,)):
            print(f"    +{when - began:6.3f}s {message}")
    finally:
        db.close()


async def bench(plane: ControlPlane, folder: Path, args) -> None:
    creates, runnings, launches = [], [], []
    async with TrainML(settings=plane.settings) as client:
        await create_once(client, folder, "warm")  # the control plane's first create imports what it needs
        await client.jobs.remove("warm")
        for number in range(args.rounds):
            launches.append(await launch_once())
            began_wall = time.time()
            seconds, until_running, job_id = await create_once(client, folder, f"round{number}")
            creates.append(seconds)
            runnings.append(until_running)
            print(f"round {number + 1}: create {seconds:.3f} s (running {until_running:.3f} s), FastAPI launch "
                  f"{launches[-1]:.3f} s: {seconds / launches[-1]:.2f}x; load average {os.getloadavg()[0]:.2f}",
                  flush=True)
            if args.events:
                print_events(plane.home, job_id, began_wall)
            await client.jobs.remove(job_id)
    ratios = [c / f for c, f in zip(creates, launches)]
    print(f"median over {args.rounds} rounds: create {statistics.median(creates):.3f} s, FastAPI launch "
          f"{statistics.median(launches):.3f} s: {statistics.median(creates) / statistics.median(launches):.2f}x "
          f"(per round: {', '.join(f'{r:.2f}' for r in ratios)}; target at most 1.0x)")
    print(f"until the job's status is running: median {statistics.median(runnings):.3f} s, "
          f"{statistics.median(runnings) / statistics.median(launches):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--events", action="store_true", help="each create's platform events, timed")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp()) / "home"
    folder = home.parent / "model"
    folder.mkdir()
    (folder / "predict.py").write_text((ROOT / "bench" / "model" / "predict.py").read_text())
    # The control plane and the endpoints it starts inherit core 0; this process (the SDK, the probes) core 1.
    os.sched_setaffinity(0, {int(SERVER_CORE)})
    plane = ControlPlane(home).start()
    os.sched_setaffinity(0, {int(LOAD_CORE)})
    try:
        asyncio.run(bench(plane, folder, args))
    finally:
        plane.stop()
        kill_everything_under(home)


if __name__ == "__main__":
    main()
