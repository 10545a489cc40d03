"""The Ray backend against a real two-node Ray cluster on loopback (Ray Serve 2.58+, `pip install -e '.[ray]'`).

The cluster is started once for this module: `ray start --head ... --block` and `ray start --address ...
--block`, 2 logical CPUs and a small object store each, with the recommended variables of docs/ray.md (HAProxy mode,
throughput-optimized) but auth disabled (RAY_AUTH_MODE=disabled), its temp dir
under the test's tmp path; it is ended by process group. Each test starts its own control plane with
`--backend ray` pointed at the head's dashboard, and drives it as a user does: the trainml command, the job's
URL, `job logs`. Without Ray installed the module is skipped, except under CI, where that is a failure.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from conftest import MODELS, processes_mentioning, wait_until
from test_environments import make_wheel

ROUTE = json.dumps({"verb": "POST", "path": "/predict", "file": "predict", "function": "predict",
                    "body": [{"name": "text", "type": "str"}]})
VERSION_ROUTE = json.dumps({"verb": "GET", "path": "/version", "file": "predict", "function": "version"})


@dataclass
class Cluster:
    dashboard: str
    serve_port: int
    temp: Path

    def plane_args(self, deploy_timeout: float = 120) -> list[str]:
        return ["--backend", "ray", "--ray-address", self.dashboard, "--ray-serve-port", str(self.serve_port),
                "--ray-deploy-timeout", str(deploy_timeout)]

    def routes(self) -> dict | None:
        """The proxy's route table; None when the proxy did not answer (a loaded machine), never a false empty."""
        try:
            return requests.get(f"http://127.0.0.1:{self.serve_port}/-/routes", timeout=5).json()
        except (requests.RequestException, ValueError):
            return None

    def routed(self, prefix: str) -> bool | None:
        routes = self.routes()
        return None if routes is None else prefix in routes


def _free_ports(count: int) -> list[int]:
    """Free ports below the kernel's ephemeral range (ip_local_port_range starts at 32768 by default). Ray binds
    some of them long after they are picked (Serve's proxy at the first deploy), and the suite's other worker
    meanwhile opens listeners on port 0: a port from the ephemeral range was taken under Serve once."""
    import random

    low = 20000
    try:
        low = min(low, int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]) - 4000)
    except (OSError, ValueError, IndexError):
        pass
    ports: list[int] = []
    for port in random.sample(range(low, low + 4000), 400):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise AssertionError(f"no {count} free ports between {low} and {low + 4000}")


def _end(process: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


RAY_PAGE = Path(__file__).resolve().parents[1] / "docs" / "ray.md"
SLOT = "trainml_test_slot"  # a custom resource each node has one of
# What the tests change in the docs' recipe (docs/ray.md), and why; nothing else but ports and HAProxy's
# folders (below).
# The tests share no token (token auth is Ray's own). The head's dashboard gets 5 minutes to start, not Ray's 60 s:
# the suite runs its other tests beside the cluster (pytest-xdist), and on a loaded 2-core machine the dashboard
# once took longer than 60 s, which ends `ray start` with "Failed to start the dashboard".
# A node told to stop (SIGTERM) ends at once rather than draining for up to 30 s first: the whole cluster goes away
# with the module, and the head's drain (its Serve controller moving off it) outlasted the fixture's 15 s wait, so
# every run's teardown took 16 s and ended the head with SIGKILL.
# Ray's processes export their metrics every 2 s, not every 10 s: the test of a job's metrics summed over its replicas
# waited 10-15 s for the first export.
# No worker processes started ahead of any task: each costs about 2 s of CPU, and the cluster shares the suite's two
# cores (a replica runs in a worker of its job's own environment, never a prestarted one).
TEST_OVERRIDES = {"RAY_AUTH_MODE": "disabled", "RAY_DASHBOARD_STARTUP_TIMEOUT_S": "300",
                  "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0", "RAY_metrics_report_interval_ms": "2000",
                  "RAY_enable_worker_prestart": "false", "RAY_prestart_worker_first_driver": "false"}


def readme_recipe() -> tuple[dict[str, str], list[str], list[str]]:
    """The manual's cluster commands (docs/ray.md, step 1): (the exported variables, the head's `ray start`
    arguments, a worker's), read from the page itself so the cluster the tests run is the one users start."""
    text = RAY_PAGE.read_text()
    block = text[text.index("## 1. A cluster"):]
    block = block[block.index("```sh\n") + 6:]
    block = block[:block.index("```")]
    variables, head, worker = {}, None, None
    for line in block.replace("\\\n", " ").splitlines():  # a command continued over lines is one command
        words = shlex.split(line, comments=True)
        if words[:1] == ["export"]:
            variables.update(word.split("=", 1) for word in words[1:])
        elif words[:3] == ["ray", "start", "--head"]:
            head = words[2:]
        elif words[:2] == ["ray", "start"]:
            worker = words[2:]
    assert variables and head and worker, f"docs/ray.md's cluster recipe is not where the tests read it:\n{block}"
    return variables, head, worker


@pytest.fixture(scope="module")
def cluster():
    ray = shutil.which("ray")
    if ray is None:
        if os.environ.get("CI"):
            pytest.fail("the Ray tests must run in CI: pip install -e '.[test,ray,docs]'")
        pytest.skip("Ray is not installed (pip install -e '.[ray]')")
    # Short, and not under pytest's basetemp: Ray's socket paths live under it (session_DATE_PID/sockets/...), and a
    # Unix socket path holds at most 107 characters: pytest-xdist's worker folders (popen-gw0/) took the
    # raylet's past that, and the head never started.
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    gcs, dashboard, serve, worker_serve, client, metrics_head, metrics_worker = _free_ports(7)
    variables, head_args, worker_args = readme_recipe()
    # HAProxy mode's fixed ports (HAProxy's metrics and stats, the head's fallback proxy) would collide between
    # the two nodes here, and with other clusters on this machine: each node gets free ones.
    haproxy_ports = ("RAY_SERVE_HAPROXY_METRICS_PORT", "RAY_SERVE_HAPROXY_STATS_PORT",
                     "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT")
    ports = [str(port) for port in _free_ports(2 * len(haproxy_ports))]
    head_ports, worker_ports = (dict(zip(haproxy_ports, ports[i::2])) for i in range(2))
    # HAProxy's files in folders of this cluster's own, as the recipe in docs/ray.md has them: the config under our temp
    # dir (which names HAProxy's command line for the clean-up), its sockets under a short one (HAProxy takes socket
    # paths of at most 97 characters, and Ray adds a 56-character node id).
    sockets = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))
    haproxy_files = {"RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(temp / "hap" / "haproxy.cfg"),
                     "RAY_SERVE_HAPROXY_SOCKET_PATH": str(sockets / "admin.sock"),
                     "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(sockets),
                     "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(sockets / "server-state"),
                     "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(sockets / "metrics.sock")}
    assert set(haproxy_files) <= set(variables), "docs/ray.md's recipe names HAProxy's files"
    # The replicas must import trainml_cli from the package we upload, not from this checkout.
    # Nor a metrics folder of this process's (prometheus_client in Ray's own processes would write there).
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PROMETHEUS_MULTIPROC_DIR") and not k.startswith("TRAINML_")}
    env.update(variables, RAY_USAGE_STATS_ENABLED="0", **TEST_OVERRIDES, **haproxy_files)
    # The manual's commands, then what one shared machine needs (later flags win): free ports, a small node, the
    # temp dir under the test's tmp path.
    # A custom resource of one per node lets a test place one replica on each (--ray-actor-options).
    common = ["--num-cpus=2", "--object-store-memory=100000000", "--node-ip-address=127.0.0.1",
              f"--resources={json.dumps({SLOT: 1})}", "--dashboard-agent-listen-port=0", "--block"]
    head_cmd = [ray, "start", *head_args, f"--port={gcs}", f"--dashboard-port={dashboard}",
                "--include-dashboard=true", f"--ray-client-server-port={client}",
                f"--metrics-export-port={metrics_head}",
                f"--temp-dir={temp}", *common]
    # The worker's own temp dir, as a second machine has: Ray builds each job's uv environment under the node's
    # session folder with a lock held per node, so two nodes sharing one folder race on the same environment
    # (`OSError: Directory not empty`) when replicas of a job start on both at once.
    worker_cmd = [ray, "start", *[a.replace("HEAD:6379", f"127.0.0.1:{gcs}") for a in worker_args],
                  f"--metrics-export-port={metrics_worker}", f"--temp-dir={temp / 'w'}", *common]
    # Both nodes share one address here, and Serve's proxies bind with SO_REUSEPORT: the kernel would spread our
    # calls over the head's proxy and a worker proxy that may not have the newest routes yet (a 404 for a job that
    # is running). On a real cluster each node has its own address; a port of its own gives the same here.
    worker_env = dict(env, RAY_SERVE_WORKER_PROXY_HTTP_PORT=str(worker_serve), **worker_ports)
    env.update(head_ports)
    processes = []
    url = f"http://127.0.0.1:{dashboard}"
    try:
        with open(temp / "head.log", "wb") as log:
            processes.append(subprocess.Popen(head_cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                              start_new_session=True))

        def head_answers():
            assert processes[0].poll() is None, (temp / "head.log").read_text()
            try:
                return requests.get(url + "/api/version", timeout=2).ok
            except requests.RequestException:
                return False

        wait_until(head_answers, timeout=300, interval=0.5, message="the Ray head's dashboard")
        with open(temp / "worker.log", "wb") as log:
            processes.append(subprocess.Popen(worker_cmd, stdout=log, stderr=subprocess.STDOUT, env=worker_env,
                                              start_new_session=True))

        def two_nodes():
            assert processes[1].poll() is None, (temp / "worker.log").read_text()
            try:  # the dashboard may drop a connection while the node registers: ask again
                usage = requests.get(url + "/api/cluster_status", timeout=5).json()["data"]["clusterStatus"]
            except (requests.RequestException, ValueError):
                return False
            report = (usage or {}).get("loadMetricsReport") or {}  # none yet while the head starts
            return (report.get("usage") or {}).get("CPU", [0, 0])[1] >= 4

        wait_until(two_nodes, timeout=90, interval=0.5, message="the second Ray node to join")
        yield Cluster(url, serve, temp)
    finally:
        for process in reversed(processes):
            _end(process)
        for pid in processes_mentioning(str(temp)):  # workers Ray started outside the group
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(sockets, ignore_errors=True)
        shutil.rmtree(temp, ignore_errors=True)


def trainml(plane, *argv, timeout=180):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TRAINML_HOME": str(plane.home),
           "TRAINML_API_URL": plane.url, "TRAINML_API_TOKEN": plane.token, "NO_COLOR": "1"}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run([sys.executable, "-m", "trainml_cli", *argv], capture_output=True, text=True, env=env,
                          timeout=timeout)


