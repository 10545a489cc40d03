"""The dashboard without a browser: sign-in links and the session cookie, what is refused without them, escaping,
the Create form's field errors, and the small pure pieces (cookie signing, error-to-field mapping, history)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import requests

from conftest import MODELS, route
from trainml_cli.server.dashboard import forms
from trainml_cli.server.dashboard.history import parse_event
from trainml_cli.server.dashboard.sessions import Sessions

ECHO_DIR = str(MODELS / "dashboard_echo")


def login_link(plane) -> str:
    """The link as `trainml server dashboard` prints it, found from the environment like any CLI call."""
    env = {**os.environ, "TRAINML_API_URL": plane.url, "TRAINML_API_TOKEN": plane.token, "TRAINML_HOME": str(plane.home)}
    result = subprocess.run([sys.executable, "-m", "trainml_cli", "server", "dashboard", "--format", "json"],
                            env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["url"]


def signed_in(plane) -> requests.Session:
    session = requests.Session()
    response = session.get(login_link(plane), allow_redirects=False, timeout=10)
    assert response.status_code == 200
    return session


def test_cli_prints_a_one_time_link(control_plane):
    env = {**os.environ, "TRAINML_API_URL": control_plane.url, "TRAINML_API_TOKEN": control_plane.token}
    result = subprocess.run([sys.executable, "-m", "trainml_cli", "server", "dashboard"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert re.search(rf"^{re.escape(control_plane.url)}/dashboard/login\?token=[\w-]{{20,}}$", result.stdout, re.M)


def test_open_hands_the_link_to_the_browser(control_plane, tmp_path):
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(0o755)
    env = {**os.environ, "TRAINML_API_URL": control_plane.url, "TRAINML_API_TOKEN": control_plane.token,
           "BROWSER": str(browser)}
    result = subprocess.run([sys.executable, "-m", "trainml_cli", "server", "dashboard", "--open"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    link = result.stdout.splitlines()[-1]
    assert opened.read_text().strip() == link
    assert requests.get(link, allow_redirects=False, timeout=10).status_code == 200


def test_without_a_session_pages_redirect_and_api_calls_get_401(control_plane):
    for path in ("/dashboard/", "/dashboard/create", "/dashboard/jobs/abc", "/dashboard/jobs/abc/logs"):
        response = requests.get(control_plane.url + path, allow_redirects=False, timeout=10)
        assert response.status_code == 303 and response.headers["location"] == "/dashboard/signed-out", path
    page = requests.get(control_plane.url + "/dashboard/signed-out", timeout=10)
    assert page.status_code == 200 and "trainml server dashboard" in page.text
    for method, path in (("GET", "/api/dashboard/events"), ("GET", "/api/dashboard/traffic"), ("GET", "/api/jobs"),
                         ("POST", "/api/dashboard/check"), ("POST", "/api/dashboard/login-links")):
        assert requests.request(method, control_plane.url + path, timeout=10).status_code == 401, path
    forged = {"trainml_session": "v1.9999999999.abc.0123"}
    assert requests.get(control_plane.url + "/api/jobs", cookies=forged, timeout=10).status_code == 401


def test_link_works_once_and_sets_a_strict_httponly_cookie(control_plane):
    link = login_link(control_plane)
    first = requests.get(link, allow_redirects=False, timeout=10)
    assert first.status_code == 200
    cookie = first.headers["set-cookie"]
    assert "trainml_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert 'http-equiv="refresh"' in first.text and "/dashboard/" in first.text
    assert first.headers["referrer-policy"] == "no-referrer"  # the token must not leak onwards
    again = requests.get(link, allow_redirects=False, timeout=10)
    assert again.status_code == 403 and "expired or was already used" in again.text
    assert "set-cookie" not in again.headers


def test_the_session_reads_the_api_but_changes_need_the_dashboard_header(control_plane):
    session = signed_in(control_plane)
    assert session.get(control_plane.url + "/dashboard/", timeout=10).status_code == 200
    assert session.get(control_plane.url + "/api/jobs", timeout=10).json() == []
    # A form on another site could send the cookie-less POST only; SameSite stops the cookie, this stops the rest.
    assert session.post(control_plane.url + "/api/dashboard/check", json={}, timeout=10).status_code == 401
    headers = {"X-TrainML-Dashboard": "1"}
    assert session.post(control_plane.url + "/api/dashboard/check", json={}, headers=headers, timeout=10).status_code == 422
    # Only the API token may mint sign-in links, not a browser session.
    assert session.post(control_plane.url + "/api/dashboard/login-links", headers=headers, timeout=10).status_code == 401


def test_pages_escape_user_text(control_plane):
    name = '<img src=x onerror="alert(1)">'
    payload = {"name": name, "model": {"source_type": "git", "source_uri": "https://127.0.0.1:9/none.git"},
               "endpoint": {"routes": [route()]}}
    created = control_plane.api("POST", "/api/jobs", json=payload)
    assert created.status_code == 201, created.text
    session = signed_in(control_plane)
    for path in ("/dashboard/", f"/dashboard/jobs/{created.json()['id']}"):
        html = session.get(control_plane.url + path, timeout=10).text
        assert name not in html
        assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
    page = session.get(control_plane.url + "/dashboard/", timeout=10)
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_form_errors_name_their_fields_and_create_nothing(control_plane):
    session = signed_in(control_plane)
    form = {
        "name": "",
        "resources": {"gpu_types": ["cpu"], "cpu_count": 0},
        "model": {"source": "directory", "directory": "relative/dir"},
        "routes": [{"verb": "POST", "path": "/predict", "file": "echo", "function": "echo", "positional": False,
                    "body": [{"name": "text", "type": "str"},
                             {"name": "times", "type": "float", "optional": True, "default_value": "abc"}]}],
    }
    response = session.post(control_plane.url + "/api/dashboard/jobs", json=form,
                            headers={"X-TrainML-Dashboard": "1"}, timeout=10)
    assert response.status_code == 422
    fields = {f["field"]: f["message"] for f in response.json()["fields"]}
    assert fields["name"] == "must not be empty"
    assert fields["resources.cpu_count"].startswith("0 must be a whole number")
    assert "absolute path" in fields["model.directory"]
    assert fields["routes.0.body.1.default_value"] == "'abc' is not a Python literal"
    assert control_plane.api("GET", "/api/jobs").json() == []


def test_a_valid_form_checks_clean_and_reports_missing_route_files(control_plane):
    session = signed_in(control_plane)
    headers = {"X-TrainML-Dashboard": "1"}
    form = {"name": "echo", "resources": {"gpu_types": ["cpu"]}, "model": {"source": "directory", "directory": ECHO_DIR},
            "routes": [route(file="echo", function="echo")]}
    checked = session.post(control_plane.url + "/api/dashboard/check", json=form, headers=headers, timeout=10)
    assert checked.status_code == 200, checked.text
    assert checked.json()["payload"]["model"] == {"source_type": "local", "source_uri": ECHO_DIR}
    form["routes"] = [{**route(file="echo", function="echo"), "batch": {"max_size": 16, "max_wait_ms": 2}}]
    batched = session.post(control_plane.url + "/api/dashboard/check", json=form, headers=headers, timeout=10)
    assert batched.json()["payload"]["endpoint"]["routes"][0]["batch"] == {"max_size": 16, "max_wait_ms": 2.0}
    form["routes"] = [{**route(file="echo", function="echo"), "batch": {"max_size": 0, "max_wait_ms": 0}}]
    refused = session.post(control_plane.url + "/api/dashboard/check", json=form, headers=headers, timeout=10)
    assert [(f["field"], f["message"]) for f in refused.json()["fields"]] == [
        ("routes.0.batch_max_size", "0 is less than 1 (allowed: 1 to 1024)")]
    form["routes"] = [route(file="missing", function="echo")]
    missing = session.post(control_plane.url + "/api/dashboard/check", json=form, headers=headers, timeout=10)
    assert [f["field"] for f in missing.json()["fields"]] == ["routes.0.file"]


# -- the pure pieces ----------------------------------------------------------------------------------------------


def test_session_cookies_are_signed_and_expire():
    now = [1000.0]
    sessions = Sessions("token-a", clock=lambda: now[0], session_ttl=60, link_ttl=10)
    cookie = sessions.new_cookie()
    assert sessions.check_cookie(cookie)
    assert not Sessions("token-b").check_cookie(cookie)  # a new API token ends every session
    assert not sessions.check_cookie(cookie.replace("v1.1060", "v1.9060"))  # a longer life breaks the signature
    token, _ = sessions.new_link_token()
    now[0] += 11
    assert not sessions.redeem(token)  # expired
    token, _ = sessions.new_link_token()
    assert sessions.redeem(token) and not sessions.redeem(token)
    now[0] += 60
    assert not sessions.check_cookie(cookie)


@pytest.mark.parametrize("problem, field, message", [
    ("route 1 (POST /predict): body[1].default_value: 'abc' is not a Python literal",
     "routes.0.body.1.default_value", "'abc' is not a Python literal"),
    ("route 2 (GET /a: b): path: /a: b must start with '/'", "routes.1.path", "/a: b must start with '/'"),
    ("route 1 (POST /p): body[0]: required param 'x' comes after an optional one", "routes.0.body.0.param",
     "required param 'x' comes after an optional one"),
    ("route 1: verb: 'FETCH' is not one of GET, POST", "routes.0.verb", "'FETCH' is not one of GET, POST"),
    ("at least one route is required", "routes", "at least one route is required"),
    ("route 1 (POST /p): batch.max_size: 2000 is more than 1024 (allowed: 1 to 1024)", "routes.0.batch_max_size",
     "2000 is more than 1024 (allowed: 1 to 1024)"),
    ("route 1 (POST /p): batch: a batched route needs at least one body param", "routes.0.batch",
     "a batched route needs at least one body param"),
])
def test_route_problems_map_to_form_fields(problem, field, message):
    raws = [{"verb": "POST", "path": "/predict"}, {"verb": "GET", "path": "/a: b"}]
    if "(POST /p)" in problem:
        raws = [{"verb": "POST", "path": "/p"}]
    assert forms.route_fields(problem, raws) == forms.FieldError(field, message)


def test_status_events_are_read_back_from_the_log():
    assert parse_event("status: waiting for data/model download") == ("waiting for data/model download", None)
    assert parse_event("status: failed (exit code 3 (model code))") == ("failed", "exit code 3 (model code)")
    assert parse_event("job 'x (1)' created (local model)") == ("new", "created")
    assert parse_event("status: bogus") is None
    assert parse_event("endpoint process 12 started") is None


def test_a_cookie_that_is_not_ascii_is_refused_not_a_crash(control_plane):
    # Starlette reads the Cookie header as latin-1; hmac.compare_digest raises TypeError on non-ASCII str.
    headers = {"Cookie": "trainml_session=v1.9999999999.abc.\xe9"}
    assert requests.get(control_plane.url + "/api/jobs", headers=headers, timeout=10).status_code == 401
    page = requests.get(control_plane.url + "/dashboard/", headers=headers, timeout=10, allow_redirects=False)
    assert page.status_code < 500
