"""The dashboard without a browser: sign-in links and the session cookie, what is refused without them, escaping,
the Create form's field errors, and the small pure pieces (cookie signing, error-to-field mapping, history)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from browserkit import login_link  # the link as `trainml server dashboard` prints it
from conftest import MODELS, route
from trainml_cli.server.dashboard import forms
from trainml_cli.server.dashboard.sessions import Sessions

ECHO_DIR = str(MODELS / "dashboard_echo")


def signed_in(plane) -> requests.Session:
    session = requests.Session()
    response = session.get(login_link(plane), allow_redirects=False, timeout=10)
    assert response.status_code == 200
    return session


def test_cli_prints_a_one_time_link(shared_plane):
    env = {**os.environ, "TRAINML_API_URL": shared_plane.url, "TRAINML_API_TOKEN": shared_plane.token}
    result = subprocess.run([sys.executable, "-m", "trainml_cli", "server", "dashboard"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert re.search(rf"^{re.escape(shared_plane.url)}/dashboard/login\?token=[\w-]{{20,}}$", result.stdout, re.M)


def test_open_hands_the_link_to_the_browser(shared_plane, tmp_path):
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(0o755)
    env = {**os.environ, "TRAINML_API_URL": shared_plane.url, "TRAINML_API_TOKEN": shared_plane.token,
           "BROWSER": str(browser)}
    result = subprocess.run([sys.executable, "-m", "trainml_cli", "server", "dashboard", "--open"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    link = result.stdout.splitlines()[-1]
    assert opened.read_text().strip() == link
    assert requests.get(link, allow_redirects=False, timeout=10).status_code == 200


def test_without_a_session_pages_redirect_and_api_calls_get_401(shared_plane):
    for path in ("/dashboard/", "/dashboard/create", "/dashboard/jobs/abc", "/dashboard/jobs/abc/logs"):
        response = requests.get(shared_plane.url + path, allow_redirects=False, timeout=10)
        assert response.status_code == 303 and response.headers["location"] == "/dashboard/signed-out", path
    page = requests.get(shared_plane.url + "/dashboard/signed-out", timeout=10)
    assert page.status_code == 200 and "trainml server dashboard" in page.text
    for method, path in (("GET", "/api/dashboard/events"), ("GET", "/api/dashboard/traffic"), ("GET", "/api/jobs"),
                         ("POST", "/api/dashboard/check"), ("POST", "/api/dashboard/login-links")):
        assert requests.request(method, shared_plane.url + path, timeout=10).status_code == 401, path
    forged = {"trainml_session": "v1.9999999999.abc.0123"}
    assert requests.get(shared_plane.url + "/api/jobs", cookies=forged, timeout=10).status_code == 401


def test_link_works_once_and_sets_a_strict_httponly_cookie(shared_plane):
    link = login_link(shared_plane)
    first = requests.get(link, allow_redirects=False, timeout=10)
    assert first.status_code == 200
    cookie = first.headers["set-cookie"]
    assert "trainml_session=" in cookie and "HttpOnly" in cookie
    assert "SameSite=strict" in cookie.replace("Strict", "strict")
    assert 'http-equiv="refresh"' in first.text and "/dashboard/" in first.text
    assert first.headers["referrer-policy"] == "no-referrer"  # the token must not leak onwards
    again = requests.get(link, allow_redirects=False, timeout=10)
    assert again.status_code == 403 and "expired or was already used" in again.text
    assert "set-cookie" not in again.headers


def test_the_session_reads_the_api_but_changes_need_the_dashboard_header(shared_plane):
    session = signed_in(shared_plane)
    assert session.get(shared_plane.url + "/dashboard/", timeout=10).status_code == 200
    assert session.get(shared_plane.url + "/api/jobs", timeout=10).json() == []
    # A form on another site could send the cookie-less POST only; SameSite stops the cookie, this stops the rest.
    assert session.post(shared_plane.url + "/api/dashboard/check", json={}, timeout=10).status_code == 401
    headers = {"X-TrainML-Dashboard": "1"}
    checked = session.post(shared_plane.url + "/api/dashboard/check", json={}, headers=headers, timeout=10)
    assert checked.status_code == 422
    # Only the API token may mint sign-in links, not a browser session.
    minted = session.post(shared_plane.url + "/api/dashboard/login-links", headers=headers, timeout=10)
    assert minted.status_code == 401


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


def test_form_errors_name_their_fields_and_create_nothing(shared_plane):
    session = signed_in(shared_plane)
    form = {
        "name": "",
        "resources": {"gpu_types": ["cpu"], "cpu_count": 0, "disk_size": "ten", "max_price": -5},
        "model": {"source": "directory", "directory": "relative/dir"},
        "routes": [{"verb": "POST", "path": "/predict", "file": "echo", "function": "echo", "positional": False,
                    "body": [{"name": "text", "type": "str"},
                             {"name": "times", "type": "float", "optional": True, "default_value": "abc"}]}],
    }
    response = session.post(shared_plane.url + "/api/dashboard/jobs", json=form,
                            headers={"X-TrainML-Dashboard": "1"}, timeout=10)
    assert response.status_code == 422
    fields = {f["field"]: f["message"] for f in response.json()["fields"]}
    assert fields["name"] == "must not be empty"
    # Every resource problem at once, each saying what the rule is.
    assert fields["resources.cpu_count"] == "0 is too small; CPU count must be a whole number, 1 or more"
    assert fields["resources.disk_size"] == "'ten' is not a whole number; disk size must be a whole number, 1 or more"
    assert fields["resources.max_price"] == "-5 is too small; max price must be 0 or more (credits per hour)"
    assert "absolute path" in fields["model.directory"]
    assert fields["routes.0.body.1.default_value"] == "'abc' is not a Python literal"
    assert shared_plane.api("GET", "/api/jobs").json() == []


def test_a_valid_form_checks_clean_and_reports_missing_route_files(shared_plane):
    session = signed_in(shared_plane)
    headers = {"X-TrainML-Dashboard": "1"}
    form = {"name": "echo", "resources": {"gpu_types": ["cpu"]},
            "model": {"source": "directory", "directory": ECHO_DIR},
            "routes": [route(file="echo", function="echo")]}
    checked = session.post(shared_plane.url + "/api/dashboard/check", json=form, headers=headers, timeout=10)
    assert checked.status_code == 200, checked.text
    assert checked.json()["payload"]["model"] == {"source_type": "local", "source_uri": ECHO_DIR}
    form["routes"] = [{**route(file="echo", function="echo"), "batch": {"max_size": 16, "max_wait_ms": 2}}]
    batched = session.post(shared_plane.url + "/api/dashboard/check", json=form, headers=headers, timeout=10)
    assert batched.json()["payload"]["endpoint"]["routes"][0]["batch"] == {"max_size": 16, "max_wait_ms": 2.0}
    form["routes"] = [{**route(file="echo", function="echo"), "batch": {"max_size": 0, "max_wait_ms": 0}}]
    refused = session.post(shared_plane.url + "/api/dashboard/check", json=form, headers=headers, timeout=10)
    assert [(f["field"], f["message"]) for f in refused.json()["fields"]] == [
        ("routes.0.batch_max_size", "0 is less than 1 (allowed: 1 to 1024)")]
    form["routes"] = [route(file="missing", function="echo")]
    missing = session.post(shared_plane.url + "/api/dashboard/check", json=form, headers=headers, timeout=10)
    assert [f["field"] for f in missing.json()["fields"]] == ["routes.0.file"]


TABULATE_DIR = str(MODELS / "tabulate_version")
VERSION_ROUTE = {"verb": "GET", "path": "/version", "file": "predict", "function": "version"}
DASHBOARD = {"X-TrainML-Dashboard": "1"}


def check_form(plane, session, environment: dict, directory: str = TABULATE_DIR) -> requests.Response:
    form = {"name": "env", "resources": {"gpu_types": ["cpu"]},
            "model": {"source": "directory", "directory": directory},
            "routes": [VERSION_ROUTE], "environment": environment}
    return session.post(plane.url + "/api/dashboard/check", json=form, headers=DASHBOARD, timeout=60)


def test_the_form_sends_packages_in_the_clis_comma_format_and_the_interpreter_only_when_not_the_default(shared_plane):
    session = signed_in(shared_plane)
    interpreters = shared_plane.api("GET", "/api/environments", timeout=60).json()["interpreters"]
    default = next(i for i in interpreters if i["default"])
    checked = check_form(shared_plane, session,
                         {"packages": {"pip": " scikit-learn, numpy>=1.20,<2 ,tabulate==0.9.0"}, "python": "",
                          "requirements": ""})
    assert checked.status_code == 200, checked.text
    assert checked.json()["payload"]["environment"] == {
        "packages": {"pip": ["scikit-learn", "numpy>=1.20,<2", "tabulate==0.9.0"]}}
    # The default, chosen by path or by version, is the default: nothing to send.
    for python in (default["path"], default["version"]):
        checked = check_form(shared_plane, session, {"packages": {"pip": ""}, "python": python})
        assert checked.json()["payload"]["environment"] == {"packages": {"pip": []}}, python
    others = [i for i in interpreters if not i["default"]]
    if others:
        checked = check_form(shared_plane, session, {"packages": {"pip": ""}, "python": others[0]["path"]})
        assert checked.json()["payload"]["environment"]["python"] == others[0]["path"]
    # The create page lists the same interpreters, the default first and labelled so.
    page = session.get(shared_plane.url + "/dashboard/create", timeout=60).text
    options = re.findall(r'<option value="([^"]*)" data-version="([^"]+)">([^<]*)</option>', page)
    assert options[0] == ("", default["version"], f"Python {default['version']} (default)")
    assert sorted(o[1] for o in options) == sorted(i["version"] for i in interpreters)


def test_environment_problems_show_at_their_fields_and_create_nothing(shared_plane):
    session = signed_in(shared_plane)
    answer = check_form(shared_plane, session, {"packages": {"pip": "tabulate, --index-url=http://example.invalid"},
                                                "python": "3.99", "requirements": "../outside.txt"})
    assert answer.status_code == 422
    fields = {f["field"]: f["message"] for f in answer.json()["fields"]}
    assert set(fields) == {"environment.packages.pip", "environment.python", "environment.requirements"}
    assert fields["environment.packages.pip"].startswith(
        "'--index-url=http://example.invalid' looks like an installer option")
    interpreters = shared_plane.api("GET", "/api/environments", timeout=60).json()["interpreters"]
    default = next(i for i in interpreters if i["default"])
    assert fields["environment.python"].startswith("no Python 3.99 on the control plane's machine; available: ")
    assert f"{default['version']} (default)" in fields["environment.python"]
    assert "leaves the model folder" in fields["environment.requirements"]
    # A file the form names must be in the server folder; creating refuses the same way, creating nothing.
    form = {"name": "env", "model": {"source": "directory", "directory": TABULATE_DIR}, "routes": [VERSION_ROUTE],
            "environment": {"requirements": "missing.txt"}}
    created = session.post(shared_plane.url + "/api/dashboard/jobs", json=form, headers=DASHBOARD, timeout=60)
    assert created.status_code == 422
    assert created.json()["fields"] == [{"field": "environment.requirements",
                                         "message": f"missing.txt is not a file in {TABULATE_DIR}"}]
    assert shared_plane.api("GET", "/api/jobs").json() == []


def test_the_form_is_told_whether_a_server_folder_has_a_requirements_txt(shared_plane):
    session = signed_in(shared_plane)

    def ask(directory):
        return session.get(shared_plane.url + "/api/dashboard/requirements", params={"directory": directory},
                           timeout=10)

    assert ask(str(MODELS / "requirements_file")).json() == {
        "directory": str(MODELS / "requirements_file"), "file": "requirements.txt", "found": True}
    assert ask(TABULATE_DIR).json()["found"] is False
    assert ask(str(MODELS / "no-such-folder")).json()["found"] is False
    relative = ask("tests/models/requirements_file")
    assert relative.status_code == 422
    assert relative.json()["fields"][0]["field"] == "model.directory" and "absolute path" in relative.json()["message"]
    assert requests.get(shared_plane.url + "/api/dashboard/requirements", params={"directory": TABULATE_DIR},
                        timeout=10).status_code == 401


def test_the_details_page_shows_what_the_environment_asks_before_it_is_built(control_plane):
    session = signed_in(control_plane)

    def details(name: str, environment: dict) -> tuple[dict, str]:
        """The Environment panel's facts for a new job whose clone fails at once: it never builds anything."""
        payload = {"name": name, "model": {"source_type": "git", "source_uri": "https://127.0.0.1:9/none.git"},
                   "endpoint": {"routes": [route()]}, "environment": environment}
        created = control_plane.api("POST", "/api/jobs", json=payload, timeout=60)
        assert created.status_code == 201, created.text
        html = session.get(control_plane.url + f"/dashboard/jobs/{created.json()['id']}", timeout=60).text
        panel = html[html.index('id="environment"'):html.index('id="routes-heading"')]
        return dict(re.findall(r'<dt>([^<]+)</dt>\s*<dd[^>]*data-env="\w+">([^<]*)</dd>', panel)), panel

    interpreters = control_plane.api("GET", "/api/environments", timeout=60).json()["interpreters"]
    default = next(i for i in interpreters if i["default"])
    facts, panel = details("env-type", {"packages": {"pip": ["tabulate==0.9.0", "numpy>=1.20,<2"]},
                                        "type": "DEEPLEARNING_PY299", "requirements": "deps/requirements.txt"})
    assert facts == {"Python": f"{default['version']} (default)",
                     "Python packages": "tabulate==0.9.0, numpy&gt;=1.20,&lt;2",
                     "Requirements file": "deps/requirements.txt", "Environment key": "not built yet"}
    assert ("environment DEEPLEARNING_PY299 asks for Python 2.99, which this machine lacks; "
            "running on the default") in panel
    facts, _ = details("env-none", {})
    assert facts["Environment key"] == "none: the control plane&#39;s Python" and facts["Python packages"] == "—"
    other = next((i for i in interpreters if not i["default"]), None)
    if other:
        facts, _ = details("env-other", {"python": other["path"]})
        assert facts["Python"] == other["version"] and facts["Environment key"] == "not built yet"


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


