"""Shared fixtures: a real control plane on an ephemeral loopback port, in a temporary TRAINML_HOME.

`control_plane` starts `python -m trainml_cli.server --home TMP --port 0` as a subprocess, waits for the
address file and the health check, and yields a ControlPlane with its url, token, home and a `client()`
factory for the SDK. Teardown stops it and kills every process whose command line names the home (the
endpoints), so no test leaves anything running. `start_control_plane(**options)` makes more, or with options
(declared GPUs).

Every test gets its tier's marker from where it lives (pytest_collection_modifyitems): tests/unit/ `unit` (in
process, see unit/conftest.py), the two-node Ray cluster and Chromium `e2e`, the rest `integration`.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from trainml_cli.settings import Settings

# The suite starts a few hundred Python processes (control planes, endpoints, CLIs). Where the environment says
# not to write bytecode (PYTHONDONTWRITEBYTECODE, as on some CI images), each of them would compile our source
# again, about 90 ms of CPU per control plane: they share one cache for the session instead, outside the tree.
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None and "PYTHONPYCACHEPREFIX" not in os.environ:
    os.environ["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="trainml-pycache-")  # 0700: ours alone
    atexit.register(shutil.rmtree, os.environ["PYTHONPYCACHEPREFIX"], ignore_errors=True)

MODELS = Path(__file__).parent / "models"
UNIT = Path(__file__).parent / "unit"
# A real two-node Ray cluster (test_ray_backend.py's Ray is a fake head: integration) or Chromium.
E2E = frozenset({"test_ray.py", "test_dashboard_browser.py", "test_dashboard_pages.py", "test_dashboard_requests.py"})


# The longest files (a real Ray cluster, one module fixture, a worker's whole run for minutes; then Chromium's and
# the Ray backend's) go first, so their workers start on them at once while the others take every other file in
# turn; the unit tier's many short files come last and even out the end. xdist keeps this order (setup.cfg:
# --no-loadscope-reorder).
FIRST = ("test_ray.py", "test_dashboard_browser.py", "test_ray_backend.py")


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: two workers per core. Most tests spend their time waiting on processes they started (control
    planes, endpoints, the Ray cluster, Chromium): with a worker per core the cores sat idle 40 to 85% of the time
    (vmstat), and the suite took 9 min 40 s here against 7 min 15 s with two per core (2 cores)."""
    return 2 * len(os.sched_getaffinity(0))


def pytest_collection_modifyitems(items):
    """Each test's tier from where it lives, so `pytest -m unit` (or `-m "not e2e"`) needs no marker in any file;
    and the order the workers take files in (FIRST)."""
    first = {name: rank for rank, name in enumerate(FIRST)}
    items.sort(key=lambda item: first.get(Path(str(item.fspath)).name, len(FIRST)))  # stable: files keep their order
    for item in items:
        path = Path(str(item.fspath))
        if UNIT in path.parents:
            item.add_marker(pytest.mark.unit)
        elif path.name in E2E:
            item.add_marker(pytest.mark.e2e)
        else:
            item.add_marker(pytest.mark.integration)


def route(path="/predict", function="predict", body=({"name": "text", "type": "str"},), verb="POST", file="predict"):
    return {"verb": verb, "path": path, "file": file, "function": function, "body": list(body)}


def run(coroutine):
    """Run an SDK coroutine from a plain test function."""
    return asyncio.run(coroutine)


