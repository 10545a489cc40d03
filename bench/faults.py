"""Fault figures for the README's Supervision section: real control plane, real endpoints, loopback.

    python bench/faults.py

1. kill -9 of the control plane (and its restart) while 4 clients call an endpoint: failed calls.
2. kill -9 of an endpoint under the same load: failed calls and downtime (longest gap between two answers).
3. kill -9 of one of two workers: failed calls.
"""

from __future__ import annotations

import asyncio
import os
import signal
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
        with Load(job["url"]) as load:
            time.sleep(2)
            killed = time.monotonic()
            os.killpg(job["pid"], signal.SIGKILL)
            time.sleep(5)
        print(f"endpoint kill -9: {load.failed} failed of {load.ok + load.failed} calls, "
              f"longest gap between answers {load.longest_gap(killed):.2f}s")
        two = create(plane, "two", resources={"cpu_count": 2})
        with Load(two["url"]) as load:
            time.sleep(2)
            worker = wait_until(lambda: [int(p) for p in os.listdir("/proc") if p.isdigit() and _ppid(int(p)) == two["pid"]])
            os.kill(worker[0], signal.SIGKILL)
            time.sleep(5)
        print(f"worker kill -9 (2 workers): {load.failed} failed of {load.ok + load.failed} calls")
    finally:
        plane.stop()
        kill_everything_under(home)


def _ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rpartition(")")[2].split()[1])
    except OSError:
        return None


if __name__ == "__main__":
    main()