def _route(**changes):
    return {"verb": "POST", "path": "/p", "file": "predict", "function": "predict",
            "body": [{"name": "x", "type": "str"}], **changes}


@pytest.mark.parametrize("routes, field, message", [
    ([_route(body=[{"name": "a", "type": "str"},
                   {"name": "b", "type": "float", "optional": True, "default_value": "abc"}])],
     "routes.0.body.1.default_value", "'abc' is not a Python literal"),
    ([_route(), _route(verb="GET", path="/a: b")], "routes.1.path",
     "'/a: b' must start with '/' and use only URL path characters"),
    ([_route(positional=True, body=[{"name": "a", "type": "str", "optional": True}, {"name": "b", "type": "str"}])],
     "routes.0.body.1.param", "required param 'b' comes after an optional one in a positional route"),
    ([_route(verb="FETCH")], "routes.0.verb", "'FETCH' is not one of GET, POST, PUT, PATCH, DELETE"),
    ([], "routes", "at least one route is required"),
    ([_route(batch={"max_size": 2000})], "routes.0.batch_max_size", "2000 is more than 1024 (allowed: 1 to 1024)"),
    ([_route(body=[], batch={"max_size": 8})], "routes.0.batch",
     "a batched route needs at least one body param (each arrives as a list, one item per request)"),
], ids=["default", "path-with-colon", "positional-order", "verb", "none", "batch-size", "batch-without-body"])
def test_route_problems_come_as_data_and_map_to_form_fields(routes, field, message):
    from trainml_cli.errors import RouteSpecError
    from trainml_cli.routespec import parse_routes

    with pytest.raises(RouteSpecError) as info:
        parse_routes(routes)
    assert [forms.route_field(p) for p in info.value.fields] == [forms.FieldError(field, message)]


