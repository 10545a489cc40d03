"""The fast tier: both ASGI apps driven in process through httpx's ASGITransport, no subprocess and no socket.

`endpoint` builds the endpoint runtime's app (runtime/app.py) from a fixture model folder of tests/models, runs
its lifespan (asgi-lifespan: ASGITransport sends no lifespan events), waits for /ping to say the code loaded,
and returns an httpx client on it. `plane` does the same for the control plane's app (server/app.py) on a
temporary TRAINML_HOME, with the home's token sent by default. Everything a test starts is stopped at teardown.

Both apps are the ones uvicorn serves; only the transport differs. What needs a real socket or process (the
connection cap, slowloris, several workers, signals, the CLI against a control plane) stays in the integration
tests beside this folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from click.testing import CliRunner

from trainml_cli.routespec import parse_routes

MODELS = Path(__file__).parent.parent / "models"
READY_TIMEOUT = 20.0  # seconds for a fixture model's import; it takes milliseconds


def param(name: str, type: str, **extra) -> dict:
    return {"name": name, "type": type, **extra}


def route(path: str, function: str, body=(), verb: str = "POST", file: str = "predict", **extra) -> dict:
    return {"verb": verb, "path": path, "file": file, "function": function, "body": list(body), **extra}


@pytest.fixture
def anyio_backend():
    return "asyncio"


class EndpointClient(httpx.AsyncClient):
    """An httpx client on one EndpointApp; `app` is the app itself, for its health and load error."""

    app = None

    async def wait_loaded(self) -> httpx.Response:
        """/ping once the code has loaded or failed to: 200 ready, or 503 with the status "failed"."""
        deadline = asyncio.get_running_loop().time() + READY_TIMEOUT
        while True:
            ping = await self.get("/ping")
            if ping.status_code == 200 or ping.json()["status"] != "loading":
                return ping
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"the model code did not load within {READY_TIMEOUT}s")
            await asyncio.sleep(0.005)


@pytest.fixture
async def endpoint():
    """start(model, routes, wait=True, **RuntimeConfig fields) -> EndpointClient, the code loaded (or failed)."""
    from prometheus_client import values

    from trainml_cli.runtime.app import EndpointApp
    from trainml_cli.runtime.config import RuntimeConfig

    # The app points prometheus_client at its own metrics folder (process-wide) and imports the user's modules by
    # name ("predict" in every fixture model): both are put back, so the next app, or test, starts clean.
    saved_env = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    saved_value_class = values.ValueClass
    saved_path = list(sys.path)
    started: list[tuple[LifespanManager, EndpointClient, list[str]]] = []

    async def start(model: str, routes: list[dict], *, wait: bool = True, **config) -> EndpointClient:
        root = (MODELS / model).resolve()
        parsed = parse_routes(routes)
        modules = sorted({r.module_name for r in parsed})
        for name in modules:
            sys.modules.pop(name, None)
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))  # as runtime/loader.enter_model_dir does, without the chdir
        config.setdefault("access_log", False)
        app = EndpointApp(RuntimeConfig(model_dir=str(root), routes=parsed, **config), root)
        manager = LifespanManager(app, startup_timeout=READY_TIMEOUT, shutdown_timeout=READY_TIMEOUT)
        await manager.__aenter__()
        client = EndpointClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://endpoint")
        client.app = app
        started.append((manager, client, modules))
        if wait:
            await client.wait_loaded()
        return client

    yield start
    for manager, client, modules in reversed(started):
        await client.aclose()
        await manager.__aexit__(None, None, None)
        for name in modules:
            sys.modules.pop(name, None)
    sys.path[:] = saved_path
    values.ValueClass = saved_value_class
    if saved_env is None:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = saved_env


class PlaneClient(httpx.AsyncClient):
    """An httpx client on the control plane's app, sending the home's token unless `auth=False`."""

    app = None
    home: Path
    token: str

    async def api(self, method: str, path: str, *, auth: bool = True, **kwargs) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if auth:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        return await self.request(method, path, headers=headers, **kwargs)


@pytest.fixture
async def plane(tmp_path):
    """The control plane's app on a fresh TRAINML_HOME (no GPUs declared: nvidia-smi is never asked)."""
    from trainml_cli.server.app import ServerOptions, create_app
    from trainml_cli.settings import Settings

    home = tmp_path / "home"
    settings = Settings(home=home, autostart=False)
    home.mkdir()
    app = create_app(settings, ServerOptions(gpus="none"))
    async with LifespanManager(app, startup_timeout=READY_TIMEOUT, shutdown_timeout=READY_TIMEOUT) as manager:
        app.state.platform.url = "http://plane"
        async with PlaneClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://plane") as client:
            client.app = app
            client.home = home
            client.token = settings.token_path.read_text().strip()
            yield client


def error_of(response: httpx.Response) -> dict:
    """The JSON error body without its request_id, with the status checked to be an error's and the id to be the
    answer's X-Request-Id."""
    assert response.status_code >= 400, response.text
    body = response.json()
    if "request_id" in body or "x-request-id" in response.headers:  # the control plane's errors carry none
        assert body.pop("request_id") == response.headers["x-request-id"], response.text
    return body


@pytest.fixture
def cli(tmp_path):
    """run(*argv) -> (exit code, stdout, stderr) of `trainml ARGV` in process, offline: the control plane's URL is a
    closed loopback port and the home a new folder, so nothing is ever started or reached."""
    from trainml_cli.cli.main import main

    env = {"TRAINML_HOME": str(tmp_path / "home"), "TRAINML_API_URL": "http://127.0.0.1:9", "NO_COLOR": "1",
           "TRAINML_API_TOKEN": None, "COLUMNS": "200"}

    def run(*argv: str, input: str | None = None) -> tuple[int, str, str]:
        with CliRunner().isolation(env=env, input=input) as (out, err, _):
            code = main(list(argv))
        return code, out.getvalue().decode(), err.getvalue().decode()

    return run


def dumps(value) -> str:
    return json.dumps(value)