def default_sigint() -> None:
    """preexec_fn for a child a test interrupts with SIGINT: run from a background job (`pytest ... &`), the shell
    starts pytest with SIGINT ignored, children inherit that, and Python then installs no KeyboardInterrupt
    handler, so the child would never see the Ctrl-C the test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_until(predicate, timeout=10.0, interval=0.05, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


class ControlPlane:
    def __init__(self, home: Path, args: list[str] | None = None, env: dict[str, str] | None = None):
        self.home = home
        self.args = args or []
        self.env = env or {}  # set in its environment besides this process's own (TRAINML_* left out)
        self.process: subprocess.Popen | None = None
        self.url: str | None = None
        self.verify = True  # what requests verifies it with: its certificate when it serves HTTPS
        self.token: str | None = None

    @property
    def settings(self) -> Settings:
        return Settings(home=self.home, api_url=self.url, token=self.token, autostart=False)

    @property
    def log_path(self) -> Path:
        return self.home / "test-server.log"

    def log(self) -> str:
        try:
            return self.log_path.read_text()
        except OSError:
            return ""

    def start(self, timeout: float = 30.0) -> ControlPlane:
        self.home.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "trainml_cli.server", "--home", str(self.home), "--port", "0", *self.args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINML_")} | self.env
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)
        server_file = self.home / "server.json"

        def answering():
            if self.process.poll() is not None:
                raise AssertionError(f"control plane exited with {self.process.returncode}:\n{self.log()}")
            try:
                info = json.loads(server_file.read_text())
            except (OSError, ValueError):
                return None
            if info.get("pid") != self.process.pid:
                return None
            try:
                # A TLS control plane's own (self-signed) certificate vouches for it, as clients of its home see it.
                return requests.get(info["url"] + "/api/health", timeout=1,
                                    verify=info.get("tls_certfile", True)).ok and info
            except requests.RequestException:
                return None

        info = wait_until(answering, timeout, message=f"the control plane to answer\n{self.log()}")
        self.url = info["url"]
        self.verify = info.get("tls_certfile", True)
        self.token = (self.home / "token").read_text().strip()
        return self

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def client(self):
        from trainml_cli import TrainML

        return TrainML(settings=self.settings)

    def api(self, method: str, path: str, *, auth: bool = True, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        kwargs.setdefault("verify", self.verify)
        return requests.request(method, self.url + path, headers=headers, timeout=kwargs.pop("timeout", 30), **kwargs)

    def endpoint_pids(self) -> list[int]:
        """Live processes whose command line names this home: the endpoints (and their workers)."""
        return processes_mentioning(str(self.home), exclude=(self.process.pid,))


def processes_mentioning(text: str, exclude=()) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid() or int(entry) in exclude:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry))
    return found


def kill_everything_under(home: Path) -> None:
    for pid in processes_mentioning(str(home)):
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(autouse=True)
def no_metrics_directory_left_behind():
    """A runtime app built in this process (the in-process tests) points PROMETHEUS_MULTIPROC_DIR at a folder of
    its own, removed when the app stops; left in os.environ, every process a later test starts would inherit a
    folder that is gone (Ray's monitor then dies on its first metric)."""
    saved = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    yield
    if saved is None:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = saved


@pytest.fixture(scope="session", autouse=True)
def shared_uv_cache(tmp_path_factory):
    """One uv download cache for every control plane of the session (each has its own TRAINML_HOME), so only the
    first environment build downloads anything. A developer's own UV_CACHE_DIR is used as it is."""
    if not os.environ.get("UV_CACHE_DIR"):
        os.environ["UV_CACHE_DIR"] = str(tmp_path_factory.mktemp("uv-cache"))
    yield


@pytest.fixture
def start_control_plane(tmp_path):
    started: list[ControlPlane] = []

    def start(*args: str, home: Path | None = None, env: dict[str, str] | None = None) -> ControlPlane:
        plane = ControlPlane(home or tmp_path / f"home{len(started) or ''}", list(args), env).start()
        started.append(plane)
        return plane

    yield start
    for plane in started:
        plane.stop()
    for plane in started:
        kill_everything_under(plane.home)


@pytest.fixture
def control_plane(start_control_plane) -> ControlPlane:
    return start_control_plane()


@pytest.fixture(scope="module")
def shared_plane(tmp_path_factory) -> ControlPlane:
    """One control plane for the tests of a module that only read it or are refused by it: many assert that no job
    or model was created (or, where no test on it sends a good archive, no upload), which holds only while no test
    on it creates one. A control plane's start costs about a second (FastAPI's and pydantic's imports, mostly), and
    the suite started one for each bad request."""
    plane = ControlPlane(tmp_path_factory.mktemp("shared") / "home").start()
    yield plane
    plane.stop()
    kill_everything_under(plane.home)