def test_the_api_returns_route_problems_as_data(shared_plane, tmp_path):
    payload = {"name": "x", "model": {"source_type": "git", "source_uri": tmp_path.as_uri()},
               "endpoint": {"routes": [_route(), _route(path="/q", function="not valid")]}}
    body = shared_plane.api("POST", "/api/jobs", json=payload).json()
    assert body["fields"] == [{"route": 1, "field": "function",
                               "message": "'not valid' is not a valid Python function name"}]
    assert body["details"] == ["route 2 (POST /q): function: 'not valid' is not a valid Python function name"]


@pytest.mark.parametrize("environment, field, sentence", [
    ({"packages": {"pip": ["tabulate", "-e ."]}}, "environment.packages.pip",
     "environment.packages.pip[1]: '-e .' looks like an installer option; give package requirements only "
     "(put index settings in pip's configuration, which environments follow)"),
    ({"requirements": "/etc/x"}, "environment.requirements",
     "environment.requirements: '/etc/x' is absolute; give a path relative to the model folder"),
    ({"python": " "}, "environment.python",
     "environment.python: ' ' must be a version such as '3.12' or an interpreter's path"),
], ids=["package", "requirements", "python"])
def test_environment_problems_carry_their_field_as_data(environment, field, sentence):
    """The CLI's sentence is unchanged; the form's field and message come from the same data, not from it."""
    from trainml_cli.environment import check_environment
    from trainml_cli.errors import UsageError

    with pytest.raises(UsageError) as info:
        check_environment(environment)
    assert str(info.value) == sentence
    [problem] = info.value.fields
    assert forms.form_field(problem, "form") == forms.FieldError(field, sentence.split(": ", 1)[1])


