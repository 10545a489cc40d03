"""Scale to zero on this machine (issue 26): cold starts, the memory of endpoints at zero, autoscaled throughput,
and the control plane with many jobs.

    python bench/coldstart.py [--rounds 5] [--endpoints 50] [--jobs 200] [--seconds 20]

1. Cold start: an endpoint with --min-workers 0 (the runtime alone, no control plane) is let go to zero, then
   called; the first call's latency against the model's import time alone (a fresh interpreter importing the
   model file, the least any cold start can take). Target: at most 0.5 s more.
2. Memory: --endpoints jobs with --min-replicas 0 on a control plane, each let go to zero; the PSS of every
   process they keep (from /proc/PID/smaps_rollup), against one idle endpoint with a worker. Target: at most
   1 GiB for 50 (about 20 MiB each).
3. Throughput under a step of load (nothing, then wrk's connections at once) on a CPU-bound route: autoscaled
   between 1 and 2 workers against a fixed 2. Target: at least 0.9x.
4. The control plane with --jobs jobs (the endpoints at zero and stopped ones): GET /api/jobs and the dashboard's
   list, against the same with one job.

Loopback only; every process it starts is ended by its process group. The machine's load average is printed
beside the figures: on a shared machine they move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ROOT, require_wrk, wrk  # noqa: E402

MODEL = ROOT / "bench" / "model"
ROUTE = {"verb": "POST", "path": "/predict", "file": "predict", "function": "predict",
         "body": [{"name": "text", "type": "str"}, {"name": "n", "type": "int"}]}
SPIN = {"verb": "POST", "path": "/spin", "file": "predict", "function": "spin",
        "body": [{"name": "n", "type": "int"}]}


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def pss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Pss:")) / 1024
    except (OSError, StopIteration):
        return 0.0


def group(pgid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    found.append(int(entry))
            except OSError:
                pass
    return found


def dormant(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"runtime/dormant.py" in f.read()
    except OSError:
        return False


def post(url: str, body: dict, timeout: float = 120) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read())


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def runtime(sock: socket.socket, routes: list[dict], *extra: str, log=subprocess.DEVNULL) -> subprocess.Popen:
    command = [sys.executable, "-m", "trainml_cli.runtime", "--model-dir", str(MODEL), "--fd", str(sock.fileno()),
               "--no-access-log", *extra]
    for route in routes:
        command += ["--route", json.dumps(route)]
    return subprocess.Popen(command, pass_fds=(sock.fileno(),), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def listening() -> tuple[socket.socket, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


def end(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# -- 1. cold start -----------------------------------------------------------------------------------------------

def import_alone(rounds: int) -> float:
    times = []
    for _ in range(rounds):
        began = time.monotonic()
        subprocess.run([sys.executable, "-c", "import predict"], cwd=MODEL, check=True)
        times.append(time.monotonic() - began)
    return statistics.median(times)


def cold_start(rounds: int) -> None:
    sock, url = listening()
    scale = Path(tempfile.mkdtemp(prefix="bench-coldstart-")) / "scale.json"
    process = runtime(sock, [ROUTE], "--min-workers", "0", "--workers", "1", "--idle-timeout", "1",
                      "--scale-file", str(scale))
    firsts, recorded = [], []
    try:
        for _ in range(rounds):
            wait_for(lambda: dormant(process.pid), 60, "the endpoint to go to zero")
            time.sleep(0.2)
            began = time.monotonic()
            post(url + "/predict", {"text": "x", "n": 1})
            firsts.append(time.monotonic() - began)
            recorded.append(json.loads(scale.read_text())["cold_start_ms"])
        at_zero = pss_mib(process.pid) if dormant(process.pid) else None
    finally:
        end(process)
        shutil.rmtree(scale.parent, ignore_errors=True)
    alone = import_alone(rounds)
    first = statistics.median(firsts)
    print(f"cold start: first call {first * 1000:.0f} ms (median of {rounds}; cold_start_ms "
          f"{statistics.median(recorded):.0f}), the model's import alone {alone * 1000:.0f} ms: "
          f"{(first - alone) * 1000:+.0f} ms of ours (target +500)  [{load()}]")
    if at_zero is not None:
        print(f"  the endpoint's one process at zero: {at_zero:.1f} MiB PSS")


# -- 3. throughput under a step of load -----------------------------------------------------------------------------

def step(seconds: int, connections: int, rounds: int) -> None:
    body = json.dumps({"n": 20000})
    results: dict[str, list[float]] = {"fixed 2": [], "autoscaled 1..2": []}
    for _ in range(rounds):  # interleaved: a shared machine's load moves between the two less
        for name, extra in (("fixed 2", ("--workers", "2")),
                            ("autoscaled 1..2", ("--min-workers", "1", "--workers", "2", "--upscale-delay", "0.5",
                                                 "--idle-timeout", "60", "--max-concurrency", "2"))):
            sock, url = listening()
            process = runtime(sock, [SPIN], *extra)
            try:
                wait_for(lambda url=url: _ping(url), 60, f"the {name} endpoint")
                time.sleep(1.0)  # idle before the step
                result = wrk(url + "/spin", body, connections, seconds)
                results[name].append(result["ok_rps"] if not result["non2xx"] else 0.0)
            finally:
                end(process)
                sock.close()
    fixed, scaled = statistics.median(results["fixed 2"]), statistics.median(results["autoscaled 1..2"])
    ratios = ", ".join(f"{a / f:.2f}x" for a, f in zip(results["autoscaled 1..2"], results["fixed 2"]))
    print(f"step of load ({connections} connections for {seconds}s, a CPU-bound call): autoscaled 1..2 "
          f"{scaled:.0f} calls/s, fixed 2 {fixed:.0f} calls/s (medians of {rounds}): {scaled / fixed:.2f}x "
          f"(target 0.9x; each round {ratios})  [{load()}]")


def _ping(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/ping", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


# -- 2 and 4. a control plane with many endpoints at zero, and many jobs ------------------------------------------

class Plane:
    def __init__(self, home: Path):
        self.home = home
        self.process = None
        self.url = self.token = None

    def start(self) -> Plane:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINML_")}
        self.process = subprocess.Popen([sys.executable, "-m", "trainml_cli.server", "--home", str(self.home),
                                         "--port", "0", "--gpus", "none"], env=env, start_new_session=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answering():
            try:
                info = json.loads((self.home / "server.json").read_text())
                if info.get("pid") != self.process.pid:
                    return None
                with urllib.request.urlopen(info["url"] + "/api/health", timeout=2):
                    return info
            except (OSError, ValueError):
                return None

        self.url = wait_for(answering, 60, "the control plane")["url"]
        self.token = (self.home / "token").read_text().strip()
        return self

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[float, bytes]:
        request = urllib.request.Request(self.url + path, method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"authorization": f"Bearer {self.token}",
                                                  "content-type": "application/json"})
        began = time.monotonic()
        with urllib.request.urlopen(request, timeout=120) as answer:
            data = answer.read()
        return time.monotonic() - began, data

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)


def upload(plane: Plane) -> str:
    """The model folder packed and uploaded once (as the SDK does); each job is created from it."""
    import asyncio

    from trainml_cli import TrainML
    from trainml_cli.settings import Settings

    async def send():
        async with TrainML(settings=Settings(home=plane.home, api_url=plane.url, token=plane.token,
                                             autostart=False)) as client:
            return (await client.upload(MODEL))["id"]

    return asyncio.run(send())


def job_payload(plane: Plane, name: str, **endpoint) -> dict:
    return {"name": name, "type": "endpoint",
            "model": {"source_type": "local", "source_uri": str(MODEL), "upload_id": upload(plane)},
            "endpoint": {"routes": [ROUTE], **endpoint}}


def timed(plane: Plane, path: str, rounds: int = 20) -> float:
    return statistics.median(plane.api("GET", path)[0] for _ in range(rounds)) * 1000


def dashboard(plane: Plane):
    """The dashboard's list of endpoints, timed (signed in as the dashboard is, by a one-time link's cookie)."""
    import http.cookiejar

    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    opener.open(json.loads(plane.api("POST", "/api/dashboard/login-links")[1])["url"], timeout=30).read()

    def timed_page(rounds: int = 20) -> float:
        times = []
        for _ in range(rounds):
            began = time.monotonic()
            opener.open(plane.url + "/dashboard/", timeout=120).read()
            times.append(time.monotonic() - began)
        return statistics.median(times) * 1000

    return timed_page


def many(endpoints: int, jobs: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="bench-zero-"))
    plane = Plane(home).start()
    try:
        _, data = plane.api("POST", "/api/jobs", job_payload(plane, "idle-one"))
        idle = json.loads(data)
        wait_for(lambda: json.loads(plane.api("GET", f"/api/jobs/{idle['id']}")[1])["status"] == "running", 300,
                 "the fixed endpoint")
        page = dashboard(plane)
        one = {"list": timed(plane, "/api/jobs"), "dashboard": page()}
        time.sleep(1.0)
        fixed = sum(pss_mib(p) for p in group(json.loads(plane.api("GET", f"/api/jobs/{idle['id']}")[1])["pid"]))
        ids = []
        for index in range(endpoints):
            _, data = plane.api("POST", "/api/jobs", job_payload(plane, f"zero-{index}", min_replicas=0, max_replicas=1,
                                                                  idle_timeout=2))
            ids.append(json.loads(data)["id"])
        records = wait_for(lambda: _all_dormant(plane, ids), 60 + 20 * endpoints, "every endpoint at zero")
        pids = [pid for r in records for pid in group(r["pid"])]
        total = sum(pss_mib(pid) for pid in pids)
        print(f"{endpoints} endpoints at zero: {total:.0f} MiB PSS in all ({len(pids)} processes, "
              f"{total / endpoints:.1f} MiB each; target 1024 MiB); one idle endpoint with its worker: "
              f"{fixed:.1f} MiB  [{load()}]")
        plane.api("POST", f"/api/jobs/{idle['id']}/stop")
        _clone_stopped(plane, idle["id"], jobs - endpoints - 1)
        listed = len(json.loads(plane.api("GET", "/api/jobs")[1]))
        full = {"list": timed(plane, "/api/jobs"), "dashboard": page()}
        print(f"control plane with {listed} jobs ({endpoints} at zero): GET /api/jobs {full['list']:.0f} ms "
              f"(one job: {one['list']:.0f} ms), the dashboard's list {full['dashboard']:.0f} ms (one job: "
              f"{one['dashboard']:.0f} ms), medians of 20  [{load()}]")
    finally:
        plane.stop()
        for entry in os.listdir("/proc"):  # what its endpoints left (detached ones too): by their home
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/cmdline", "rb") as f:
                        if str(home).encode() in f.read():
                            os.killpg(os.getpgid(int(entry)), signal.SIGKILL)
                except OSError:
                    pass
        shutil.rmtree(home, ignore_errors=True)


def _all_dormant(plane: Plane, ids: list[str]):
    records = [json.loads(plane.api("GET", f"/api/jobs/{i}")[1]) for i in ids]
    return records if all(r["status"] == "running" and r.get("pid") and dormant(r["pid"]) for r in records) else None


def _clone_stopped(plane: Plane, job_id: str, count: int) -> None:
    """Stopped jobs, as many as asked, copied from a stopped one in the store (starting each would take long)."""
    wait_for(lambda: json.loads(plane.api("GET", f"/api/jobs/{job_id}")[1])["status"] == "stopped", 60, "a stop")
    from trainml_cli.server.store import Store

    store = Store(plane.home / "trainml.db") if (plane.home / "trainml.db").exists() else None
    if store is None:
        print("  (no store file found: the list is measured with the jobs started above only)")
        return
    job = store.job(job_id)
    for index in range(count):
        store.insert_job(job.__class__(**{**vars(job), "id": uuid.uuid4().hex[:12], "name": f"stopped-{index}"}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--endpoints", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--skip", action="append", default=[], choices=["cold", "memory", "step"])
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {load()}")
    if "cold" not in args.skip:
        cold_start(args.rounds)
    if "step" not in args.skip:
        require_wrk()
        step(args.seconds, args.connections, args.rounds)
    if "memory" not in args.skip:
        many(args.endpoints, args.jobs)


if __name__ == "__main__":
    main()