def create(plane, name, *options, model="replica", route=ROUTE):
    folder = model if isinstance(model, Path) else MODELS / model
    return trainml(plane, "job", "create", "endpoint", name, "--model-dir", str(folder), "--route", route,
                   "--timeout", "150", "--format", "json", *options)


def job(plane, name) -> dict:
    return json.loads(trainml(plane, "job", "get", name, "--format", "json").stdout)


# What a test polls for, it reads through the API: a `trainml` process per poll cost the cluster's shared cores
# about 0.3 s of CPU each. What it then asserts, it reads as a user does, through the trainml command.
def polled(plane, name) -> dict:
    """The job's record, as `job get --format json` gives it."""
    return plane.api("GET", f"/api/jobs/{name}").json()


def logged(plane, name, text) -> int:
    """How many of the job's newest 1000 log lines say `text`."""
    lines = plane.api("GET", f"/api/jobs/{name}/logs", params={"limit": 1000}).json()["logs"]
    return sum(text in line["message"] for line in lines)


# The first test's bound covers the module's cluster start too (pytest-timeout times setup with the test), which
# takes minutes on a loaded machine.
@pytest.mark.timeout(480)
def test_replicas_answer_from_two_processes_with_the_same_contract(cluster, start_control_plane):
    plane = start_control_plane(*cluster.plane_args())
    result = create(plane, "two", "--replicas", "2")
    assert result.returncode == 0, result.stderr + result.stdout
    record = json.loads(result.stdout)
    url = record["url"]
    assert url == f"http://127.0.0.1:{cluster.serve_port}/e/{record['id']}"
    wait_until(lambda: (cluster.routes() or {}).get(f"/e/{record['id']}") == f"ep-{record['id']}", timeout=30,
               interval=0.2, message="the proxy to route the job to its application")

    answered = []  # the pid of each call's replica
    deadline = time.monotonic() + 60
    while len(set(answered)) < 2 and time.monotonic() < deadline:
        answer = requests.post(url + "/predict", json={"text": "hello"}, timeout=10)
        assert answer.status_code == 200 and answer.json()["text"] == "hello"
        answered.append(answer.json()["pid"])
    pids = set(answered)
    assert len(pids) == 2, f"every call was answered by {pids}"

    bad = requests.post(url + "/predict", json={"txt": "hello"}, timeout=10)
    assert bad.status_code == 422 and "body.text" in bad.json()["message"]
    assert requests.get(url + "/ping", timeout=10).json() == {"status": "ready"}
    called = trainml(plane, "job", "call", "two", "/predict", "--data", '{"text": "via job call"}')
    assert called.returncode == 0 and '"via job call"' in called.stdout

    # What the replicas print reaches `job logs`.
    requests.post(url + "/predict", json={"text": "find-me-in-the-log"}, timeout=10)
    wait_until(lambda: logged(plane, "two", "called with find-me-in-the-log"),
               timeout=30, interval=0.5, message="the replica's print in job logs")
    logs = trainml(plane, "job", "logs", "two").stdout
    assert "POST /predict 200" in logs and "replica model loaded" in logs
    assert ":actor_name:" not in logs

    # The job's metrics count every call, whichever replica answered it (summed from what Ray's agents export).
    calls = len(answered) + 3  # the 422, `job call` and the logged one; /ping is not counted

    def summed():
        metrics = plane.api("GET", f"/api/jobs/{record['id']}/metrics").json()["metrics"] or {}
        return metrics if metrics.get("requests") == calls else None

    metrics = wait_until(summed, timeout=90, interval=1, message=f"the job's metrics to count {calls} calls")
    assert metrics["responses"] == {"200": calls - 1, "422": 1}
    assert sum(metrics["latency_buckets"]) == calls