def test_a_database_from_before_keeps_its_status_history(tmp_path):
    """Migration 3 turns the `status: X (detail)` lines of older jobs into status events, once."""
    import sqlite3

    from trainml_cli.server.migrations import MIGRATIONS as _MIGRATIONS
    from trainml_cli.server.store import Store

    db = sqlite3.connect(tmp_path / "trainml.db")
    db.executescript(f"{_MIGRATIONS[1]}; {_MIGRATIONS[2]}; PRAGMA user_version = 2;")
    lines = [("j", 1.0, "event", "job 'x (1)' created (local model)"), ("j", 2.0, "stdout", "status: printed"),
             ("j", 3.0, "event", "status: waiting for data/model download"),
             ("j", 4.0, "event", "status: failed (exit code 3 (model code))"), ("j", 5.0, "event", "cloned x")]
    db.executemany("INSERT INTO logs (job_id, time, stream, message) VALUES (?, ?, ?, ?)", lines)
    db.commit()
    db.close()
    store = Store(tmp_path / "trainml.db")
    assert [(e["status"], e["detail"]) for e in store.job_events("j")] == [
        ("failed", "exit code 3 (model code)"), ("waiting for data/model download", None), ("new", "created")]
    store.close()


def test_a_cookie_that_is_not_ascii_is_refused_not_a_crash(shared_plane):
    # Starlette reads the Cookie header as latin-1; hmac.compare_digest raises TypeError on non-ASCII str.
    headers = {"Cookie": "trainml_session=v1.9999999999.abc.\xe9"}
    assert requests.get(shared_plane.url + "/api/jobs", headers=headers, timeout=10).status_code == 401
    page = requests.get(shared_plane.url + "/dashboard/", headers=headers, timeout=10, allow_redirects=False)
    assert page.status_code < 500


