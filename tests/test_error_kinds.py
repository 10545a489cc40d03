"""One error vocabulary: every error the endpoint runtime and the control plane's API answer has a kind that
errors.py knows, with that class's status, so the SDK raises the class the server meant (and the CLI its exit
code). In process: the runtime's ASGI app and the control plane's, through httpx's ASGITransport."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from trainml_cli import errors
from trainml_cli.errors import TrainMLError

KEY = "k" * 32
MODEL = '''
import os, time

while not os.path.exists({load_gate!r}):  # the model "loads" until the test lets it
    time.sleep(0.01)


def fail(text):
    raise ValueError(f"cannot handle {{text!r}}")


def block(gate):
    while not os.path.exists(gate):
        time.sleep(0.01)
    return {{"released": gate}}
'''


def _rebuilt(response: httpx.Response) -> TrainMLError:
    """What the SDK raises for this answer (sdk/http.py's raise_for, from the body and the status)."""
    body = response.json()
    error = TrainMLError.from_dict(body, response.status_code)
    assert error.kind == body["error"], f"kind {body['error']!r} ({response.status_code}) is not in errors.py"
    assert error.http_status == response.status_code
    return error


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    """The endpoint runtime's app in this process: one worker, one slot, no queue, 0.5 s calls, a 1 KiB body
    limit and a key; its model waits at import for `load_gate`."""
    from trainml_cli.routespec import parse_routes
    from trainml_cli.runtime.app import EndpointApp
    from trainml_cli.runtime.config import RuntimeConfig

    module = f"kinds_{uuid.uuid4().hex[:8]}"  # imported in this process: a name no other test uses
    root = tmp_path / "model"
    root.mkdir()
    load_gate = tmp_path / "loaded"
    (root / f"{module}.py").write_text(MODEL.format(load_gate=str(load_gate)))
    (tmp_path / "key").write_text(KEY)
    monkeypatch.syspath_prepend(str(root))
    routes = parse_routes([
        {"verb": "POST", "path": "/fail", "file": module, "function": "fail",
         "body": [{"name": "text", "type": "str"}]},
        {"verb": "POST", "path": "/block", "file": module, "function": "block",
         "body": [{"name": "gate", "type": "str"}]},
    ])
    config = RuntimeConfig(model_dir=str(root), routes=routes, max_concurrency=1, max_queue=0, timeout=0.5,
                           max_body_size=1024, key_file=str(tmp_path / "key"), access_log=False)
    return EndpointApp(config, root), load_gate


def test_every_error_the_runtime_answers_is_a_class_of_errors_py(runtime, tmp_path):
    app, load_gate = runtime
    gate = tmp_path / "gate"
    auth = {"Authorization": f"Bearer {KEY}"}

    async def scenario():
        async with LifespanManager(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://endpoint", headers=auth) as client:
                seen = {"loading": _rebuilt(await client.post("/fail", json={"text": "x"}))}
                load_gate.touch()
                for _ in range(1000):
                    if (await client.get("/ping")).status_code == 200:
                        break
                    await asyncio.sleep(0.01)
                seen["model_error"] = _rebuilt(await client.post("/fail", json={"text": "x"}))
                seen["invalid_request"] = _rebuilt(await client.post("/fail", json={"text": "x", "extra": 1}))
                seen["unsupported_media_type"] = _rebuilt(await client.post("/fail", content=b"x",
                                                                            headers={"Content-Type": "text/plain"}))
                seen["body_too_large"] = _rebuilt(await client.post("/fail", json={"text": "x" * 2000}))
                seen["not_found"] = _rebuilt(await client.get("/nowhere"))
                seen["method_not_allowed"] = _rebuilt(await client.get("/fail"))
                seen["unauthorized"] = _rebuilt(await client.post("/fail", json={"text": "x"},
                                                                  headers={"Authorization": "Bearer wrong"}))
                seen["timeout"] = _rebuilt(await client.post("/block", json={"gate": str(gate)}))
                seen["overloaded"] = _rebuilt(await client.post("/fail", json={"text": "x"}))  # /block holds the slot
                gate.touch()
                for _ in range(1000):  # the slot frees once block() returns: the app stops with no call running
                    if (await client.post("/fail", json={"text": "x"})).status_code != 503:
                        break
                    await asyncio.sleep(0.01)
                return seen

    seen = asyncio.run(scenario())
    assert {kind: type(error) for kind, error in seen.items()} == {
        "loading": errors.NotReady, "model_error": errors.ModelError, "invalid_request": errors.InvalidRequest,
        "unsupported_media_type": errors.UnsupportedMediaType, "body_too_large": errors.TooLarge,
        "not_found": errors.NotFound, "method_not_allowed": errors.MethodNotAllowed,
        "unauthorized": errors.Unauthorized, "timeout": errors.CallTimeout, "overloaded": errors.Overloaded,
    }
    assert str(seen["model_error"]) == "ValueError: cannot handle 'x'" and seen["model_error"].type == "ValueError"
    assert [f.to_dict() for f in seen["invalid_request"].fields] == [
        {"field": "body.extra", "message": "Extra inputs are not permitted"}]
    # What callers caught before these classes existed still catches them.
    assert isinstance(seen["model_error"], errors.ServerError)
    assert isinstance(seen["timeout"], errors.WaitTimeout)
    assert isinstance(seen["overloaded"], errors.Unavailable) and isinstance(seen["loading"], errors.Unavailable)
    assert isinstance(seen["invalid_request"], errors.UsageError) and seen["invalid_request"].exit_code == 2


def test_the_header_bound_answers_a_kind_of_errors_py():
    from trainml_cli.connections import too_large_body

    error = TrainMLError.from_dict(json.loads(too_large_body("endpoint")), 431)
    assert type(error) is errors.HeadersTooLarge and error.kind == "headers_too_large"


@pytest.fixture
def api(tmp_path):
    """The control plane's app in this process, on a home of its own; yields an httpx client with its token."""
    from trainml_cli.server.app import ServerOptions, create_app
    from trainml_cli.settings import Settings

    settings = Settings(home=tmp_path / "home", autostart=False)
    settings.home.mkdir()
    app = create_app(settings, ServerOptions(gpus="none"))

    async def client():
        transport = httpx.ASGITransport(app=app)
        token = Path(settings.token_path).read_text().strip()
        return httpx.AsyncClient(transport=transport, base_url="http://api",
                                 headers={"Authorization": f"Bearer {token}"})

    return app, client


def test_the_apis_own_422s_name_their_fields_and_the_sdk_rebuilds_them(api):
    app, make_client = api

    async def scenario():
        async with LifespanManager(app):
            async with await make_client() as client:
                query = await client.get("/api/jobs/x/logs", params={"limit": "many"})  # FastAPI validates it
                body = await client.post("/api/jobs", json={"name": "x"})  # no model, no endpoint
                return query, body

    query, body = asyncio.run(scenario())
    assert query.status_code == 422
    assert query.json()["fields"] == [{"field": "query.limit", "message": "Input should be a valid integer, unable "
                                                                           "to parse string as an integer"}]
    assert body.status_code == 422
    fields = {f["field"]: f["message"] for f in body.json()["fields"]}
    assert fields == {"model": "Field required", "endpoint": "Field required"}
    rebuilt = _rebuilt(body)
    assert type(rebuilt) is errors.UsageError
    assert {f.field: f.message for f in rebuilt.fields} == fields
    assert {f.loc for f in rebuilt.fields} == {("model",), ("endpoint",)}