def test_stop_removes_the_application_and_start_deploys_it_again(cluster, start_control_plane):
    plane = start_control_plane(*cluster.plane_args())
    record = json.loads(create(plane, "stopme").stdout)
    prefix = f"/e/{record['id']}"
    wait_until(lambda: cluster.routed(prefix), timeout=30, interval=0.2, message="the proxy to route the job")
    began = time.monotonic()
    stopped = trainml(plane, "job", "stop", "stopme")
    took = time.monotonic() - began
    assert stopped.returncode == 0, stopped.stderr
    # Serve's own drain (30 s in HAProxy mode) is cut to a moment: an idle endpoint stops in seconds.
    assert took < 10, f"job stop took {took:.1f}s"
    assert job(plane, "stopme")["status"] == "stopped"
    # Stopped means the Serve application is gone (asked until the proxy answers).
    wait_until(lambda: cluster.routed(prefix) is False, timeout=30, interval=0.2, message="the application gone")
    assert requests.post(record["url"] + "/predict", json={"text": "x"}, timeout=10).status_code in (404, 503)

    started = trainml(plane, "job", "start", "stopme")
    assert started.returncode == 0, started.stderr
    wait_until(lambda: polled(plane, "stopme")["status"] == "running", timeout=90, interval=0.5,
               message="running again")
    assert requests.post(record["url"] + "/predict", json={"text": "x"}, timeout=10).status_code == 200
    began = time.monotonic()
    removed = trainml(plane, "job", "remove", "stopme", "--force")
    took = time.monotonic() - began
    assert removed.returncode == 0, removed.stderr
    assert took < 10, f"job remove took {took:.1f}s"
    wait_until(lambda: cluster.routed(prefix) is False, timeout=30, interval=0.2, message="the application removed")


SERVE_404 = "not found. Ping"  # Serve's own 404 text: `Path '/e/ID/predict' not found. Ping http://.../-/routes ...`


@pytest.mark.timeout(600)
def test_callers_get_our_json_while_a_job_stops_and_our_404_once_it_is_gone(cluster, start_control_plane):
    plane = start_control_plane(*cluster.plane_args())
    created = create(plane, "fallsback")
    assert created.returncode == 0, created.stderr + created.stdout
    record = json.loads(created.stdout)
    url, prefix = record["url"], f"/e/{record['id']}"
    # The fallback application (deployed with the job, at /e) is routed too.
    wait_until(lambda: cluster.routed(prefix) and cluster.routed("/e"), timeout=120, interval=0.2,
               message="the proxy to route the job and the fallback")
    nowhere = requests.get(f"http://127.0.0.1:{cluster.serve_port}/e/nosuchjob/predict", timeout=10)
    assert nowhere.status_code == 404 and nowhere.json()["message"] == "no job at this URL", nowhere.text

    answers: list[tuple[int, str | None, str]] = []  # (status, Retry-After, body) of each call during the stop
    done = threading.Event()

    def call():
        with requests.Session() as session:
            while not done.is_set():
                try:
                    answer = session.post(url + "/predict", json={"text": "x"}, timeout=10)
                except requests.RequestException as exc:
                    answers.append((0, None, repr(exc)))
                    continue
                answers.append((answer.status_code, answer.headers.get("retry-after"), answer.text))
                time.sleep(0.02)

    caller = threading.Thread(target=call)
    caller.start()
    try:
        wait_until(lambda: len(answers) >= 5, timeout=60, interval=0.1, message="calls before the stop")
        stopped = trainml(plane, "job", "stop", "fallsback", timeout=300)
    finally:
        done.set()
        caller.join(30)
    assert stopped.returncode == 0, stopped.stderr
    assert not [a for a in answers if SERVE_404 in a[2]], "Serve's own 404 reached a caller"
    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {200, 503, 404}, answers[-5:]
    assert 503 in statuses, f"no 503 while the job stopped: {sorted(set(statuses))}"
    for status, retry_after, body in answers:
        if status == 503:
            assert retry_after == "1" and json.loads(body)["error"] in ("unavailable", "overloaded"), body
        if status == 404:  # at the very end: the job gone, the fallback told
            assert json.loads(body)["message"] == "no job at this URL", body
    # Removed: our 404 (the fallback reconfigured by the stop's last PUT), never Serve's text.
    assert job(plane, "fallsback")["status"] == "stopped"

    def gone():  # Serve reconfigures the fallback's replica a moment after the stop's last PUT: 503 until then
        answer = requests.post(url + "/predict", json={"text": "x"}, timeout=10)
        assert answer.status_code in (503, 404) and SERVE_404 not in answer.text, answer.text
        return [answer] if answer.status_code == 404 else None  # (a 404 Response itself is falsy)

    [gone] = wait_until(gone, timeout=60, interval=0.2, message="our 404 once the job is gone")
    assert gone.json()["error"] == "not_found", gone.text
    assert gone.json()["message"] == "no job at this URL" and gone.headers["x-request-id"] == gone.json()["request_id"]


@pytest.mark.timeout(300)
def test_an_endpoint_key_guards_the_replicas_and_a_rotated_key_replaces_it(cluster, start_control_plane):
    plane = start_control_plane(*cluster.plane_args())
    result = create(plane, "keyed", "--auth")
    assert result.returncode == 0, result.stderr + result.stdout
    record = json.loads(result.stdout)
    url, key = record["url"], record["key"]
    assert json.loads(trainml(plane, "job", "connect", "keyed", "--format", "json").stdout)["key"] == key

    def call(with_key=None):
        headers = {"Authorization": f"Bearer {with_key}"} if with_key else {}
        return requests.post(url + "/predict", json={"text": "hi"}, headers=headers, timeout=10)

    missing = call()
    assert missing.status_code == 401 and missing.json()["error"] == "unauthorized", missing.text
    assert call(key).status_code == 200
    assert requests.get(url + "/ping", timeout=10).status_code == 200, "health checks need no key"
    unpacked = [path for path in cluster.temp.rglob("endpoint.key") if path.read_text().strip() == key]
    assert unpacked and all(path.stat().st_mode & 0o777 == 0o600 for path in unpacked), "each node's copy: 0600"

    serving = call(key).json()["pid"]
    rotated = trainml(plane, "job", "rotate-key", "keyed", "--format", "json")
    assert rotated.returncode == 0, rotated.stderr
    new_key = json.loads(rotated.stdout)["key"]
    # Within seconds of rotate-key (a wide bound), in the fixture's HAProxy mode too.
    wait_until(lambda: call(key).status_code == 401 and call(new_key).status_code == 200, timeout=15, interval=0.2,
               message="the new key to work and the old one to be refused")
    # The replica took the new key as it runs (Serve's reconfigure), as a local endpoint's workers re-read theirs:
    # not replaced, so nothing it held (a loaded model, calls in flight) was lost.
    assert call(new_key).json()["pid"] == serving, "the replica was replaced"
    assert job(plane, "keyed")["status"] == "running"
    logs = trainml(plane, "job", "logs", "keyed").stdout
    assert "endpoint key rotated" in logs and key not in logs and new_key not in logs


