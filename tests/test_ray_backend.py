"""The Ray backend's payloads and status mapping, against a fake Ray head speaking the dashboard's HTTP API.

Ray is the external system here: `FakeHead` answers the calls the control plane makes (packages, Serve's
application list, cluster status, log streams) and moves applications through Serve's statuses as a test
scripts them. The control plane is the real one (`--backend ray --ray-address FAKE`), driven through its API and
the trainml command. The same behaviour on a real cluster is in test_ray.py.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import MODELS, ControlPlane, kill_everything_under, route, wait_until
from trainml_cli.contracts import replica_revision_record
from trainml_cli.server.backends.rayapps import job_status
from trainml_cli.states import JobStatus

FALLBACK = "trainml-fallback"
REPLICA = {"replica_id": "r1", "actor_id": "a" * 32, "pid": 4242, "node_id": "n1", "state": "RUNNING"}
LOG_LINES = [":job_id:01000000", ":actor_name:ServeReplica:ep:endpoint", replica_revision_record(1),
             "hello from the replica",
             "INFO 2026-11-30 08:23:18,463 ep_endpoint r1 7987 -- POST /e/x 200 8.2ms", "2026 POST /predict 200 1ms"]


class FakeHead:
    """A Ray head as the control plane sees it. `outcome` is what a deployed application becomes after
    `polls` status reads: "RUNNING", "DEPLOY_FAILED" (with `failure` as its deployment's message) or
    "DEPLOYING" (unschedulable: forever); `next_outcomes`, if any, are the next deploys' own, one each. A
    deploy that changes a running application is Serve's surge rollout: the old replicas stay listed until
    the new ones run (then fresh replica ids), and stay when the new version fails."""

    def __init__(self, token: str | None = None):
        self.token = token
        self.packages: dict[str, bytes] = {}
        self.uploads: list[str] = []
        self.puts: list[dict] = []
        self.apps: dict[str, dict] = {}
        self.reads: dict[str, int] = {}
        self.auth: list[str | None] = []
        self.outcome = "RUNNING"
        self.next_outcomes: list[str] = []
        self.pending: dict[str, str] = {}  # application -> the outcome its deploy in progress gets
        self.deploys: dict[str, int] = {}  # application -> deploys that changed it (its replicas' generation)
        self.failure = ""
        self.polls = 2
        self.cpu = [1.0, 4.0]
        self.http_options = None  # what Serve listens on once started; None: as the control plane asks
        # Each node: (host name, its resources' totals). GPUs a test gives a node are free.
        self.nodes: list[tuple[str, dict]] = [("node-a", {"CPU": 4.0, "memory": 8.0 * 1024**3})]
        self.actors: dict[str, dict] = {}  # actor id -> the state API's record (a test scripts deaths)
        self.actor_reads: list[str] = []
        self.hold_deletes = False  # True: an application being deleted stays listed, DELETING, until set False
        self.history: list[tuple[str, str]] = []  # ("deployed" | "deleted", application), in order
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = str(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add_foreign_app(self, name: str) -> None:
        config = {"name": name, "route_prefix": f"/{name}", "import_path": "theirs:app"}
        self.apps[name] = {"name": name, "status": "RUNNING", "message": "", "deployed_app_config": config,
                           "deployments": {}}

    def node_summary(self) -> list[dict]:
        hosts = sorted({host for host, _ in self.nodes})  # nodes of one host share its address
        return [{"hostname": host, "ip": f"10.0.0.{hosts.index(host) + 1}",
                 "raylet": {"state": "ALIVE", "nodeId": f"n{i}", "isHeadNode": i == 0, "resourcesTotal": total,
                            "nodeManagerAddress": "127.0.0.1", "metricsExportPort": int(self.port)}}
                for i, (host, total) in enumerate(self.nodes)]

    def last_put(self) -> dict:
        return {app["name"]: app for app in self.puts[-1]["applications"]}

    def _status(self, name: str) -> dict:
        app = self.apps[name]
        if app["status"] == "DELETING":
            if self.hold_deletes:
                return app
            del self.apps[name]
            self.history.append(("deleted", name))
            return None
        self.reads[name] = self.reads.get(name, 0) + 1
        outcome = self.pending.get(name, self.outcome)
        if app["status"] == "DEPLOYING" and self.reads[name] > self.polls and outcome != "DEPLOYING":
            app["status"] = outcome
            generation = self.deploys[name]
            if outcome == "RUNNING":
                replica = REPLICA if generation == 1 else {
                    **REPLICA, "replica_id": f"r{generation}", "actor_id": f"{generation:x}" * 32,
                    "pid": 4242 + generation}
                app["deployments"] = {"endpoint": {"status": "HEALTHY", "message": "", "replicas": [replica]}}
            else:
                old = [r for d in app["deployments"].values() for r in d.get("replicas") or []]
                app["message"] = "Failed to update the deployments ['endpoint']."
                app["deployments"] = {"endpoint": {"status": "DEPLOY_FAILED", "message": self.failure, "replicas": old}}
        return app

    def _put(self, document: dict) -> None:
        self.puts.append(document)
        wanted = {app["name"]: app for app in document["applications"]}
        for name in list(self.apps):
            if name not in wanted:
                self.apps[name]["status"] = "DELETING"
        for name, config in wanted.items():
            current = self.apps.get(name)
            if current is None or current["deployed_app_config"] != config:
                self.apps[name] = {"name": name, "status": "DEPLOYING", "message": "", "deployed_app_config": config,
                                   "route_prefix": config.get("route_prefix"),
                                   "deployments": current["deployments"] if current else {}}
                self.reads[name] = 0
                self.deploys[name] = self.deploys.get(name, 0) + 1
                self.history.append(("deployed", name))
                if self.next_outcomes:
                    self.pending[name] = self.next_outcomes.pop(0)
                else:
                    self.pending.pop(name, None)

    def _handler(self):
        head = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body=b"", content_type="application/json"):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str):
                path, query = urlsplit(self.path).path, parse_qs(urlsplit(self.path).query)
                if path.startswith("/api/"):  # the dashboard's API needs the token; Serve's port does not
                    head.auth.append(self.headers.get("Authorization"))
                    if head.token and self.headers.get("Authorization") != f"Bearer {head.token}":
                        return self._send(401, {"error": "InvalidAuthToken"})
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with head.lock:
                    if path == "/api/version":
                        return self._send(200, {"ray_version": "2.60.0"})
                    if path.startswith("/api/packages/gcs/"):
                        name = path.rsplit("/", 1)[1]
                        if method == "PUT":
                            head.packages[name] = body
                            head.uploads.append(name)
                            return self._send(200)
                        return self._send(200 if name in head.packages else 404)
                    if path == "/api/serve/applications/":
                        if method == "PUT":
                            head._put(json.loads(body))
                            return self._send(200)
                        apps = {n: a for n in list(head.apps) if (a := head._status(n)) is not None}
                        started = head.http_options or (head.puts[0]["http_options"] if head.puts else None)
                        return self._send(200, {"applications": apps, **({"http_options": started} if started else {})})
                    if path == "/api/cluster_status":
                        usage = {"CPU": head.cpu, "memory": [0, 8 * 1024**3]}
                        by_node = {f"n{i}": {k: [head.cpu[0] if (k, i) == ("CPU", 0) else 0.0, v]
                                             for k, v in total.items()} for i, (_, total) in enumerate(head.nodes)}
                        report = {"usage": usage, "usageByNode": by_node}
                        return self._send(200, {"data": {"clusterStatus": {"loadMetricsReport": report}}})
                    if path == "/nodes":
                        return self._send(200, {"data": {"summary": head.node_summary()}})
                    if path == "/metrics":  # a node's metrics export (the same port here)
                        return self._send(200, b'python_info{implementation="CPython",version="3.11.7"} 1.0\n',
                                          "text/plain")
                    if path == "/api/v0/actors":
                        wanted = query.get("filter_values", [""])[0]
                        head.actor_reads.append(wanted)
                        found = [head.actors[wanted]] if wanted in head.actors else []
                        return self._send(200, {"data": {"result": {"result": found}}})
                    if path == "/api/v0/logs/stream" and query.get("suffix") == ["out"]:
                        return self._send(200, ("\n".join(LOG_LINES) + "\n").encode(), "text/plain")
                    if path == "/api/v0/logs/stream":
                        return self._send(200, b"", "text/plain")
                    if path.startswith("/e/") and path.endswith("/ping"):  # Serve's proxy (the same port here)
                        app = head.apps.get("ep-" + path.split("/")[2])
                        running = app is not None and app["status"] == "RUNNING"
                        return self._send(200 if running else 404, {"status": "ready"} if running else {})
                return self._send(404, {"error": f"no {method} {path}"})

            def do_GET(self):
                self._route("GET")

            def do_PUT(self):
                self._route("PUT")

        return Handler

    def close(self):
        # Closing the listening socket too, as a head that went away does: a socket left listening would queue
        # the control plane's next call unanswered until its timeout.
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def head():
    fake = FakeHead()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def refusing_ray(tmp_path_factory):
    """(plane, head): one fake head and a control plane on it for the tests they refuse, each asserting that no job
    was created and nothing sent to the cluster (which holds only while every test on them is refused)."""
    fake = FakeHead()
    plane = ControlPlane(tmp_path_factory.mktemp("refusing") / "home",
                         ["--backend", "ray", "--ray-address", fake.url, "--ray-serve-port", fake.port]).start()
    yield plane, fake
    plane.stop()
    kill_everything_under(plane.home)
    fake.close()


def ray_plane(start_control_plane, head, *extra):
    return start_control_plane("--backend", "ray", "--ray-address", head.url, "--ray-serve-port", head.port, *extra)


def create(plane, name, model="echo", **endpoint):
    folder = model if isinstance(model, Path) else MODELS / model
    upload = plane.api("POST", "/api/uploads", data=_tar(folder), headers={"Content-Type": "application/gzip"})
    payload = {"name": name, "type": "endpoint", "model": {"source_type": "local", "upload_id": upload.json()["id"]},
               "endpoint": {"routes": [route()], **endpoint.pop("endpoint", {})}, **endpoint}
    answer = plane.api("POST", "/api/jobs", json=payload)
    assert answer.status_code == 201, answer.text
    return answer.json()


def _model(tmp_path, files: dict[str, str]) -> Path:
    """The echo model with these files beside it (path: text)."""
    model = tmp_path / "model"
    shutil.copytree(MODELS / "echo", model)
    for name, text in files.items():
        (model / name).parent.mkdir(parents=True, exist_ok=True)
        (model / name).write_text(text)
    return model


def _tar(folder):
    from trainml_cli.packing import pack

    with pack(folder) as archive:
        return archive.read()


def wait_status(plane, job_id, status, timeout=30):
    return wait_until(lambda: (r := plane.api("GET", f"/api/jobs/{job_id}").json())["status"] == status and r,
                      timeout=timeout, interval=0.1, message=f"job {job_id} {status}")


def test_a_job_is_one_serve_application_deployed_with_the_full_list(start_control_plane, head):
    head.add_foreign_app("someone-else")
    plane = ray_plane(start_control_plane, head)
    job = create(plane, "echo", endpoint={"replicas": 3, "max_concurrency": 4, "max_queue": 16},
                 resources={"cpu_count": 2}, environment={"env": [{"key": "GREETING", "value": "hi"}]})
    running = wait_status(plane, job["id"], "running")
    assert running["url"] == f"http://127.0.0.1:{head.port}/e/{job['id']}"

    apps = head.last_put()
    assert set(apps) == {"someone-else", f"ep-{job['id']}", FALLBACK}, "every other application is kept as it runs"
    app = apps[f"ep-{job['id']}"]
    assert app["route_prefix"] == f"/e/{job['id']}"
    assert app["import_path"] == "trainml_cli.runtime.serve_entry:build"
    assert head.puts[-1]["http_options"] == {"host": "127.0.0.1", "port": int(head.port)}
    package = app["runtime_env"]["working_dir"]
    assert package.startswith("gcs://_ray_pkg_") and package.endswith(".zip")
    names = zipfile.ZipFile(io.BytesIO(head.packages[package[len("gcs://"):]])).namelist()
    assert {"model/predict.py", "routes.json", "trainml_cli/runtime/serve_entry.py",
            "trainml_cli/launchspec.py"} <= set(names)
    assert not any("__pycache__" in n for n in names)
    env = app["runtime_env"]["env_vars"]
    assert env["GREETING"] == "hi" and env["TRAINML_JOB_ID"] == job["id"] and "TRAINML_API_TOKEN" not in env
    assert "pip" not in app["runtime_env"]
    argv = app["args"]["argv"]
    assert argv[:4] == ["--model-dir", "model", "--route-file", "routes.json"] and "--workers" not in argv
    options = app["args"]["deployment"]
    assert options["num_replicas"] == 3 and options["ray_actor_options"] == {"num_cpus": 2, "num_gpus": 0}
    assert options["max_ongoing_requests"] == 4 and options["max_queued_requests"] == 16
    assert options["backpressure_config"]["status_code"] == 503 and options["backpressure_config"]["retry_after_s"] > 0
    # Replica output on stdout and stderr whatever the cluster's logging variables; stops bounded by our grace.
    assert env["RAY_SERVE_LOG_TO_STDERR"] == "1" and float(env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"]) <= 2
    assert options["graceful_shutdown_timeout_s"] == 10 and options["graceful_shutdown_wait_loop_s"] < 1

    # The same code is uploaded once; a second job uses the package already there.
    second = create(plane, "echo2")
    wait_status(plane, second["id"], "running")
    assert [name for name in head.uploads if name != _fallback_package(head)] == [package[len("gcs://"):]]
    assert set(head.last_put()) == {"someone-else", f"ep-{job['id']}", f"ep-{second['id']}", FALLBACK}

    # What the replica printed reaches the job's log; Ray's markers and Serve's own records do not.
    logs = lambda: [e["message"] for e in plane.api("GET", f"/api/jobs/{job['id']}/logs?limit=200").json()["logs"]]  # noqa: E731
    wait_until(lambda: "hello from the replica" in logs(), timeout=10, message="the replica's output in the log")
    assert not any(m.startswith((":actor_name:", "INFO 2026")) for m in logs())
    # Tagged with the revision the replica says it runs (its first line, which is not shown); the revision is in
    # the application's args, so each revision runs on replicas of its own.
    entries = plane.api("GET", f"/api/jobs/{job['id']}/logs?limit=200").json()["logs"]
    assert {e["revision"] for e in entries if e["message"] == "hello from the replica"} == {1}
    assert not any("replica_revision" in e["message"] for e in entries) and app["args"]["revision"] == 1

    # Stop: the list without it, and stopped once Serve has deleted it; the others stay.
    plane.api("POST", f"/api/jobs/{job['id']}/stop")
    wait_status(plane, job["id"], "stopped")
    assert set(head.last_put()) == {"someone-else", f"ep-{second['id']}", FALLBACK}
    assert f"ep-{job['id']}" not in head.apps


def _fallback(put: dict) -> dict:
    """The fallback application in one PUT's list: always there, always last."""
    assert put["applications"][-1]["name"] == FALLBACK, [app["name"] for app in put["applications"]]
    return put["applications"][-1]


def _fallback_states(put: dict) -> dict:
    [deployment] = _fallback(put)["deployments"]
    assert deployment["name"] == "fallback"
    return deployment["user_config"]["jobs"]


def _fallback_package(head) -> str:
    return _fallback(head.puts[-1])["runtime_env"]["working_dir"][len("gcs://"):]


def test_every_list_holds_a_fallback_at_e_that_knows_which_jobs_are_starting_updating_or_stopping(
        start_control_plane, head):
    head.add_foreign_app("someone-else")
    plane = ray_plane(start_control_plane, head)
    alpha = create(plane, "private-name-alpha")
    first = wait_until(lambda: head.puts and head.puts[0], timeout=30, interval=0.05, message="the first PUT")
    fallback = _fallback(first)
    # At /e: Serve's longest-prefix routing sends it the calls of every /e/ID no job's application takes.
    assert fallback["route_prefix"] == "/e"
    assert fallback["import_path"] == "trainml_cli.runtime.serve_entry:build_fallback"
    options = fallback["args"]["deployment"]
    assert options["num_replicas"] == 1 and options["ray_actor_options"] == {"num_cpus": 0}, "no CPU of the jobs'"
    assert options["max_queued_requests"] > 0 and options["backpressure_config"]["status_code"] == 503
    package = zipfile.ZipFile(io.BytesIO(head.packages[_fallback_package(head)])).namelist()
    assert {"trainml_cli/runtime/fallback.py", "trainml_cli/runtime/serve_entry.py"} <= set(package)
    assert not any(name.startswith("model/") or name == "routes.json" for name in package), "no job's code"
    assert _fallback_states(first) == {alpha["id"]: "starting"}
    wait_status(plane, alpha["id"], "running")

    puts = len(head.puts)
    beta = create(plane, "private-name-beta")
    deployed = wait_until(lambda: len(head.puts) > puts and head.puts[puts], timeout=30, interval=0.05,
                          message="beta's PUT")
    assert _fallback_states(deployed) == {alpha["id"]: "running", beta["id"]: "starting"}
    wait_status(plane, beta["id"], "running")
    _revise(plane, beta["id"], endpoint={"replicas": 2})
    updating = [_fallback_states(put) for put in head.puts for app in put["applications"]
                if app["name"] == f"ep-{beta['id']}" and app["args"]["deployment"]["num_replicas"] == 2]
    assert updating and updating[0] == {alpha["id"]: "running", beta["id"]: "updating"}

    # Stop: the PUT that takes alpha out says it is stopping; once Serve has deleted it, one more PUT drops it
    # (its URL then gets our 404). Only the fallback's map changes in that last one.
    before = len(head.puts)
    plane.api("POST", f"/api/jobs/{alpha['id']}/stop")
    wait_status(plane, alpha["id"], "stopped")
    removing, *_, done = head.puts[before:]
    assert f"ep-{alpha['id']}" not in {app["name"] for app in removing["applications"]}
    assert _fallback_states(removing) == {alpha["id"]: "stopping", beta["id"]: "running"}
    assert _fallback_states(done) == {beta["id"]: "running"}
    assert [app for app in done["applications"] if app["name"] != FALLBACK] == \
        [app for app in removing["applications"] if app["name"] != FALLBACK]
    assert {app["name"] for app in done["applications"]} == {"someone-else", f"ep-{beta['id']}", FALLBACK}

    # Job names never reach it (only ids, which Ray's dashboard shows as the applications' names anyway), and
    # its package went up once.
    assert not any("private-name" in json.dumps(_fallback(put)) for put in head.puts)
    assert head.uploads.count(_fallback_package(head)) == 1

    # Removing the last job leaves the fallback with an empty map: every job URL gets our 404.
    plane.api("DELETE", f"/api/jobs/{beta['id']}?force=true")
    wait_until(lambda: f"ep-{beta['id']}" not in head.apps and _fallback_states(head.puts[-1]) == {}, timeout=30,
               interval=0.1, message="the fallback's map emptied")
    assert {app["name"] for app in head.puts[-1]["applications"]} == {"someone-else", FALLBACK}


def test_a_ray_package_holds_the_files_the_local_backend_runs_for_the_same_folder(start_control_plane, head, tmp_path):
    # Tool caches, node_modules, git's folder and virtualenvs are left out of both: one list (contracts.py).
    model = _model(tmp_path, {"data/weights.txt": "w", "node_modules/left-pad/index.js": "x", ".ruff_cache/c": "x",
                              ".git/HEAD": "x", "env/pyvenv.cfg": "home = /usr", "env/lib/site.py": "x"})
    with tarfile.open(fileobj=io.BytesIO(_tar(model)), mode="r:gz") as archive:  # what the local backend runs
        uploaded = sorted(m.name for m in archive.getmembers() if m.isfile())
    plane = ray_plane(start_control_plane, head)
    job = create(plane, "same", model=model)
    wait_status(plane, job["id"], "running")
    package = head.last_put()[f"ep-{job['id']}"]["runtime_env"]["working_dir"][len("gcs://"):]
    names = zipfile.ZipFile(io.BytesIO(head.packages[package])).namelist()
    assert sorted(n[len("model/"):] for n in names if n.startswith("model/")) == uploaded
    assert uploaded == ["data/weights.txt", "predict.py"]


def test_autoscaling_and_packages_become_serve_options_and_runtime_env(start_control_plane, head):
    plane = ray_plane(start_control_plane, head)
    job = create(plane, "auto", model="requirements_file", endpoint={"min_replicas": 1, "max_replicas": 4,
                                                                     "max_concurrency": 6},
                 environment={"packages": {"pip": ["tabulate==0.8.10"]}})
    wait_status(plane, job["id"], "running")
    app = head.last_put()[f"ep-{job['id']}"]
    options = app["args"]["deployment"]
    assert "num_replicas" not in options
    assert options["autoscaling_config"] == {"min_replicas": 1, "initial_replicas": 1, "max_replicas": 4,
                                             "target_ongoing_requests": 3, "upscale_delay_s": 30.0,
                                             "downscale_delay_s": 600.0}
    # requirements.txt says "tabulate==0.9.0  # read automatically"; --pip-packages names tabulate too, and the
    # command line wins: the file's line is left out.
    assert app["runtime_env"]["uv"] == {"packages": ["tabulate==0.8.10"], "uv_check": False,
                                        "uv_pip_install_options": []}, "plain lines, so Ray keys the build by them"
    assert "pip" not in app["runtime_env"]


def test_a_requirements_file_naming_files_is_read_from_the_uploaded_model_folder(start_control_plane, head,
                                                                                    tmp_path):
    model = _model(tmp_path, {"requirements.txt": "-r deps/more.txt\n./wheels/pkg-1.0-py3-none-any.whl\n",
                              "deps/more.txt": "tabulate==0.8.10\n", "wheels/pkg-1.0-py3-none-any.whl": ""})
    plane = ray_plane(start_control_plane, head)
    job = create(plane, "files", model=model, environment={"packages": {"pip": ["tabulate==0.8.10"]}})
    wait_status(plane, job["id"], "running")
    app = head.last_put()[f"ep-{job['id']}"]
    names = zipfile.ZipFile(io.BytesIO(head.packages[app["runtime_env"]["working_dir"][len("gcs://"):]])).namelist()
    assert {"model/requirements.txt", "model/deps/more.txt", "model/wheels/pkg-1.0-py3-none-any.whl"} <= set(names)
    # Ray expands the variable to the node's copy of the package while it builds; uv reads the file there and
    # resolves the wheel's path against the model folder, as it does on the local backend.
    assert app["runtime_env"]["uv"] == {
        "packages": ["tabulate==0.8.10", "-r ${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}/model/requirements.txt"],
        "uv_check": False, "uv_pip_install_options": ["--directory", "${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}/model"]}


def test_a_requirements_line_leading_out_of_the_model_folder_is_refused_at_create(refusing_ray, tmp_path):
    # The same check as on the local backend (localpaths): 422, nothing created, nothing sent to the cluster.
    plane, head = refusing_ray
    for files, reason in [
        ({"requirements.txt": "tabulate\n-r ../shared.txt\n"}, "requirements.txt line 2: ../shared.txt leaves"),
        ({"requirements.txt": "-r deps/more.txt\n", "deps/more.txt": "\n--constraint=../../pins.txt\n"},
         "deps/more.txt line 2: ../../pins.txt leaves"),
    ]:
        model = _model(tmp_path / str(len(files)), files)
        upload = plane.api("POST", "/api/uploads", data=_tar(model), headers={"Content-Type": "application/gzip"})
        answer = plane.api("POST", "/api/jobs", json={
            "name": "outside", "type": "endpoint", "endpoint": {"routes": [route()]},
            "model": {"source_type": "local", "upload_id": upload.json()["id"]}})
        assert answer.status_code == 422 and answer.json()["message"].startswith(reason), answer.text
    assert plane.api("GET", "/api/jobs").json() == []
    assert head.puts == [] and head.uploads == [], "nothing sent to the cluster"


def test_a_requirements_line_naming_a_file_the_upload_lacks_fails_the_job_before_deploying(
        start_control_plane, head, tmp_path):
    plane = ray_plane(start_control_plane, head)
    job = create(plane, "lacks", model=_model(tmp_path, {"requirements.txt": "# pinned\n-e ./mypkg\n"}))
    failed = wait_status(plane, job["id"], "failed")
    assert failed["reason"].startswith("requirements.txt line 2: ./mypkg is not in the model folder"), failed["reason"]
    assert head.puts == [] and head.uploads == [], "nothing sent to the cluster"


def test_a_package_uv_cannot_install_fails_the_job_with_uvs_own_lines(start_control_plane, head):
    # Serve's message for a runtime_env that Ray could not build with uv, as Ray 2.60 words it (abridged).
    head.outcome = "DEPLOY_FAILED"
    head.failure = (
        "Deploying the replica failed.\nray.exceptions.RuntimeEnvSetupError: Failed to set up runtime environment.\n"
        "Traceback (most recent call last):\n"
        '  File "/site-packages/ray/_private/runtime_env/uv.py", line 240, in _install_uv_packages\n'
        "    await check_output_cmd(uv_install_cmd, logger=logger, cwd=cwd, env=pip_env)\n"
        "ray._private.runtime_env.utils.SubprocessCalledProcessError: Run cmd[12] failed with the following details.\n"
        "Command '['/tmp/ray/uv/9c6c/virtualenv/bin/python', '-m', 'uv', 'pip', 'install', '-r', "
        "'/tmp/ray/uv/9c6c/ray_runtime_env_internal_pip_requirements.txt']' returned non-zero exit status 1.\n"
        "Last 50 lines of stdout:\n    Using Python 3.11.7 environment at: /tmp/ray/uv/9c6c/virtualenv\n"
        "    error: No solution found when resolving dependencies\n      cause: Because trainml-no-such-package-xyz "
        "was not found in the package registry and you require trainml-no-such-package-xyz==1.0, we can conclude "
        "that your requirements are unsatisfiable.\n")
    plane = ray_plane(start_control_plane, head)
    job = create(plane, "nopkg", environment={"packages": {"pip": ["trainml-no-such-package-xyz==1.0"]}})
    failed = wait_status(plane, job["id"], "failed")
    assert failed["reason"] == (  # uv's lines on the first line, the CLI's error line
        "installing the job's packages on the Ray cluster failed: error: No solution found when resolving "
        "dependencies; cause: Because trainml-no-such-package-xyz was not found in the package registry and you "
        "require trainml-no-such-package-xyz==1.0, we can conclude that your requirements are unsatisfiable.")


def test_a_failed_deploy_fails_the_job_with_the_replicas_message(start_control_plane, head):
    head.outcome = "DEPLOY_FAILED"
    # As Ray 2.60 words it (abridged): the traceback's first line coloured, our error's traceback at the end.
    # The replica raises the runtime's load-failure record: one JSON line (contracts.LoadFailure.record).
    record = json.dumps({"event": "trainml.load_failure",
                         "cause": "route POST /predict: importing predict.py failed: ModuleNotFoundError: No module "
                                  "named 'nope'",
                         "detail": "Traceback (most recent call last):\n  File \"predict.py\", line 3, in <module>\n"
                                   "    import nope\nModuleNotFoundError: No module named 'nope'"})
    head.failure = ("The deployment failed to start 3 times in a row.\n\x1b[36mray::ServeReplica:ep-x:endpoint."
                    "initialize_and_get_metadata()\x1b[39m (pid=7, ip=127.0.0.1)\nTraceback (most recent call last):\n"
                    f"  ...\nRuntimeError: {record}")
    plane = ray_plane(start_control_plane, head)
    job = create(plane, "broken")
    failed = wait_status(plane, job["id"], "failed")
    # The cause on the first line (the CLI's error line), as the local backend's reason has it; no escapes.
    assert failed["reason"].splitlines()[0] == ("model code failed to load: route POST /predict: importing "
                                                "predict.py failed: ModuleNotFoundError: No module named 'nope'")
    assert failed["reason"].splitlines()[-1] == "ModuleNotFoundError: No module named 'nope'"  # then the traceback
    assert "\x1b" not in failed["reason"]
    wait_until(lambda: f"ep-{job['id']}" not in head.apps, timeout=10, message="the failed application removed")


def test_an_application_deploying_past_the_deadline_fails_saying_what_is_missing(start_control_plane, head):
    head.outcome = "DEPLOYING"
    plane = ray_plane(start_control_plane, head, "--ray-deploy-timeout", "2")
    job = create(plane, "huge", resources={"cpu_count": 8}, endpoint={"replicas": 2})
    began = time.monotonic()
    failed = wait_status(plane, job["id"], "failed", timeout=30)
    assert time.monotonic() - began >= 1.0
    assert failed["reason"] == ("insufficient resources: 2 replica(s) of 8 CPU(s) asked, "
                                "the cluster has 3 CPU(s) free of 4")
    wait_until(lambda: f"ep-{job['id']}" not in head.apps, timeout=10, message="the stuck application removed")


def test_a_job_that_never_served_fails_at_its_deadline_while_serve_still_deletes_its_application(
        start_control_plane, head):
    # Serve deletes an application whose replica was never placed only once the replica's stop grace has passed (it
    # cannot answer the stop): the job said failed 36 s after its deadline. Now it fails at the deadline; the
    # removal goes on, its URL answering 503 "stopping" meanwhile, and a start of the job waits for it.
    head.outcome = "DEPLOYING"
    head.hold_deletes = True
    plane = ray_plane(start_control_plane, head, "--ray-deploy-timeout", "2")
    job = create(plane, "huge", resources={"cpu_count": 8})
    name = f"ep-{job['id']}"
    failed = wait_status(plane, job["id"], "failed", timeout=30)  # REMOVE_TIMEOUT (60 s) without the removal behind
    assert failed["reason"].startswith("insufficient resources: 1 replica(s) of 8 CPU(s) asked")
    # The removal was registered before the job said failed; its request to Serve follows on the next loop turns.
    wait_until(lambda: head.apps[name]["status"] == "DELETING", timeout=30, interval=0.05, message="the removal sent")
    assert name not in head.last_put() and _fallback_states(head.puts[-1]) == {job["id"]: "stopping"}

    started = plane.api("POST", f"/api/jobs/{job['id']}/start")
    assert started.status_code == 200, started.text
    head.hold_deletes = False
    wait_until(lambda: head.history.count(("deployed", name)) == 2, timeout=30, interval=0.1,
               message="the job deployed again")
    head.hold_deletes = True
    assert [what for what, app in head.history if app == name] == ["deployed", "deleted", "deployed"], \
        "deployed again once it was gone"
    wait_status(plane, job["id"], "failed", timeout=30)  # at its deadline again (still unschedulable)

    # A control plane that stops waits for the removal it left going on: nothing stays behind on the cluster.
    wait_until(lambda: head.apps[name]["status"] == "DELETING", timeout=30, interval=0.1, message="the removal")
    stopping = threading.Thread(target=plane.stop)
    stopping.start()
    wait_until(lambda: "stopping endpoints" in plane.log(), timeout=30, interval=0.1, message="the shutdown")
    head.hold_deletes = False
    stopping.join(60)
    assert name not in head.apps
    assert _fallback_states(head.puts[-1]) == {}, "the fallback told it is gone"


@pytest.mark.parametrize("status, expected", [
    (None, "stopped"), ("NOT_STARTED", "starting"), ("DEPLOYING", "starting"), ("RUNNING", "running"),
    ("UNHEALTHY", "running"), ("DEPLOY_FAILED", "failed"), ("DELETING", "stopped"),
    ("A_NEWER_RAYS_STATUS", "starting"),  # until the deploy times out
])
def test_serve_statuses_map_to_job_statuses(status, expected):
    app = None if status is None else {"status": status, "message": "why", "deployments": {}}
    assert job_status(app)[0] is JobStatus(expected)


def test_the_token_goes_to_the_head_as_a_bearer_token(start_control_plane, tmp_path):
    head = FakeHead(token="s3cret")
    try:
        (tmp_path / "token").write_text("s3cret\n")
        plane = ray_plane(start_control_plane, head, "--ray-token-file", str(tmp_path / "token"))
        job = create(plane, "auth")
        wait_status(plane, job["id"], "running")
        assert head.auth and set(head.auth) == {"Bearer s3cret"}
        backend = plane.api("GET", "/api/backend").json()
        assert backend["backend"] == "ray" and backend["resources"]["CPU"] == {"used": 1.0, "total": 4.0}
    finally:
        head.close()


def test_autoscaling_settings_and_ray_actor_options_reach_serve_and_job_get_shows_the_replicas(
        start_control_plane, head, tmp_path):
    plane = ray_plane(start_control_plane, head)
    job = create(plane, "tuned", endpoint={"min_replicas": 1, "max_replicas": 3, "upscale_delay": 2,
                                           "downscale_delay": 15, "target_ongoing": 1.5,
                                           "ray_actor_options": {"memory": 268435456, "resources": {"fast_disk": 1}}})
    running = wait_status(plane, job["id"], "running")
    options = head.last_put()[f"ep-{job['id']}"]["args"]["deployment"]
    assert options["autoscaling_config"] == {"min_replicas": 1, "initial_replicas": 1, "max_replicas": 3,
                                             "target_ongoing_requests": 1.5, "upscale_delay_s": 2,
                                             "downscale_delay_s": 15}
    assert options["ray_actor_options"] == {"memory": 268435456, "resources": {"fast_disk": 1}, "num_cpus": 1,
                                            "num_gpus": 0}
    assert running["endpoint"]["upscale_delay"] == 2 and running["endpoint"]["target_ongoing"] == 1.5
    # Live replicas as Serve reports them, in the record and in `job get`.
    record = wait_until(lambda: (r := plane.api("GET", f"/api/jobs/{job['id']}").json())["replicas"] and r,
                        timeout=10, interval=0.1, message="the live replicas in the record")
    assert record["replicas"] == [{"replica_id": "r1", "state": "RUNNING", "pid": 4242, "node_ip": None}]
    env = {**os.environ, "TRAINML_HOME": str(plane.home), "TRAINML_API_URL": plane.url,
           "TRAINML_API_TOKEN": plane.token, "NO_COLOR": "1"}
    shown = subprocess.run([sys.executable, "-m", "trainml_cli", "job", "get", "tuned"], capture_output=True,
                           text=True, timeout=60, env=env)
    assert ("configured: 1-3 autoscaled: aiming at 1.5 call(s) in flight per replica, "
            "adding one after 2s") in shown.stdout
    assert "removing one after 15s below" in shown.stdout and "live: 1 running" in shown.stdout
    assert "RUNNING pid 4242" in shown.stdout and '"memory": 268435456' in shown.stdout
    traffic = plane.api("GET", f"/api/dashboard/traffic?job={job['id']}&span=5m").json()
    assert traffic["jobs"][0]["replicas"][0]["pid"] == 4242, "the dashboard's chart shows the live count"


@pytest.mark.parametrize("endpoint, field, words", [
    ({"ray_actor_options": {"memroy": 1}}, "endpoint.ray_actor_options.memroy",
     "not one of Ray Serve's replica options"),
    ({"ray_actor_options": {"num_cpus": 0.5}}, "endpoint.ray_actor_options.num_cpus", "give --cpu-count"),
    ({"ray_actor_options": {"memory": "2G"}}, "endpoint.ray_actor_options.memory", "must be a number of bytes"),
    ({"ray_actor_options": {"resources": {"GPU": 1}}}, "endpoint.ray_actor_options.resources", "not a custom resource"),
    ({"ray_actor_options": ["memory"]}, "endpoint.ray_actor_options", "valid dictionary"),
    ({"min_replicas": 1, "upscale_delay": -1}, "endpoint.upscale_delay", "between 0 and 86400 seconds"),
    ({"min_replicas": 1, "downscale_delay": "soon"}, "endpoint.downscale_delay", "valid number"),
    ({"min_replicas": 1, "target_ongoing": 0}, "endpoint.target_ongoing", "must be above 0"),
    ({"min_replicas": 1, "target_ongoing": 9}, "endpoint.target_ongoing", "more than max_concurrency (8)"),
    ({"replicas": 2, "downscale_delay": 5}, "endpoint.downscale_delay", "give min_replicas and/or max_replicas"),
])
def test_bad_scaling_settings_and_actor_options_are_422_naming_the_field(refusing_ray, endpoint, field, words):
    plane, head = refusing_ray
    upload = plane.api("POST", "/api/uploads", data=_tar(MODELS / "echo"), headers={"Content-Type": "application/gzip"})
    answer = plane.api("POST", "/api/jobs", json={
        "name": "bad", "model": {"source_type": "local", "upload_id": upload.json()["id"]},
        "endpoint": {"routes": [route()], **endpoint}})
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["message"].startswith(field + ": ") and words in body["message"], body["message"]
    # Where, as data, for the checks of our own (the request's shape is pydantic's, which says it in the message).
    assert body.get("fields", [{"field": field}])[0]["field"] == field
    assert plane.api("GET", "/api/jobs").json() == [] and head.puts == []


def test_usage_errors_for_backend_and_replica_options(shared_plane, tmp_path):
    env = {**os.environ, "TRAINML_HOME": str(tmp_path / "h")}
    result = subprocess.run([sys.executable, "-m", "trainml_cli.server", "--home", str(tmp_path / "h"),
                             "--backend", "ray"],
                            capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode == 2 and "--backend ray needs --ray-address" in result.stderr
    assert "Traceback" not in result.stderr
    result = subprocess.run([sys.executable, "-m", "trainml_cli", "job", "create", "endpoint", "x", "--model-dir",
                             str(MODELS / "echo"), "--route", json.dumps(route()), "--replicas", "2",
                             "--min-replicas", "1"], capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode == 2 and "not both" in result.stderr
    # The local backend autoscales worker processes up to one per CPU of this machine: past that is 422 naming
    # the field, with nothing created; Ray's replica options need Ray.
    upload = shared_plane.api("POST", "/api/uploads", data=_tar(MODELS / "echo"),
                              headers={"Content-Type": "application/gzip"})
    for endpoint, words in (({"min_replicas": 1, "max_replicas": 100_000}, "endpoint.max_replicas: 100000 is more "
                                                                           "than this machine's"),
                            ({"ray_actor_options": {"memory": 1024}}, "endpoint.ray_actor_options: Ray's replica "
                                                                      "options need the Ray backend")):
        answer = shared_plane.api("POST", "/api/jobs", json={
            "name": "ray-only", "model": {"source_type": "local", "upload_id": upload.json()["id"]},
            "endpoint": {"routes": [route()], **endpoint}})
        assert answer.status_code == 422 and words in answer.json()["message"], answer.text
    assert shared_plane.api("GET", "/api/jobs").json() == []


def test_the_control_plane_never_imports_ray():
    code = ("import sys, trainml_cli.server.app, trainml_cli.server.backends.ray, trainml_cli.server.backends.rayapps; "
            "sys.exit('ray' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_what_ray_replicas_cannot_honour_is_refused_not_ignored(refusing_ray):
    plane, head = refusing_ray
    upload = plane.api("POST", "/api/uploads", data=_tar(MODELS / "echo"), headers={"Content-Type": "application/gzip"})
    answer = plane.api("POST", "/api/jobs", json={
        "name": "refused", "model": {"source_type": "local", "upload_id": upload.json()["id"]},
        "endpoint": {"routes": [route()]}, "environment": {"python": "3.11"}})
    assert answer.status_code == 422 and "replicas run on the Ray cluster's own Python" in answer.json()["message"]
    assert plane.api("GET", "/api/jobs").json() == [] and head.puts == []


def test_a_requirements_file_linked_out_of_a_git_model_never_reaches_the_cluster(start_control_plane, head, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("top-secret-token\n")
    repo = tmp_path / "repo"
    shutil.copytree(MODELS / "echo", repo)
    (repo / "requirements.txt").symlink_to(secret)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "a link out"], check=True)
    plane = ray_plane(start_control_plane, head)
    answer = plane.api("POST", "/api/jobs", json={"name": "linked", "type": "endpoint",
                                                  "model": {"source_type": "git", "source_uri": repo.as_uri()},
                                                  "endpoint": {"routes": [route()]}})
    assert answer.status_code == 201, answer.text
    failed = wait_status(plane, answer.json()["id"], "failed")
    assert "requirements.txt" in failed["reason"] and "leaves the model folder" in failed["reason"], failed["reason"]
    assert head.puts == [] and head.uploads == [], "nothing sent to the cluster"


def _package(head, app) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(head.packages[app["runtime_env"]["working_dir"][len("gcs://"):]]))


def _key_package(head, app) -> str:
    """The key in the package the deployment's user_config names (what the replicas' reconfigure reads)."""
    [deployment] = app["deployments"]
    assert deployment["name"] == "endpoint" and set(deployment["user_config"]) == {"key_package"}
    name = deployment["user_config"]["key_package"][len("gcs://"):]
    member = zipfile.ZipFile(io.BytesIO(head.packages[name]))
    assert member.namelist() == ["endpoint.key"]
    return member.read("endpoint.key").decode().strip()


def test_an_endpoint_key_travels_in_packages_never_in_serves_config_and_rotation_reconfigures_the_replicas(
        start_control_plane, head):
    plane = ray_plane(start_control_plane, head)
    job = create(plane, "keyed", endpoint={"auth": True})
    wait_status(plane, job["id"], "running")
    key = plane.api("GET", f"/api/jobs/{job['id']}/connect").json()["key"]
    app = head.last_put()[f"ep-{job['id']}"]
    argv = app["args"]["argv"]
    assert argv[argv.index("--key-file") + 1] == "endpoint.key", "relative to the replica's working dir"
    package = _package(head, app)
    assert package.read("endpoint.key").decode().strip() == key
    assert (package.getinfo("endpoint.key").external_attr >> 16) & 0o777 == 0o600, "Ray unpacks it with this mode"
    assert _key_package(head, app) == key
    # Ray's dashboard shows every application's config: the key must not be in what we PUT.
    assert key not in json.dumps(head.puts)
    working_dir, uploads = app["runtime_env"]["working_dir"], len(head.uploads)

    rotated = plane.api("POST", f"/api/jobs/{job['id']}/rotate-key")
    assert rotated.status_code == 200, rotated.text
    new_key = rotated.json()["key"]
    assert new_key != key and new_key not in json.dumps(head.puts) and key not in json.dumps(head.puts)
    app = head.last_put()[f"ep-{job['id']}"]
    # Only the user_config changes (a lightweight update: Serve reconfigures the replicas, replaces none).
    assert app["runtime_env"]["working_dir"] == working_dir and app["args"] == head.puts[0]["applications"][0]["args"]
    assert _key_package(head, app) == new_key
    assert len(head.uploads) == uploads + 1, "the new key's package alone"
    assert plane.api("GET", f"/api/jobs/{job['id']}").json()["status"] == "running"
    logs = plane.api("GET", f"/api/jobs/{job['id']}/logs?limit=200").text
    assert "key rotated; the previous key stops working once Ray Serve has reconfigured the replicas" in logs
    for text in (logs, plane.api("GET", f"/api/jobs/{job['id']}").text, plane.log()):
        assert key not in text and new_key not in text

    # A stopped job's application stays gone; its next start deploys the newest key.
    plane.api("POST", f"/api/jobs/{job['id']}/stop")
    wait_status(plane, job["id"], "stopped")
    puts = len(head.puts)
    newest = plane.api("POST", f"/api/jobs/{job['id']}/rotate-key").json()["key"]
    assert len(head.puts) == puts and f"ep-{job['id']}" not in head.apps
    plane.api("POST", f"/api/jobs/{job['id']}/start")
    wait_status(plane, job["id"], "running")
    app = head.last_put()[f"ep-{job['id']}"]
    assert _package(head, app).read("endpoint.key").decode().strip() == newest == _key_package(head, app)


def test_a_control_plane_on_another_backend_leaves_a_ray_job_alone(start_control_plane, head):
    plane = ray_plane(start_control_plane, head)
    job = create(plane, "far")
    url = wait_status(plane, job["id"], "running")["url"]
    puts = len(head.puts)
    plane.kill()  # kill -9: the application serves on

    local = start_control_plane("--backend", "local", home=plane.home)
    record = local.api("GET", f"/api/jobs/{job['id']}").json()
    assert (record["status"], record["url"], record["pid"], record.get("backend")) == ("running", None, None, "ray")
    assert "launched on the ray backend" in record["reason"] and "--backend ray" in record["reason"]
    assert local.endpoint_pids() == [], "not launched again on this machine"
    stopped = local.api("POST", f"/api/jobs/{job['id']}/stop")
    assert stopped.status_code == 409 and "launched on the ray backend" in stopped.json()["message"]
    assert local.api("DELETE", f"/api/jobs/{job['id']}?force=true").status_code == 409
    logs = [e["message"] for e in local.api("GET", f"/api/jobs/{job['id']}/logs?limit=200").json()["logs"]]
    assert any("left as it is" in m for m in logs)
    local.stop()

    # Its own backend's control plane adopts it: the application was never removed nor deployed again.
    assert len(head.puts) == puts and f"ep-{job['id']}" in head.apps
    back = start_control_plane("--backend", "ray", home=plane.home)  # the Ray address: the saved one
    adopted = wait_status(back, job["id"], "running")
    assert (adopted["url"], adopted["reason"], adopted["backend"]) == (url, None, "ray")
    assert len(head.puts) == puts


def _upload(plane):
    return plane.api("POST", "/api/uploads", data=_tar(MODELS / "echo"),
                     headers={"Content-Type": "application/gzip"}).json()["id"]


def test_gpus_are_the_clusters_checked_at_create_and_asked_of_ray_by_accelerator_type(start_control_plane, head):
    head.nodes = [("node-a", {"CPU": 8.0, "GPU": 2.0, "accelerator_type:A100": 1.0, "memory": 8.0 * 1024**3}),
                  ("node-b", {"CPU": 8.0, "GPU": 1.0, "accelerator_type:GeForce-RTX-3090": 1.0,
                              "memory": 8.0 * 1024**3})]
    plane = ray_plane(start_control_plane, head, "--gpus", "none")

    # `gpu list` is the cluster's GPUs, not this machine's (none declared here).
    rows = {row["type"]: row for row in plane.api("GET", "/api/gpus").json()}
    assert (rows["a100"]["count"], rows["a100"]["names"], rows["rtx3090"]["count"]) == (2, ["A100"], 1)
    assert rows["a100"]["where"] == "the Ray cluster" and rows["h100"]["count"] == 0

    # Our type names become Ray's accelerator types; a fraction of a GPU is Ray's to share.
    job = create(plane, "big", resources={"gpu_types": ["a100"], "gpu_count": 2})
    wait_status(plane, job["id"], "running")
    actor = head.last_put()[f"ep-{job['id']}"]["args"]["deployment"]["ray_actor_options"]
    assert (actor["num_gpus"], actor["accelerator_type"]) == (2, "A100")
    half = create(plane, "half", resources={"gpu_types": ["rtx3090", "a100"], "gpu_count": 0.5},
                  endpoint={"replicas": 2})
    wait_status(plane, half["id"], "running")
    actor = head.last_put()[f"ep-{half['id']}"]["args"]["deployment"]["ray_actor_options"]
    assert (actor["num_gpus"], actor["accelerator_type"]) == (0.5, "GeForce-RTX-3090"), "the cheaper type that fits"
    assert half["resources"]["gpu_count"] == 0.5

    # What no node could hold is refused at create, naming what the cluster has, with nothing created.
    jobs_before = [j["id"] for j in plane.api("GET", "/api/jobs").json()]
    for resources, replicas in (({"gpu_types": ["a100"], "gpu_count": 3}, 1),
                                ({"gpu_types": ["h100"], "gpu_count": 1}, 1),
                                ({"gpu_types": ["rtx3090"], "gpu_count": 1}, 2)):
        answer = plane.api("POST", "/api/jobs", json={
            "name": "nofit", "resources": resources, "model": {"source_type": "local", "upload_id": _upload(plane)},
            "endpoint": {"routes": [route()], "replicas": replicas}})
        assert answer.status_code == 422, answer.text
        message = answer.json()["message"]
        assert ("do not fit the Ray cluster: it has 3 GPUs: "
                "2 A100 on 10.0.0.1, 1 GeForce-RTX-3090 on 10.0.0.2") in message
        assert answer.json()["fields"][0]["field"] == "resources.gpu_count"
    assert [j["id"] for j in plane.api("GET", "/api/jobs").json()] == jobs_before


def test_a_fraction_of_a_gpu_is_refused_on_the_local_backend_saying_why(shared_plane):
    upload = shared_plane.api("POST", "/api/uploads", data=_tar(MODELS / "echo"),
                              headers={"Content-Type": "application/gzip"}).json()["id"]
    answer = shared_plane.api("POST", "/api/jobs", json={
        "name": "half", "resources": {"gpu_types": ["rtx3090"], "gpu_count": 0.5},
        "model": {"source_type": "local", "upload_id": upload}, "endpoint": {"routes": [route()]}})
    assert answer.status_code == 422
    assert "0.5 is not a whole number: this machine hands out whole GPUs" in answer.json()["message"]
    assert shared_plane.api("GET", "/api/jobs").json() == []


def test_serve_listening_elsewhere_than_the_control_plane_was_told_refuses_the_deploy(start_control_plane, head):
    head.http_options = {"host": "0.0.0.0", "port": int(head.port)}  # Serve started earlier, by someone else
    plane = ray_plane(start_control_plane, head)
    job = create(plane, "elsewhere")
    failed = wait_status(plane, job["id"], "failed")
    assert (f"Ray Serve on the cluster listens on 0.0.0.0:{head.port} (fixed when Serve first started), not on "
            f"127.0.0.1:{head.port}") in failed["reason"]
    assert not head.puts, "nothing deployed"


def test_status_counts_one_machines_memory_once_and_names_the_clusters_python(start_control_plane, head):
    head.nodes = [("same-host", {"CPU": 2.0, "memory": 8.0 * 1024**3}),
                  ("same-host", {"CPU": 2.0, "memory": 8.0 * 1024**3}),
                  ("other-host", {"CPU": 2.0, "memory": 4.0 * 1024**3})]
    plane = ray_plane(start_control_plane, head)
    backend = plane.api("GET", "/api/backend").json()
    assert backend["resources"]["memory"]["total"] == 12 * 1024**3, "8 GiB of the shared host once, and 4 GiB"
    assert backend["resources"]["CPU"]["total"] == 6.0, "CPUs are each node's own"
    assert backend["python"] == "the Ray cluster's (3.11.7)"
    job = create(plane, "py")
    wait_status(plane, job["id"], "running")
    assert plane.api("GET", f"/api/jobs/{job['id']}").json()["environment"]["default_python"] == \
        "the Ray cluster's (3.11.7)"


def test_server_start_on_ray_says_what_serve_exposes_and_the_docs_say_what_listens_where(head, tmp_path):
    home = tmp_path / "warned"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINML_")}
    env.update(TRAINML_HOME=str(home), NO_COLOR="1")
    base = [sys.executable, "-m", "trainml_cli", "server"]
    started = subprocess.run(base + ["start", "--backend", "ray", "--ray-address", head.url, "--ray-serve-host",
                                     "0.0.0.0", "--ray-serve-port", head.port], capture_output=True, text=True,
                             timeout=120, env=env)
    try:
        assert started.returncode == 0, started.stderr
        warning = " ".join(started.stderr.split())
        assert ("warning: Ray Serve listens on 0.0.0.0 on every node, in plain HTTP: anyone who can reach a node can "
                "call every endpoint created without --auth") in warning
        assert ("HAProxy listens on every interface of every node for its stats page (port "
                "RAY_SERVE_HAPROXY_STATS_PORT, default 8404) and its metrics (RAY_SERVE_HAPROXY_METRICS_PORT, "
                "default 9101), whatever --ray-serve-host says") in warning
    finally:
        subprocess.run(base + ["stop"], capture_output=True, text=True, timeout=60, env=env)
    page = " ".join((Path(__file__).resolve().parents[1] / "docs" / "ray.md").read_text().split())
    assert ("| HAProxy's stats page (8404) and Prometheus metrics (9101) | **every interface**, whatever "
            "`--ray-serve-host` says |") in page
    assert "RAY_SERVE_HAPROXY_SOCKET_PATH=" in page and "UV_OFFLINE=1 UV_FIND_LINKS=" in page




def test_a_replica_that_died_counts_as_a_restart_and_one_serve_stopped_does_not(start_control_plane, head):
    plane = ray_plane(start_control_plane, head)
    job = create(plane, "crashy")
    wait_status(plane, job["id"], "running")
    deployment = head.apps[f"ep-{job['id']}"]["deployments"]["endpoint"]
    new = {"replica_id": "r2", "actor_id": "b" * 32, "pid": 5151, "node_id": "n2", "node_ip": "10.0.0.5",
           "state": "RUNNING"}
    with head.lock:  # the replica's process was killed; Serve runs a new one in its place
        head.actors["a" * 32] = {"state": "DEAD", "death_cause": {"actor_died_error_context": {
            "reason": "WORKER_DIED", "error_message": "The actor is dead because its worker process has died."}}}
        deployment["replicas"] = [new]
    record = lambda: plane.api("GET", f"/api/jobs/{job['id']}").json()  # noqa: E731
    wait_until(lambda: record()["restarts"] == 1, timeout=10, message="the death counted")
    logs = lambda: plane.api("GET", f"/api/jobs/{job['id']}/logs?limit=200").text  # noqa: E731
    wait_until(lambda: "is serving again" in logs(), timeout=10, message="the replacement logged")
    assert ("replica r1 (pid 4242) on node n1 died: The actor is dead because its worker process has died.; "
            "Ray Serve replaces it") in logs()
    assert "replica r2 (pid 5151) on node 10.0.0.5 is serving again in place of r1" in logs()
    assert record()["status"] == "running"

    # A replica Serve stopped itself (scaled down, replaced by a new version) is not a restart.
    with head.lock:
        head.actors["b" * 32] = {"state": "DEAD", "death_cause": {"actor_died_error_context": {"reason": "RAY_KILL"}}}
        deployment["replicas"] = []
    wait_until(lambda: "b" * 32 in head.actor_reads, timeout=10, message="the stopped replica looked up")
    assert record()["restarts"] == 1


def _revise(plane, job_id, path="/revisions", **payload):
    answer = plane.api("POST", f"/api/jobs/{job_id}{path}", json=payload, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _statuses(plane, job_id):
    return [(r["revision"], r["status"]) for r in plane.api("GET", f"/api/jobs/{job_id}/revisions").json()]


def test_an_update_redeploys_the_same_application_with_the_new_package_and_a_rollback_its_stored_one(
        start_control_plane, head, tmp_path):
    head.add_foreign_app("someone-else")
    plane = ray_plane(start_control_plane, head)
    job = create(plane, "echo")
    running = wait_status(plane, job["id"], "running")
    name = f"ep-{job['id']}"
    first = head.last_put()[name]
    assert first["args"]["deployment"]["max_surge_percent"] == 100, "new replicas start before old ones stop"

    changed = _model(tmp_path, {"predict.py": "def predict(text):\n    return {'version': 2}\n"})
    upload = plane.api("POST", "/api/uploads", data=_tar(changed), headers={"Content-Type": "application/gzip"})
    revision = _revise(plane, job["id"], model={"source_type": "local", "upload_id": upload.json()["id"]},
                       endpoint={"replicas": 2})
    assert revision["revision"] == 2 and revision["status"] == "serving", revision
    apps = head.last_put()
    assert set(apps) == {"someone-else", name, FALLBACK}, "the other applications are kept as they run"
    second = apps[name]
    # Serve's rolling update of the same application: same name and prefix (the URL), new package and options.
    assert second["route_prefix"] == first["route_prefix"] and second["import_path"] == first["import_path"]
    assert second["runtime_env"]["working_dir"] != first["runtime_env"]["working_dir"]
    package = zipfile.ZipFile(io.BytesIO(head.packages[second["runtime_env"]["working_dir"][len("gcs://"):]]))
    assert b"'version': 2" in package.read("model/predict.py")
    assert second["args"]["deployment"]["num_replicas"] == 2
    assert plane.api("GET", f"/api/jobs/{job['id']}").json()["url"] == running["url"]
    assert _statuses(plane, job["id"]) == [(1, "retired"), (2, "serving")]

    # Scaling alone is a revision too: the same package, Serve's new replica count.
    scaled = _revise(plane, job["id"], endpoint={"replicas": 3})
    assert scaled["status"] == "serving"
    third = head.last_put()[name]
    assert third["runtime_env"] == second["runtime_env"] and third["args"]["deployment"]["num_replicas"] == 3

    uploads = len(head.uploads)
    rolled = _revise(plane, job["id"], "/rollback", to=1)
    assert rolled["revision"] == 1 and rolled["status"] == "serving", rolled
    assert head.last_put()[name] == first, "revision 1's own application, as it was deployed"
    assert len(head.uploads) == uploads, "nothing uploaded: the cluster still had revision 1's package"
    assert _statuses(plane, job["id"]) == [(1, "serving"), (2, "retired"), (3, "retired")]
    assert plane.api("GET", f"/api/jobs/{job['id']}").json()["status"] == "running"


def test_a_revision_serve_cannot_deploy_fails_and_the_serving_ones_application_is_put_back(start_control_plane,
                                                                                          head):
    plane = ray_plane(start_control_plane, head, "--ray-deploy-timeout", "4")
    job = create(plane, "echo")
    wait_status(plane, job["id"], "running")
    name = f"ep-{job['id']}"
    serving = head.last_put()[name]
    head.next_outcomes = ["DEPLOY_FAILED"]
    head.failure = "Traceback (most recent call last):\nModuleNotFoundError: No module named 'weights'"
    revision = _revise(plane, job["id"], endpoint={"replicas": 2})
    assert revision["status"] == "failed" and "No module named 'weights'" in revision["reason"], revision
    assert [put["applications"][0]["args"]["deployment"]["num_replicas"] for put in head.puts] == [1, 2, 1]
    assert head.last_put()[name] == serving, "the serving revision's application, exactly as it ran"
    assert _statuses(plane, job["id"]) == [(1, "serving"), (2, "failed")]
    wait_status(plane, job["id"], "running")
    logs = plane.api("GET", f"/api/jobs/{job['id']}/logs").text
    assert "Ray Serve gets the serving revision's application back" in logs

    # One that Ray cannot place by the deadline fails saying what is missing; the old application again.
    head.next_outcomes = ["DEPLOYING"]
    revision = _revise(plane, job["id"], resources={"cpu_count": 64})
    assert revision["status"] == "failed" and "CPU" in revision["reason"], revision
    assert head.last_put()[name] == serving
    assert plane.api("GET", f"/api/jobs/{job['id']}").json()["status"] == "running"


def test_an_update_on_ray_changes_gpus_and_turns_auth_on_and_off_with_serves_rolling_update(start_control_plane,
                                                                                           head):
    head.nodes = [("node-a", {"CPU": 8.0, "GPU": 2.0, "accelerator_type:A100": 1.0, "memory": 8.0 * 1024**3})]
    plane = ray_plane(start_control_plane, head, "--gpus", "none")
    job = create(plane, "grows")
    wait_status(plane, job["id"], "running")
    name = f"ep-{job['id']}"

    # GPUs: the new revision's replicas ask Ray for them (its rolling update starts them beside the old ones).
    gpu = _revise(plane, job["id"], resources={"gpu_types": ["a100"], "gpu_count": 1})
    assert gpu["status"] == "serving" and gpu["gpus"] == "1 x a100", gpu
    actor = head.last_put()[name]["args"]["deployment"]["ray_actor_options"]
    assert (actor["num_gpus"], actor["accelerator_type"]) == (1, "A100")
    assert plane.api("GET", f"/api/jobs/{job['id']}").json()["resources"]["gpu_count"] == 1
    # What the cluster could never hold is refused before anything is deployed.
    puts = len(head.puts)
    refused = plane.api("POST", f"/api/jobs/{job['id']}/revisions", json={"resources": {"gpu_count": 4}})
    assert refused.status_code == 422 and "do not fit the Ray cluster" in refused.json()["message"], refused.text
    assert len(head.puts) == puts

    # Auth on: the key in the revision's package and its own key package, never in Serve's config.
    keyed = _revise(plane, job["id"], endpoint={"auth": True})
    assert keyed["status"] == "serving" and keyed["auth"] is True, keyed
    key = plane.api("GET", f"/api/jobs/{job['id']}/connect").json()["key"]
    app = head.last_put()[name]
    argv = app["args"]["argv"]
    assert key and argv[argv.index("--key-file") + 1] == "endpoint.key"
    assert _package(head, app).read("endpoint.key").decode().strip() == key == _key_package(head, app)
    assert key not in json.dumps(head.puts)
    # rotate-key reaches the replicas of the revision that turned auth on.
    new_key = plane.api("POST", f"/api/jobs/{job['id']}/rotate-key").json()["key"]
    assert new_key != key and _key_package(head, head.last_put()[name]) == new_key
    wait_until(lambda: head.apps[name]["status"] == "RUNNING", timeout=30, message="the replicas reconfigured")

    # A revision that fails leaves the keyed one serving as it was, its key package still the current one.
    serving = head.last_put()[name]
    head.next_outcomes = ["DEPLOY_FAILED"]
    head.failure = "Traceback (most recent call last):\nModuleNotFoundError: No module named 'weights'"
    failed = _revise(plane, job["id"], endpoint={"auth": False})
    assert failed["status"] == "failed" and "No module named 'weights'" in failed["reason"], failed["reason"]
    assert head.last_put()[name] == serving
    wait_until(lambda: head.apps[name]["status"] == "RUNNING", timeout=30, message="the serving one back")
    assert plane.api("GET", f"/api/jobs/{job['id']}/connect").json()["key"] == new_key

    # Auth off: replicas without a key file, no key package; the key is dropped.
    open_ = _revise(plane, job["id"], endpoint={"auth": False})
    assert open_["status"] == "serving" and open_["auth"] is False, open_["reason"]
    app = head.last_put()[name]
    assert "--key-file" not in app["args"]["argv"] and "deployments" not in app
    assert "endpoint.key" not in _package(head, app).namelist()
    assert not plane.api("GET", f"/api/jobs/{job['id']}/connect").json().get("key")
    assert _statuses(plane, job["id"]) == [(1, "retired"), (2, "retired"), (3, "retired"), (4, "failed"),
                                           (5, "serving")]