def test_traffic_history_has_gaps_where_nothing_was_sampled_and_quantiles_from_buckets(tmp_path):
    from trainml_cli.server.dashboard.traffic import COARSE, FINE, Traffic, quantile
    from trainml_cli.server.store import Store

    store = Store(tmp_path / "trainml.db")
    now = 1_000_000.0
    # 100 calls in the 1-2.5 ms bucket (index 2), 10 in the 0.5-1 s bucket (index 10).
    buckets = [0, 0, 100] + [0] * 7 + [10] + [0] * 6
    for t in (now - 100, now - 95, now - 20):  # a minute and more with no samples in between
        for resolution in (FINE, COARSE):
            store.add_traffic("j", resolution, (t // resolution) * resolution, 5.0, 110, 0, 0, 800.0, buckets)
    data = Traffic().series(store, ["j"], "5m", now=now)
    times = [p["t"] for p in data["jobs"]["j"]]
    assert len(times) == 3 and times[2] - times[1] > 60  # the gap stays a gap: no invented points inside it
    point = data["jobs"]["j"][0]
    assert point["requests"] == 110 and point["rps"] == 22.0
    assert 1.0 < point["p50_ms"] < 2.5 and 500 < point["p99_ms"] <= 1000
    assert quantile(0.5, []) is None and quantile(0.99, [0] * 16 + [3]) == 60_000.0
    assert Traffic().series(store, ["j"], "24h", now=now)["jobs"]["j"][0]["requests"] == 330
    store.close()


def test_traffic_history_outlives_a_control_plane_restart(control_plane):
    """The samples are in SQLite: a new control plane (after a kill -9) still charts the calls made before."""
    from conftest import run, wait_until

    async def scenario():
        async with control_plane.client() as client:
            job = await client.jobs.create("kept", model={"source_type": "local", "source_uri": ECHO_DIR},
                                           endpoint={"routes": [route(file="echo", function="echo")]}, wait=True)
            return job.dict

    job = run(scenario())
    with requests.Session() as calls:
        for _ in range(50):
            assert calls.post(job["url"] + "/predict", json={"text": "x"}, timeout=5).ok

    def recorded():
        data = control_plane.api("GET", "/api/dashboard/traffic", params={"job": job["id"], "span": "1h"}).json()
        return sum(p["requests"] for p in data["jobs"][0]["points"])

    wait_until(lambda: recorded() == 50, timeout=30, message="the sampler to record 50 calls")
    control_plane.kill()
    control_plane.start()
    assert recorded() == 50
    assert control_plane.api("GET", "/api/dashboard/traffic", params={"span": "week"}).status_code == 422

def test_the_create_form_can_ask_for_a_key_and_the_connect_page_shows_it(control_plane):
    session = signed_in(control_plane)
    form = {"name": "keyed", "auth": True, "resources": {"gpu_types": ["cpu"]},
            "model": {"source": "directory", "directory": ECHO_DIR}, "routes": [route(file="echo", function="echo")]}
    created = session.post(control_plane.url + "/api/dashboard/jobs", json=form, headers=DASHBOARD, timeout=60)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert created.json()["endpoint"]["auth"] is True
    key = control_plane.api("GET", f"/api/jobs/{job_id}/connect").json()["key"]
    assert key and key not in created.text
    page = session.get(control_plane.url + f"/dashboard/jobs/{job_id}/connect", timeout=10).text
    assert key in page and f"Authorization: Bearer {key}" in page
    assert key not in session.get(control_plane.url + f"/dashboard/jobs/{job_id}", timeout=10).text


def test_a_server_folder_with_a_link_out_of_it_is_refused_naming_the_link(shared_plane, tmp_path):
    """The server packs a folder on its machine with the SDK's packer: a link to the control plane's own files
    (its token, an operator's credentials) must not go into a job."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "echo.py").write_text((Path(ECHO_DIR) / "echo.py").read_text())
    (folder / "token").symlink_to(shared_plane.home / "token")
    session = signed_in(shared_plane)
    form = {"name": "escapes", "resources": {"gpu_types": ["cpu"]}, "model": {"source": "directory",
            "directory": str(folder)}, "routes": [route(file="echo", function="echo")]}
    refused = session.post(shared_plane.url + "/api/dashboard/jobs", json=form, headers=DASHBOARD, timeout=60)
    assert refused.status_code == 422, refused.text
    assert "token is a symbolic link to" in refused.json()["message"] and "outside the folder" in refused.text
    assert shared_plane.api("GET", "/api/jobs").json() == []
    assert list((shared_plane.home / "uploads").iterdir()) == []


def test_the_create_form_sends_replicas_and_names_a_bad_count_at_its_field(shared_plane):
    session = signed_in(shared_plane)
    form = {"name": "copies", "resources": {"gpu_types": ["cpu"]}, "replicas": 1,
            "model": {"source": "directory", "directory": TABULATE_DIR}, "routes": [VERSION_ROUTE]}
    checked = session.post(shared_plane.url + "/api/dashboard/check", json=form, headers=DASHBOARD, timeout=60)
    assert checked.status_code == 200, checked.text
    assert checked.json()["payload"]["endpoint"]["replicas"] == 1
    for bad in (0, "two"):
        refused = session.post(shared_plane.url + "/api/dashboard/check", json={**form, "replicas": bad},
                               headers=DASHBOARD, timeout=60)
        assert refused.status_code == 422
        assert {f["field"] for f in refused.json()["fields"]} == {"replicas"}
        assert "must be a whole number of at least 1" in refused.json()["fields"][0]["message"]
    page = session.get(shared_plane.url + "/dashboard/create", timeout=60).text
    assert 'id="replicas"' in page