@pytest.mark.timeout(600)
def test_job_update_turns_auth_on_and_off_on_the_replicas(cluster, start_control_plane):
    plane = start_control_plane(*cluster.plane_args())
    created = create(plane, "locks")
    assert created.returncode == 0, created.stderr + created.stdout
    url = json.loads(created.stdout)["url"]

    def call(with_key=None):
        headers = {"Authorization": f"Bearer {with_key}"} if with_key else {}
        return requests.post(url + "/predict", json={"text": "hi"}, headers=headers, timeout=10)

    wait_until(lambda: call().status_code == 200, timeout=60, interval=0.2, message="the proxy to route the job")
    locked = trainml(plane, "job", "update", "locks", "--auth", "--format", "json", timeout=300)
    assert locked.returncode == 0, locked.stdout + locked.stderr
    key = json.loads(locked.stdout)["key"]
    # Serving means every replica is the new revision's: the key is asked for at once.
    missing = call()
    assert missing.status_code == 401 and missing.json()["error"] == "unauthorized", missing.text
    assert call(key).status_code == 200
    assert json.loads(trainml(plane, "job", "connect", "locks", "--format", "json").stdout)["key"] == key
    # rotate-key reaches the replicas of the revision that turned auth on.
    new_key = json.loads(trainml(plane, "job", "rotate-key", "locks", "--format", "json").stdout)["key"]
    wait_until(lambda: call(key).status_code == 401 and call(new_key).status_code == 200, timeout=30, interval=0.2,
               message="the rotated key to work")

    opened = trainml(plane, "job", "update", "locks", "--no-auth", timeout=300)
    assert opened.returncode == 0, opened.stdout + opened.stderr
    assert call().status_code == 200
    assert not json.loads(trainml(plane, "job", "connect", "locks", "--format", "json").stdout).get("key")


def test_model_that_fails_to_import_fails_the_job_with_its_traceback(cluster, start_control_plane):
    plane = start_control_plane(*cluster.plane_args())
    result = create(plane, "broken", model="import_error")
    assert result.returncode == 1
    # The error line names the cause, as on the local backend.
    error = next(line for line in result.stderr.splitlines() if line.startswith("Error:"))
    assert "model code failed to load" in error, error
    assert "ModuleNotFoundError: No module named 'helper_that_does_not_exist'" in error, error
    record = job(plane, "broken")
    assert record["status"] == "failed"
    assert record["reason"].startswith("model code failed to load: ")
    assert "\x1b" not in record["reason"] and "\x1b" not in result.stderr, "no colour escapes (NO_COLOR=1)"
    logs = trainml(plane, "job", "logs", "broken").stdout
    assert "ModuleNotFoundError: No module named 'helper_that_does_not_exist'" in logs
    wait_until(lambda: cluster.routed(f"/e/{record['id']}") is False, timeout=30, interval=0.2,
               message="no route for the failed job")


def test_unschedulable_request_fails_at_the_deadline_saying_what_is_missing(cluster, start_control_plane):
    from datetime import datetime

    # A short stop grace: the application's replica, never placed, is deleted only once its grace has passed (6 s at
    # least: Serve's controller floor with the recipe's drain period).
    plane = start_control_plane(*cluster.plane_args(deploy_timeout=8), "--stop-grace", "1")
    began = time.monotonic()
    result = create(plane, "huge", "--cpu-count", "64")
    took = time.monotonic() - began
    assert result.returncode == 1
    record = job(plane, "huge")
    assert record["status"] == "failed"
    assert "insufficient resources: 1 replica(s) of 64 CPU(s) asked, the cluster has" in record["reason"]
    assert "of 4 CPU" in record["reason"] or "of 4" in record["reason"]
    assert 7 <= took < 90, took
    # Failed at its deadline (8 s after the deploy, by the job's own events), not once Serve had deleted the
    # application: a replica Ray never placed cannot answer Serve's graceful stop, which then ran its whole grace
    # (36 s past the deadline in HAProxy mode). A wide bound: 20 s past the deadline.
    logged = trainml(plane, "job", "logs", "huge", "--format", "json").stdout.splitlines()
    events = [json.loads(line) for line in logged]

    def when(said):
        return next(datetime.fromisoformat(e["time"]) for e in events if e["message"].startswith(said))

    assert (when("status: failed") - when("deployed Ray Serve application")).total_seconds() < 8 + 20, events
    wait_until(lambda: cluster.routed(f"/e/{record['id']}") is False, timeout=30, interval=0.2,
               message="the unschedulable application removed")


def test_a_restarted_control_plane_adopts_the_running_application(cluster, start_control_plane, tmp_path):
    plane = start_control_plane(*cluster.plane_args(), home=tmp_path / "adopt")
    record = json.loads(create(plane, "keep").stdout)
    url = record["url"]
    before = requests.post(url + "/predict", json={"text": "before"}, timeout=10).json()["pid"]
    plane.kill()  # kill -9: the application keeps serving without a control plane
    assert requests.post(url + "/predict", json={"text": "meanwhile"}, timeout=10).status_code == 200

    again = start_control_plane(*cluster.plane_args(), home=tmp_path / "adopt")
    wait_until(lambda: polled(again, "keep")["status"] == "running", timeout=30, interval=0.5, message="adopted")
    after = requests.post(url + "/predict", json={"text": "after"}, timeout=10).json()["pid"]
    assert after == before, "adopted, not deployed again"
    logs = trainml(again, "job", "logs", "keep").stdout
    assert "adopted Ray Serve application" in logs
    wait_until(lambda: logged(again, "keep", "called with after"), timeout=30,
               interval=0.5, message="logs followed after adoption")
    assert trainml(again, "job", "logs", "keep").stdout.count("called with before") == 1, "no line stored twice"
    status = trainml(again, "server", "status")
    assert "Backend:" in status.stdout and "ray" in status.stdout and "CPU free" in status.stdout


