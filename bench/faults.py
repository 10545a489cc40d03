"""Fault figures for docs/control-plane.md ("What survives what"): real control plane, real endpoints, loopback.

    python bench/faults.py [--kills 5] [--events]

1. kill -9 of the control plane (and its restart) while 4 clients call an endpoint: failed calls.
2. kill -9 of an endpoint (its whole process group) under the same load, KILLS times (default 5): failed calls
   and downtime (longest gap between two answers) of each, and the median downtime.
3. kill -9 of one of two workers: failed calls.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import MODELS, ControlPlane, kill_everything_under, route, wait_until  # noqa: E402

ECHO = {"source_type": "local", "source_uri": str(MODELS / "echo")}


class Load:
    def __init__(self, url: str, clients: int = 4):
        self.url, self.ok, self.failed, self.stamps = url, 0, 0, []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(clients)]
        self._lock = threading.Lock()

    def _loop(self):
        session = requests.Session()
        while not self._stop.is_set():
            try:
                good = session.post(self.url + "/predict", json={"text": "t"}, timeout=10).status_code == 200
            except requests.RequestException:
                good, session = False, requests.Session()
            with self._lock:
                if good:
                    self.ok += 1
                    self.stamps.append(time.monotonic())
                else:
                    self.failed += 1

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def longest_gap(self, after: float) -> float:
        stamps = [s for s in self.stamps if s >= after - 1]
        return max((b - a for a, b in zip(stamps, stamps[1:])), default=0.0)


def create(plane, name, **extra):
    async def go():
        async with plane.client() as client:
            return (await client.jobs.create(name, model=ECHO, endpoint={"routes": [route()]}, wait=True, **extra)).dict
    return asyncio.run(go())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=5, help="endpoint kill -9 runs (the median downtime is printed)")
    parser.add_argument("--events", action="store_true", help="after each endpoint kill, its platform events with "
                        "their times: where the downtime goes (death seen, restart, start-up)")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp()) / "home"
    plane = ControlPlane(home).start()
    try:
        job = create(plane, "one")
        with Load(job["url"]) as load:
            time.sleep(2)
            plane.kill(signal.SIGKILL)
            time.sleep(3)
            plane.start()
            time.sleep(3)
        print(f"control plane kill -9 + restart: {load.failed} failed of {load.ok + load.failed} calls")
        gaps = []
        for run in range(1, args.kills + 1):
            # A job per run: a second crash within a minute waits out a doubled backoff, which is not what
            # this measures.
            victim = create(plane, f"kill-{run}")
            pid = victim["pid"]
            with Load(victim["url"]) as load:
                time.sleep(2)
                killed = time.monotonic()
                os.killpg(pid, signal.SIGKILL)
                time.sleep(5)
            gaps.append(load.longest_gap(killed))
            print(f"endpoint kill -9 ({run}/{args.kills}): {load.failed} failed of {load.ok + load.failed} calls, "
                  f"longest gap between answers {gaps[-1]:.2f}s")
            if args.events:
                print_events(home, victim["id"], time.time() - (time.monotonic() - killed))
            plane.api("DELETE", f"/api/jobs/{victim['id']}", params={"force": "true"})
        print(f"endpoint kill -9: median gap {statistics.median(gaps):.2f}s over {len(gaps)} runs "
              f"(min {min(gaps):.2f}s, max {max(gaps):.2f}s)")
        two = create(plane, "two", resources={"cpu_count": 2})
        with Load(two["url"]) as load:
            time.sleep(2)
            worker = wait_until(lambda: [int(p) for p in os.listdir("/proc")
                                         if p.isdigit() and _ppid(int(p)) == two["pid"]])
            os.kill(worker[0], signal.SIGKILL)
            time.sleep(5)
        print(f"worker kill -9 (2 workers): {load.failed} failed of {load.ok + load.failed} calls")
    finally:
        plane.stop()
        kill_everything_under(home)


def print_events(home: Path, job_id: str, killed: float) -> None:
    print(f"    {killed:.3f} killed")
    db = sqlite3.connect(home / "trainml.db")
    try:
        for when, stream, message in db.execute("SELECT time, stream, message FROM logs WHERE job_id = ? AND "
                                                "stream != 'stdout' AND time >= ? ORDER BY id", (job_id, killed)):
            print(f"    {when:.3f} +{when - killed:.3f}s {stream}: {message}")
    finally:
        db.close()


def _ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rpartition(")")[2].split()[1])
    except OSError:
        return None


if __name__ == "__main__":
    main()
