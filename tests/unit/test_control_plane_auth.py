"""Who may call the control plane: every route of the app's own route table, walked, so a route added tomorrow
is checked without anyone adding it to a list. /api routes answer 401 without the token, dashboard pages send
the browser to sign in, and only the routes named in OPEN answer anyone.

This replaces, in process, tests/test_server_api.py::test_every_api_route_needs_the_token (17 hand-listed
routes, one control plane process each)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

from .conftest import error_of

pytestmark = pytest.mark.anyio

# Open to anyone: health, the docs, the control plane's own metrics, and the dashboard's way in and out.
OPEN = {
    ("GET", "/api/health"), ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"),
    ("GET", "/metrics"), ("GET", "/"), ("GET", "/dashboard"), ("GET", "/dashboard/login"),
    ("POST", "/dashboard/logout"), ("GET", "/dashboard/signed-out"),
}


def route_table() -> list[tuple[str, str]]:
    """(method, path template) of every route the control plane's app serves, read from the app itself."""
    from trainml_cli.server.app import ServerOptions, create_app
    from trainml_cli.settings import Settings

    with tempfile.TemporaryDirectory() as home:  # create_app writes the token; nothing else happens until start
        app = create_app(Settings(home=Path(home), autostart=False), ServerOptions(gpus="none"))
        try:
            from fastapi.routing import iter_route_contexts
        except ImportError:  # FastAPI before 0.16x copied included routers' routes into app.routes
            routes = list(app.routes)
        else:  # since then an included router is one entry of app.routes
            routes = list(iter_route_contexts(app.routes))
    table = []
    for route in routes:
        for method in sorted(set(getattr(route, "methods", None) or ()) - {"HEAD"}):
            table.append((method, route.path))
        if not getattr(route, "methods", None):  # a mount: static files only
            assert route.path == "/dashboard/static", f"an unexpected mount {route.path}: decide who may read it"
    return table


TABLE = route_table()
GUARDED = [(m, p) for m, p in TABLE if (m, p) not in OPEN]


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def test_the_walk_found_the_whole_api():
    """The table is the app's: the routes this file was written against are all in it, and more."""
    assert len(GUARDED) >= 40
    for known in (("POST", "/api/jobs"), ("GET", "/api/jobs/{job}/logs/stream"), ("PUT", "/api/secrets/{name}"),
                  ("POST", "/api/uploads"), ("POST", "/api/dashboard/jobs"), ("GET", "/dashboard/jobs/{job_id}")):
        assert known in GUARDED
    assert OPEN <= set(TABLE), sorted(OPEN - set(TABLE))


@pytest.mark.parametrize("method, path", GUARDED, ids=[f"{m} {p}" for m, p in GUARDED])
async def test_every_route_needs_the_token_or_a_session(plane, method, path):
    target = concrete(path)
    missing = await plane.api(method, target, auth=False)
    if path.startswith("/api/"):
        body = error_of(missing)
        assert missing.status_code == 401, (method, path, missing.text)
        assert body["error"] == "unauthorized"
        assert body["message"] == ("this API needs a token: send 'Authorization: Bearer <token>' (the token is in "
                                   "TRAINML_HOME/token)")
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = await plane.api(method, target, headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401
        assert wrong.json()["message"].startswith("the API token is wrong")
        forged = await plane.api(method, target, auth=False,
                                 headers={"Cookie": "trainml_session=v1.9999999999.abc.0123"})
        assert forged.status_code == 401
    elif path.startswith("/dashboard/"):
        assert missing.status_code == 303, (method, path, missing.status_code)
        assert missing.headers["location"] == "/dashboard/signed-out"
    else:
        pytest.fail(f"{method} {path} is neither under /api nor /dashboard nor in OPEN: decide who may call it")


@pytest.mark.parametrize("method, path", sorted(OPEN), ids=[f"{m} {p}" for m, p in sorted(OPEN)])
async def test_the_open_routes_answer_without_a_token(plane, method, path):
    answer = await plane.api(method, path, auth=False)
    assert answer.status_code not in (401, 404, 405, 500), (method, path, answer.status_code)
    assert plane.token not in answer.text


async def test_the_token_lets_the_same_calls_through(plane):
    for path in ("/api/jobs", "/api/models", "/api/secrets", "/api/prices", "/api/gpus", "/api/prometheus/targets",
                 "/api/backend", "/api/environments"):
        assert (await plane.api("GET", path)).status_code == 200, path


async def test_the_token_file_is_private_to_its_owner(plane):
    assert (plane.home / "token").stat().st_mode & 0o777 == 0o600
    assert len(plane.token) >= 32