def test_after_a_kill_9_the_next_cli_call_brings_back_a_ray_control_plane(cluster, start_control_plane, tmp_path):
    plane = start_control_plane(*cluster.plane_args(), home=tmp_path / "crash")
    record = json.loads(create(plane, "stays").stdout)
    url = record["url"]
    before = requests.post(url + "/predict", json={"text": "before"}, timeout=10).json()["pid"]
    plane.kill()

    # No TRAINML_API_URL: the CLI finds no control plane for the home and starts one, with the saved options.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TRAINML_HOME": str(plane.home), "NO_COLOR": "1",
           "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    cli = lambda *argv: subprocess.run([sys.executable, "-m", "trainml_cli", *argv], capture_output=True,  # noqa: E731
                                       text=True, env=env, timeout=180)
    listed = cli("job", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert [(j["name"], j["status"], j["url"]) for j in json.loads(listed.stdout)] == [("stays", "running", url)]
    assert requests.post(url + "/predict", json={"text": "after"}, timeout=10).json()["pid"] == before
    status = cli("server", "status")
    assert "Backend:   ray" in status.stdout and "--backend ray" in status.stdout, status.stdout
    server_pid = json.loads((plane.home / "server.json").read_text())["pid"]
    assert processes_mentioning(str(plane.home), exclude=(server_pid,)) == [], "nothing launched on this machine"
    logs = cli("job", "logs", "stays").stdout
    assert "adopted Ray Serve application" in logs


@pytest.mark.timeout(400)
def test_pip_packages_become_the_applications_runtime_env(cluster, start_control_plane):
    plane = start_control_plane(*cluster.plane_args(deploy_timeout=300))
    result = create(plane, "tab", "--pip-packages", "tabulate==0.8.10", model="tabulate_version",
                    route=VERSION_ROUTE)
    assert result.returncode == 0, result.stderr + result.stdout
    url = json.loads(result.stdout)["url"]
    assert requests.get(url + "/version", timeout=10).json() == {"tabulate": "0.8.10"}


def test_overload_answers_503_with_retry_after_through_serve(cluster, start_control_plane):
    from concurrent.futures import ThreadPoolExecutor

    plane = start_control_plane(*cluster.plane_args())
    sleep_route = json.dumps({"verb": "POST", "path": "/sleep", "file": "predict", "function": "sleep",
                              "body": [{"name": "seconds", "type": "float"}]})
    result = create(plane, "busy", "--max-concurrency", "1", "--max-queue", "1", model="blocking", route=sleep_route)
    assert result.returncode == 0, result.stderr + result.stdout
    url = json.loads(result.stdout)["url"] + "/sleep"
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: requests.post(url, json={"seconds": 1.5}, timeout=60), range(12)))
    codes = sorted(a.status_code for a in answers)
    assert 200 in codes and 503 in codes, codes
    assert set(codes) <= {200, 503}, codes
    assert all(a.headers.get("Retry-After") for a in answers if a.status_code == 503)


@pytest.mark.timeout(400)
def test_a_package_that_cannot_be_installed_fails_the_job_naming_it(cluster, start_control_plane):
    plane = start_control_plane(*cluster.plane_args(deploy_timeout=240))
    result = create(plane, "nopkg", "--pip-packages", "trainml-no-such-package-xyz==1.0", model="tabulate_version",
                    route=VERSION_ROUTE)
    assert result.returncode == 1, result.stdout
    record = job(plane, "nopkg")
    assert record["status"] == "failed"
    assert record["reason"].startswith("installing the job's packages on the Ray cluster failed:")
    assert "trainml-no-such-package-xyz" in record["reason"]
    error = next(line for line in result.stderr.splitlines() if line.startswith("Error:"))
    assert "trainml-no-such-package-xyz" in error, f"uv's line on the CLI's error line: {error}"
    assert "\x1b" not in record["reason"]
    assert "after it was deployed" not in record["reason"], "failed by uv's answer, not by the deploy deadline"


@pytest.mark.timeout(400)
def test_a_requirements_file_naming_files_installs_from_the_uploaded_model_folder(cluster, start_control_plane,
                                                                                   tmp_path):
    # As on the local backend: `-r` against the file naming it, a path against the model folder.
    model = tmp_path / "model"
    (model / "deps").mkdir(parents=True)
    (model / "wheels").mkdir()
    make_wheel(model / "wheels", "trainml-fixture-pkg", "1.0", "trainml_fixture_pkg", "HELLO = 'from a local wheel'\n")
    (model / "requirements.txt").write_text("-r deps/more.txt\n./wheels/trainml_fixture_pkg-1.0-py3-none-any.whl\n")
    (model / "deps" / "more.txt").write_text("tabulate==0.8.10\n")
    (model / "predict.py").write_text(
        "import tabulate\nimport trainml_fixture_pkg\n\n\ndef hello():\n"
        "    return {'hello': trainml_fixture_pkg.HELLO, 'tabulate': tabulate.__version__}\n")
    plane = start_control_plane(*cluster.plane_args(deploy_timeout=300))
    hello = json.dumps({"verb": "GET", "path": "/hello", "file": "predict", "function": "hello"})
    result = create(plane, "files", model=model, route=hello)
    assert result.returncode == 0, result.stderr + result.stdout
    url = json.loads(result.stdout)["url"]
    assert requests.get(url + "/hello", timeout=10).json() == {"hello": "from a local wheel", "tabulate": "0.8.10"}


