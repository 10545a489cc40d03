"""Updating a live endpoint under steady load: failed calls, p99 during the switches, time to the new code.

    python bench/update.py [--before 8] [--creates 3] [--events]

A real control plane (and every endpoint it starts) pinned to core 0; the load and the CLI on core 1. The model
answers its version. 16 connections call it in a closed loop, 8 keep-alive and 8 opening a connection per call
(asyncio in this process, plain HTTP/1.1: no client library's retries hide a failure). Then:

1. p99 over --before seconds of that load: the baseline.
2. `trainml job create endpoint` of the same model, --creates times under the same load (a job of its own each
   time, removed after): the time until the command returned and a call answered.
3. `trainml job update` with new code, 3 times, then `trainml job rollback`, under the same load: failed calls, p99
   of the calls sent while each command ran, and the time until the new code answered (and until the command
   returned), against create's median.

--events prints the job's platform events of each step with their times since the command began: where an
update's time goes.

Targets (issue 20): 0 failed calls; p99 during the switches at most 2x before; update at most 1.2x create.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness import LOAD_CORE, SERVER_CORE

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import ControlPlane, kill_everything_under, route  # noqa: E402

CONNECTIONS = 16
CALL_TIMEOUT = 30.0
BODY = b'{"text": "hello"}'


def write_model(folder: Path, version: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "predict.py").write_text(f"def predict(text):\n    return {{'version': {version}, 'echo': text}}\n")
    return folder


class Load:
    """CONNECTIONS callers in a closed loop; each call recorded as (sent, seconds, version), failures apart."""

    def __init__(self, port: int):
        self.port = port
        self.calls: list[tuple[float, float, int]] = []
        self.failures: list[str] = []
        self.stop = asyncio.Event()
        self.request = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n" % len(BODY))

    async def run(self) -> None:
        await asyncio.gather(*(self._caller(keep_alive=i % 2 == 0) for i in range(CONNECTIONS)))

    async def _caller(self, keep_alive: bool) -> None:
        reader = writer = None
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                close = b"" if keep_alive else b"Connection: close\r\n"
                writer.write(self.request + close + b"\r\n" + BODY)
                status, closing, body = await asyncio.wait_for(_response(reader), CALL_TIMEOUT)
                if status != 200:
                    self.failures.append(f"{status} {body[:200]!r}")
                else:
                    self.calls.append((sent, time.monotonic() - sent, json.loads(body)["version"]))
                if closing or not keep_alive:  # the old revision says Connection: close once it drains
                    writer.close()
                    writer = None
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                if writer is not None:
                    writer.close()
                writer = None
        if writer is not None:
            writer.close()

    def p99_ms(self, windows: list[tuple[float, float]]) -> float:
        latencies = [s for sent, s, _ in self.calls if any(a <= sent <= b for a, b in windows)]
        return statistics.quantiles(latencies, n=100)[98] * 1000 if len(latencies) > 1 else float("nan")

    def first_answer(self, version: int, since: float) -> float | None:
        """When a call sent after `since` was first answered by `version`."""
        times = [sent + s for sent, s, v in self.calls if v == version and sent >= since]
        return min(times) if times else None


async def _response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read()
    return status, headers.get("connection", "").lower() == "close", body


async def trainml(plane: ControlPlane, *argv: str) -> tuple[int, str]:
    env = {**os.environ, "TRAINML_HOME": str(plane.home), "TRAINML_API_URL": plane.url, "NO_COLOR": "1"}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "trainml_cli", *argv, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), 600)
    return process.returncode, out.decode()


def must(result: tuple[int, str], what: str) -> str:
    code, out = result
    if code != 0:
        raise SystemExit(f"{what} failed ({code}):\n{out}")
    return out


async def call_version(port: int) -> int | None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY)
        status, _, body = await asyncio.wait_for(_response(reader), CALL_TIMEOUT)
        writer.close()
        return json.loads(body)["version"] if status == 200 else None
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError):
        return None


async def bench(plane: ControlPlane, folder: Path, args) -> None:
    routes = json.dumps(route())
    must(await trainml(plane, "job", "create", "endpoint", "live", "--model-dir", str(write_model(folder, 1)),
                       "--route", routes), "job create")
    job = plane.api("GET", "/api/jobs/live").json()
    port = int(job["url"].rsplit(":", 1)[1])
    load = Load(port)
    runner = asyncio.create_task(load.run())
    try:
        await asyncio.sleep(1.0)  # connections open, code warm
        before = (time.monotonic(), time.monotonic() + args.before)
        await asyncio.sleep(args.before)

        creates = []
        for n in range(1, args.creates + 1):
            twin = write_model(folder.parent / f"twin{n}", 100 + n)
            began = time.monotonic()
            out = must(await trainml(plane, "job", "create", "endpoint", f"twin{n}", "--model-dir", str(twin),
                                     "--route", routes), "job create")
            twin_port = int(out.split("Endpoint is running at: ")[1].split()[0].rsplit(":", 1)[1])
            while await call_version(twin_port) != 100 + n:
                await asyncio.sleep(0.01)
            creates.append(time.monotonic() - began)
            must(await trainml(plane, "job", "remove", f"twin{n}", "--force"), "job remove")
        create = statistics.median(creates)

        steps = [("update", 2), ("update", 3), ("update", 4), ("rollback", 3)]
        windows, rows = [], []
        for kind, version in steps:
            old_pid = plane.api("GET", "/api/jobs/live").json()["pid"]
            argv = ["job", "update", "live", "--model-dir", str(write_model(folder, version))] if kind == "update" \
                else ["job", "rollback", "live"]
            began, began_wall = time.monotonic(), time.time()
            out = must(await trainml(plane, *argv), f"job {kind}")
            returned = time.monotonic()
            answered = load.first_answer(version, began)
            windows.append((began, returned))
            stopped = not os.path.exists(f"/proc/{old_pid}")
            rows.append((kind, version, answered - began if answered else float("nan"), returned - began,
                         load.p99_ms([(began, returned)]), stopped, began_wall))
            if f"serving at: {job['url']}" not in out and "serving again" not in out:
                raise SystemExit(f"job {kind} did not say it serves at {job['url']}:\n{out}")
        await asyncio.sleep(1.0)
    finally:
        load.stop.set()
        await runner

    p99_before, p99_during = load.p99_ms([before]), load.p99_ms(windows)
    print(f"load: {CONNECTIONS} connections ({CONNECTIONS // 2} keep-alive, {CONNECTIONS // 2} a connection per "
          f"call), {len(load.calls)} calls answered, {len(load.failures)} failed")
    for failure in load.failures[:5]:
        print(f"  failed: {failure}")
    print(f"job create (median of {len(creates)}, until a call answers): {create:.2f} s "
          f"({', '.join(f'{c:.2f}' for c in creates)})")
    print(f"{'step':10} {'new code answers':>17} {'command returns':>16} {'vs create':>10} {'p99 ms':>8} "
          f"{'old stopped':>12}")
    for kind, version, answered, returned, p99, stopped, began_wall in rows:
        print(f"{kind} v{version:<3} {answered:16.2f}s {returned:15.2f}s {answered / create:9.2f}x {p99:8.1f} "
              f"{'yes' if stopped else 'NO':>12}")
        if args.events:
            print_events(plane.home, job["id"], began_wall, began_wall + returned)
    updates = [r for r in rows if r[0] == "update"]
    ratio = statistics.median(r[2] for r in updates) / create
    print(f"failed calls: {len(load.failures)} (target 0)")
    print(f"p99 before {p99_before:.1f} ms, during the switches {p99_during:.1f} ms: "
          f"{p99_during / p99_before:.2f}x (target at most 2x)")
    print(f"update until the new code answers (median of {len(updates)}): {ratio:.2f}x job create "
          f"(target at most 1.2x)")


def print_events(home: Path, job_id: str, began: float, until: float) -> None:
    db = sqlite3.connect(home / "trainml.db")
    try:
        for when, message in db.execute("SELECT time, message FROM logs WHERE job_id = ? AND stream NOT IN "
                                        "('stdout', 'stderr') AND time BETWEEN ? AND ? ORDER BY id",
                                        (job_id, began, until)):
            print(f"    +{when - began:6.3f}s {message}")
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", type=float, default=8.0, help="seconds of load before the first update")
    parser.add_argument("--creates", type=int, default=3, help="job creates measured for the baseline")
    parser.add_argument("--events", action="store_true", help="each step's platform events, timed")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp()) / "home"
    # The control plane and the endpoints it starts inherit core 0; this process (the load) and the CLI core 1.
    os.sched_setaffinity(0, {int(SERVER_CORE)})
    plane = ControlPlane(home).start()
    os.sched_setaffinity(0, {int(LOAD_CORE)})
    try:
        asyncio.run(bench(plane, home.parent / "model", args))
    finally:
        plane.stop()
        kill_everything_under(home)


if __name__ == "__main__":
    main()