@pytest.mark.timeout(300)
def test_autoscaling_settings_and_actor_options_reach_serve_and_every_replica_answers_through_the_url(
        cluster, start_control_plane):
    plane = start_control_plane(*cluster.plane_args())
    # One replica per node (each has one SLOT), both kept by autoscaling bounds of 2 and 2; every call captured.
    options = {"memory": 104857600, "resources": {SLOT: 1}}
    result = create(plane, "tuned", "--min-replicas", "2", "--max-replicas", "2", "--upscale-delay", "3",
                    "--downscale-delay", "20", "--target-ongoing", "2", "--ray-actor-options", json.dumps(options),
                    "--capture", "1")
    assert result.returncode == 0, result.stderr + result.stdout
    record = json.loads(result.stdout)
    url = record["url"]

    # What Serve deployed, read back from Serve's own API.
    apps = requests.get(cluster.dashboard + "/api/serve/applications/", timeout=10).json()["applications"]
    app = apps[f"ep-{record['id']}"]
    deployment = next(iter(app["deployments"].values()))
    config = deployment["deployment_config"]
    assert {k: config["autoscaling_config"][k] for k in ("min_replicas", "max_replicas", "upscale_delay_s",
                                                        "downscale_delay_s", "target_ongoing_requests")} == {
        "min_replicas": 2, "max_replicas": 2, "upscale_delay_s": 3.0, "downscale_delay_s": 20.0,
        "target_ongoing_requests": 2.0}
    assert config["ray_actor_options"]["memory"] == 104857600
    assert config["ray_actor_options"]["resources"] == {SLOT: 1}

    # Every replica serves through the job's URL (HAProxy on the head), the other node's too. HAProxy learns of a
    # replica when Serve reloads its config, which may lag the application's RUNNING by a moment: calls one after
    # another, as one client makes them, reach both within 60 s.
    seen: list[int] = []
    ids: dict[str, int] = {}  # each answer's X-Request-Id: the pid that answered it
    secret = "Bearer never-kept-5f2c9a"  # a header's value, which capture never keeps

    def both_answered():
        answer = requests.post(url + "/predict", json={"text": f"hi {len(seen)}"}, timeout=10,
                               headers={"Authorization": secret})
        seen.append(answer.json()["pid"])
        ids[answer.headers["x-request-id"]] = seen[-1]
        return len(set(seen)) == 2

    wait_until(both_answered, timeout=60, interval=0.1, message="calls answered by both replicas")
    pids = set(seen)

    # Each replica's captures reach the control plane (drained from its node through the head): `job requests`
    # lists every call with its answer, whichever node's replica answered it, and replay sends one again.
    def captured():
        listed = trainml(plane, "job", "requests", "tuned", "--format", "json", "--tail", "1000")
        entries = {e["id"]: e for e in json.loads(listed.stdout or "[]")} if listed.returncode == 0 else {}
        return entries if set(ids) <= set(entries) else None

    entries = wait_until(captured, timeout=60, interval=1, message="every call in job requests")
    assert {entries[rid]["response"]["pid"] for rid in ids} == pids
    assert all(entries[rid]["status"] == 200 and entries[rid]["route"] == "POST /predict" for rid in ids)
    assert entries[next(iter(ids))]["request"] == {"text": "hi 0"}
    replayed = trainml(plane, "job", "replay", "tuned", next(iter(ids)), "--format", "json")
    assert replayed.returncode == 0 and json.loads(replayed.stdout)["new"]["status"] == 200, replayed.stderr
    folder = plane.home / "jobs" / record["id"] / "requests"
    for file in folder.iterdir():
        assert file.stat().st_mode & 0o777 == 0o600, file
    for file in (p for p in plane.home.rglob("*") if p.is_file()):
        assert b"never-kept-5f2c9a" not in file.read_bytes(), file
    # The replicas write on their own nodes: no path of the control plane's reaches the cluster.
    assert "--capture-dir" not in app["deployed_app_config"]["args"]["argv"]

    # `job get` shows the configured replicas and the live ones.
    live = wait_until(lambda: (r := polled(plane, "tuned").get("replicas")) and len(r) == 2 and r, timeout=30,
                      interval=0.5, message="two live replicas in the job's record")
    assert {r["state"] for r in live} == {"RUNNING"} and {r["pid"] for r in live} == pids
    shown = trainml(plane, "job", "get", "tuned").stdout
    assert "configured: 2-2 autoscaled: aiming at 2 call(s) in flight per replica, adding one after 3s" in shown
    assert "live: 2 running" in shown


@pytest.mark.timeout(600)
def test_min_zero_scales_to_zero_after_the_idle_timeout_and_calls_are_held_while_a_replica_starts(
        cluster, start_control_plane):
    plane = start_control_plane(*cluster.plane_args())
    result = create(plane, "zero", "--min-replicas", "0", "--max-replicas", "1", "--idle-timeout", "3")
    assert result.returncode == 0, result.stderr + result.stdout
    record = json.loads(result.stdout)
    url = record["url"]
    apps = requests.get(cluster.dashboard + "/api/serve/applications/", timeout=10).json()["applications"]
    config = next(iter(apps[f"ep-{record['id']}"]["deployments"].values()))["deployment_config"]["autoscaling_config"]
    assert (config["min_replicas"], config["max_replicas"], config["downscale_to_zero_delay_s"]) == (0, 1, 3.0)
    first = requests.post(url + "/predict", json={"text": "warm"}, timeout=60)
    assert first.status_code == 200, first.text

    # After the idle timeout Serve stops the last replica; the job stays running and says it is scaled to zero.
    def scaled_to_zero():
        got = polled(plane, "zero")
        return got if got["replicas"] == [] else None

    got = wait_until(scaled_to_zero, timeout=120, interval=1, message="the job scaled to zero")
    assert got["status"] == "running"
    assert got["scale"]["replicas"] == 0 and (got["scale"]["min_replicas"], got["scale"]["max_replicas"]) == (0, 1)
    assert "live: 0 running (scaled to zero" in trainml(plane, "job", "get", "zero").stdout

    # Calls to a job scaled to zero are held while Serve starts a replica, never refused: all get 200.
    answers: list = [None] * 3

    def call(index):
        answers[index] = requests.post(url + "/predict", json={"text": f"cold {index}"}, timeout=150)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [200] * 3, [a.text for a in answers]
    assert first.json()["pid"] not in {a.json()["pid"] for a in answers}, "a new replica answered them"
    assert job(plane, "zero")["status"] == "running"


def test_gpus_are_the_clusters_a_count_it_lacks_is_refused_at_create_and_gpu_list_shows_them(cluster,
                                                                                            start_control_plane):
    # This machine declares a GPU; the cluster has none. The cluster's count is what holds on Ray.
    plane = start_control_plane(*cluster.plane_args(), "--gpus", "0:rtx3090")
    listed = trainml(plane, "gpu", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["type"]: row for row in json.loads(listed.stdout)}
    assert rows["rtx3090"]["count"] == 0 and rows["rtx3090"]["where"] == "the Ray cluster"
    assert "The Ray cluster has 0 GPU(s) for jobs" in trainml(plane, "gpu", "list").stderr

    for count in ("1", "0.5"):
        result = create(plane, "gpu", "--gpu-type", "rtx3090", "--gpu-count", count)
        assert result.returncode == 2, result.stdout + result.stderr
        assert (f"1 replica(s) of {count} GPU(s) of type rtx3090 do not fit the Ray cluster: "
                "it has 0 GPUs") in result.stderr
        assert "Traceback" not in result.stderr
    assert json.loads(trainml(plane, "job", "list", "--format", "json").stdout) == [], "nothing created"


def test_status_and_job_get_say_the_clusters_python_and_one_hosts_memory_and_serve_keeps_its_address(
        cluster, start_control_plane):
    import platform

    plane = start_control_plane(*cluster.plane_args())
    result = create(plane, "py")
    assert result.returncode == 0, result.stderr + result.stdout
    python = f"the Ray cluster's ({platform.python_version()})"  # the nodes run this interpreter
    got = trainml(plane, "job", "get", "py")
    assert f"Python: {python}" in " ".join(got.stdout.split()), got.stdout

    # Both nodes run on this one machine and each reports its memory: status counts it once.
    report = requests.get(cluster.dashboard + "/api/cluster_status", timeout=10).json()["data"]["clusterStatus"]
    by_node = report["loadMetricsReport"]["usageByNode"]
    assert len(by_node) == 2
    one_host = max(node["memory"][1] for node in by_node.values())
    status = " ".join(trainml(plane, "server", "status").stdout.split())
    assert f"/{one_host / 1024**3:.1f} GiB memory free" in status, status
    assert f"Python: {python}" in status

    # Serve keeps the address it first started on: a control plane told another is refused, not misled.
    elsewhere = start_control_plane("--backend", "ray", "--ray-address", cluster.dashboard, "--ray-serve-host",
                                    "127.0.0.2", "--ray-serve-port", str(cluster.serve_port), "--ray-deploy-timeout",
                                    "30", home=plane.home.parent / "elsewhere")
    result = create(elsewhere, "elsewhere")
    assert result.returncode == 1
    record = job(elsewhere, "elsewhere")
    assert record["status"] == "failed"
    assert (f"Ray Serve on the cluster listens on 127.0.0.1:{cluster.serve_port} (fixed when Serve first started), "
            f"not on 127.0.0.2:{cluster.serve_port}") in record["reason"]


@pytest.mark.timeout(300)
def test_a_killed_replica_is_counted_in_restarts_and_named_in_the_log(cluster, start_control_plane):
    plane = start_control_plane(*cluster.plane_args())
    result = create(plane, "crash")
    assert result.returncode == 0, result.stderr + result.stdout
    url = json.loads(result.stdout)["url"]
    pid = requests.post(url + "/predict", json={"text": "before"}, timeout=10).json()["pid"]
    assert job(plane, "crash")["restarts"] == 0
    os.kill(pid, signal.SIGKILL)  # the replica's process dies, as an out-of-memory kill would end it

    wait_until(lambda: polled(plane, "crash")["restarts"] == 1, timeout=90, interval=0.5,
               message="the replica's death counted in the job's restarts")

    def answered_by_another():
        try:
            answer = requests.post(url + "/predict", json={"text": "after"}, timeout=10)
        except requests.RequestException:
            return False
        return answer.status_code == 200 and answer.json()["pid"] != pid

    wait_until(answered_by_another, timeout=90, interval=0.5, message="a new replica answering")
    wait_until(lambda: logged(plane, "crash", "serving again"), timeout=60, interval=0.5,
               message="the replacement named in job logs")
    logs = trainml(plane, "job", "logs", "crash").stdout
    died = [line for line in logs.splitlines() if f"(pid {pid})" in line and "died" in line]
    assert died, logs
    assert job(plane, "crash")["status"] == "running"


@pytest.mark.timeout(600)
def test_an_update_under_load_fails_no_call_and_one_that_cannot_import_leaves_the_old_code_serving(
        cluster, start_control_plane, tmp_path):
    from test_revisions import Load, write_model

    plane = start_control_plane(*cluster.plane_args())
    folder = write_model(tmp_path / "v1", 1)
    created = create(plane, "live", model=folder)
    assert created.returncode == 0, created.stderr + created.stdout
    url = json.loads(created.stdout)["url"]
    wait_until(lambda: requests.post(url + "/predict", json={"text": "x"}, timeout=10).status_code == 200,
               timeout=30, interval=0.2, message="the proxy to route the job")
    # Two keep-alive clients and two opening a connection per call, through Serve's proxy (HAProxy mode), each
    # pausing 50 ms between calls (at full speed they spend a core and ran out of calls on a slow machine). A call
    # held 10 s fails (the longest pause between calls was 0.4 s; 30 s with Serve's default rollout, which stops
    # the old replica before the new one runs).
    with Load(url, each=2, timeout=10, pause=0.05) as load:
        wait_until(lambda: load.count_since(0) >= 50, 60, message="calls before the update")
        updated = trainml(plane, "job", "update", "live", "--model-dir", str(write_model(tmp_path / "v2", 2)),
                          timeout=300)
        returned = time.monotonic()
        assert updated.returncode == 0, updated.stdout + updated.stderr
        assert f"Revision 2 of live is serving at: {url}" in updated.stdout
        wait_until(lambda: load.count_since(returned) >= 100, 60, message="calls after the update")
        # A revision whose code cannot import: Serve's new replicas fail, the old ones serve on.
        broken = write_model(tmp_path / "broken", 3, fail=True)
        failed = trainml(plane, "job", "update", "live", "--model-dir", str(broken), timeout=300)
        after_failure = time.monotonic()
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "revision 3 of job live failed" in failed.stderr and "missing weights" in failed.stderr
        wait_until(lambda: load.count_since(after_failure) >= 100, 60, message="calls after the failed update")
    assert load.failures == [], load.failures[:5]
    assert {version for sent, version in load.answers if sent > returned} == {2}
    assert {version for _, version in load.answers} == {1, 2}
    record = job(plane, "live")
    assert record["url"] == url and record["status"] == "running"
    revisions = json.loads(trainml(plane, "job", "revisions", "live", "--format", "json").stdout)
    assert [(r["revision"], r["status"]) for r in revisions] == [(1, "retired"), (2, "serving"), (3, "failed")]
    assert "missing weights" in revisions[2]["reason"]

    # A rollback serves revision 1's stored package again, on the same URL.
    rolled = trainml(plane, "job", "rollback", "live", "--to", "1", timeout=300)
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert requests.post(url + "/predict", json={"text": "x"}, timeout=10).json()["version"] == 1


def _feature_model(folder: Path) -> Path:
    """One model folder holding the streaming, upload and output fixtures side by side, so one job (one deploy on
    the cluster) serves them all."""
    folder.mkdir(parents=True)
    for fixture, name in (("stream_tokens", "tokens"), ("stream_forever", "forever"), ("uploads", "described"),
                          ("outputs", "outputs"), ("replica", "predict")):
        shutil.copy(MODELS / fixture / "predict.py", folder / f"{name}.py")
    return folder


def _sse_events(lines):
    """Each item of a Server-Sent Events stream, parsed, as it arrives, until its `event: end`."""
    event = None
    for line in lines:
        if line.startswith(b"event: "):
            event = line[len(b"event: "):]
        elif line.startswith(b"data: "):
            if event == b"end":
                return
            assert event is None, (event, line)
            yield json.loads(line[len(b"data: "):])


def test_streams_uploads_file_answers_and_request_ids_hold_through_serve(cluster, start_control_plane, tmp_path):
    import hashlib

    def body(file, function, *params, **extra):
        return json.dumps({"verb": "POST", "path": f"/{function}", "file": file, "function": function,
                           "body": [{"name": n, "type": t, **({"optional": True} if t == "int?" else {})}
                                    for n, t in params], **extra}).replace('"int?"', '"int"')

    plane = start_control_plane(*cluster.plane_args())
    routes = [body("tokens", "tokens", ("n", "int"), ("gate", "str")),
              body("tokens", "atokens", ("n", "int"), ("gate", "str")),
              body("forever", "forever", ("closed", "str")),
              body("described", "describe", ("image", "file"), ("count", "int?")),
              body("outputs", "file", ("name", "str"), ("size", "int")),
              body("outputs", "png", content_type="image/png"),
              ROUTE]
    model = _feature_model(tmp_path / "model")
    created = trainml(plane, "job", "create", "endpoint", "features", "--model-dir", str(model),
                      *[word for spec in routes for word in ("--route", spec)], "--timeout", "150", "--format", "json")
    assert created.returncode == 0, created.stderr + created.stdout
    url = json.loads(created.stdout)["url"]
    wait_until(lambda: requests.post(url + "/predict", json={"text": "x"}, timeout=10).status_code == 200,
               timeout=30, interval=0.2, message="the proxy to route the job")

    # 1. Streams through Serve's proxy (HAProxy mode): the first item arrives while the function still waits for
    # the gate, in both formats, for `def` and `async def` generators.
    for function, accept in (("tokens", "text/event-stream"), ("atokens", "application/x-ndjson")):
        gate = tmp_path / f"gate-{function}"
        with requests.post(f"{url}/{function}", json={"n": 3, "gate": str(gate)}, headers={"Accept": accept},
                           stream=True, timeout=30) as answer:
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"].startswith(accept.split(";")[0])
            lines = answer.iter_lines()
            items = _sse_events(lines) if accept == "text/event-stream" else (json.loads(x) for x in lines if x)
            assert next(items) == "first"  # the function has not finished: the gate is still closed
            gate.touch()
            assert list(items) == [{"i": i, "text": f"line {i}\nwith a newline"} for i in (1, 2)]
    # A caller who goes away closes the generator (its `finally` runs) on the replica.
    closed = tmp_path / "closed"
    with requests.post(url + "/forever", json={"closed": str(closed)}, stream=True, timeout=30) as answer:
        lines = answer.iter_lines()
        assert [next(lines), next(lines)] == [b"0", b"1"]
    wait_until(closed.exists, timeout=30, interval=0.1, message="the generator's finally after the caller left")

    # 2. One X-Request-Id on every answer: the caller's own when sane, a new one otherwise; in the access log.
    sane = requests.post(url + "/predict", json={"text": "id"}, headers={"X-Request-Id": "ray-call-7"}, timeout=10)
    assert sane.headers["x-request-id"] == "ray-call-7"
    bad = requests.post(url + "/predict", json={"txt": "id"}, headers={"X-Request-Id": "ray-bad-8"}, timeout=10)
    assert bad.status_code == 422 and bad.headers["x-request-id"] == "ray-bad-8" == bad.json()["request_id"]
    made = requests.post(url + "/predict", json={"text": "id"}, timeout=10).headers["x-request-id"]
    assert made and "," not in made, made
    # One we replace (over 128 characters): ours first (the one in our log and error body), then Serve's echo.
    long = requests.post(url + "/predict", json={"txt": "id"}, headers={"X-Request-Id": "x" * 200}, timeout=10)
    assert long.headers["x-request-id"] == f"{long.json()['request_id']}, {'x' * 200}"
    assert len(long.json()["request_id"]) <= 128
    # An open gate (a folder that exists): the stream ends after its first item. A gate that never opens left the
    # call running on the replica after we read the headers, and the application's removal at the end waited out
    # the whole stop grace for it (the test's teardown took 20 s).
    with requests.post(url + "/tokens", json={"n": 1, "gate": str(tmp_path)}, headers={"X-Request-Id": "ray-stream-9"},
                       stream=True, timeout=30) as answer:
        assert answer.headers["x-request-id"] == "ray-stream-9"

    # 3. A multipart upload (300 kB, a form field) reaches the function as a Path; a Path and bytes go back with
    # their content types.
    data = os.urandom(300_000)
    described = requests.post(url + "/describe", files={"image": ("cat.png", data, "image/png")},
                              data={"count": "3"}, timeout=30)
    assert described.status_code == 200, described.text
    answer = described.json()
    assert (answer["size"], answer["sha256"]) == (300_000, hashlib.sha256(data).hexdigest())
    assert (answer["name"], answer["content_type"], answer["other"]["count"]) == ("cat.png", "image/png", 3)
    sent = requests.post(url + "/file", json={"name": "out.png", "size": 200_000}, timeout=30)
    assert sent.status_code == 200 and sent.headers["content-type"] == "image/png"
    assert sent.content == bytes(i % 251 for i in range(200_000))
    png = requests.post(url + "/png", timeout=30)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n") and len(png.content) == 8 + 1024

    wait_until(lambda: logged(plane, "features", "POST /predict 200"), timeout=30,
               interval=0.5, message="the replica's access lines in job logs")
    logs = trainml(plane, "job", "logs", "features").stdout
    assert any("POST /predict 200" in line and line.endswith(" ray-call-7") for line in logs.splitlines()), logs
    assert any("POST /predict 422" in line and line.endswith(" ray-bad-8") for line in logs.splitlines())


def test_log_lines_say_which_revisions_replica_printed_them(cluster, start_control_plane, tmp_path):
    from test_revisions import write_printing_model

    plane = start_control_plane(*cluster.plane_args())
    created = create(plane, "printing", model=write_printing_model(tmp_path / "v1", 1))
    assert created.returncode == 0, created.stderr + created.stdout
    url = json.loads(created.stdout)["url"]
    wait_until(lambda: requests.post(url + "/predict", json={"text": "x"}, timeout=10).status_code == 200,
               timeout=30, interval=0.2, message="the proxy to route the job")
    # The same code again is a revision of its own too: its lines must not pass for revision 1's.
    for version in (2, 3):
        folder = write_printing_model(tmp_path / f"v{version}", 2)
        updated = trainml(plane, "job", "update", "printing", "--model-dir", str(folder), timeout=300)
        assert updated.returncode == 0, updated.stdout + updated.stderr
        assert requests.post(url + "/predict", json={"text": "x"}, timeout=10).json()["version"] == 2

    def printed():
        result = trainml(plane, "job", "logs", "printing", "--format", "json")
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]

    wait_until(lambda: logged(plane, "printing", "answer from version 2") >= 2, timeout=30,
               interval=0.5, message="revision 3's answer in the log")
    entries = printed()
    tagged = {}
    for entry in entries:
        if entry["message"].startswith(("loading version", "answer from version")):
            tagged.setdefault(entry["message"], set()).add(entry["revision"])
    assert tagged == {"loading version 1": {1}, "answer from version 1": {1}, "loading version 2": {2, 3},
                      "answer from version 2": {2, 3}}, tagged
    assert not any("trainml.replica_revision" in e["message"] for e in entries)
    text = trainml(plane, "job", "logs", "printing").stdout.splitlines()
    assert "[r1] loading version 1" in text and "[r3] answer from version 2" in text, text
