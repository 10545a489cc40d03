"""The dashboard's newer pages and form helpers in Chromium, on one control plane and one browser for the module
(the launches are what is slow): routes from a model's routes.json or pasted JSON, every form problem at once,
the key badge, the Secrets and Environments pages, Try it. Each page is checked for layout faults at 1366 and
390 px (check_layout), and screenshots go to test-output/dashboard/ as in test_dashboard_browser.py.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import requests

import browserkit
from browserkit import SKIP_WITHOUT_CHROMIUM, Dashboard, assert_labelled, wait_for
from conftest import MODELS, ControlPlane, kill_everything_under
from test_dashboard_browser import ECHO_DIR

pytestmark = SKIP_WITHOUT_CHROMIUM
browser = browserkit.browser  # the module's one Chromium (a fixture)

ROUTES = [{"verb": "POST", "path": "/predict", "file": "echo", "function": "echo",
           "body": [{"name": "text", "type": "str"}, {"name": "times", "type": "int", "optional": True,
                                                      "default_value": "3"}]},
          {"verb": "GET", "path": "/shout", "file": "echo", "function": "echo",
           "body": [{"name": "text", "type": "str", "choices": ["a", "b"]}]}]


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    plane = ControlPlane(tmp_path_factory.mktemp("pages") / "home").start()
    yield plane
    plane.stop()
    kill_everything_under(plane.home)


@pytest.fixture(scope="module")
def routed_model(tmp_path_factory):
    """dashboard_echo with a routes.json at its root."""
    folder = tmp_path_factory.mktemp("routed") / "routed_echo"
    shutil.copytree(ECHO_DIR, folder)
    (folder / "routes.json").write_text(json.dumps(ROUTES))
    return folder


def routes_on_the_form(page) -> list[dict]:
    return page.locator("[data-route]").evaluate_all("""routes => routes.map(r => ({
        verb: r.querySelector('[data-input="verb"]').value, path: r.querySelector('[data-input="path"]').value,
        file: r.querySelector('[data-input="file"]').value,
        params: [...r.querySelectorAll('[data-param]')].map(p => [
            p.querySelector('[data-input="name"]').value, p.querySelector('[data-input="type"]').value,
            p.querySelector('[data-input="default_value"]').value,
            p.querySelector('[data-input="choices"]').value])}))""")


EXPECTED = [{"verb": "POST", "path": "/predict", "file": "echo",
             "params": [["text", "str", "", ""], ["times", "int", "3", ""]]},
            {"verb": "GET", "path": "/shout", "file": "echo", "params": [["text", "str", "", '["a","b"]']]}]


def test_routes_come_from_routes_json_in_an_upload_a_stored_model_or_pasted(browser, plane, routed_model):
    ui = Dashboard(browser, plane)
    page = ui.page

    # A folder picked on this computer: once uploaded, its routes.json fills the untouched routes.
    ui.go("/dashboard/create")
    page.set_input_files("#model-folder", str(routed_model))
    page.get_by_text("Routes filled from routes.json in the model (2 routes).").wait_for()
    assert routes_on_the_form(page) == EXPECTED
    assert_labelled(page)
    ui.shoot("create-routes-json", "/dashboard/create")
    page.fill("#name", "from-json")
    page.get_by_role("button", name="Next").click()
    page.locator("#review").wait_for()
    review = page.locator("#review-routes").inner_text()
    assert "POST /predict → echo:echo" in review and "times: int = 3" in review and "GET /shout" in review

    # A stored model: "Create endpoint from this model" opens the form with its routes.
    from trainml_cli.packing import pack

    upload = plane.api("POST", "/api/uploads", data=pack(str(routed_model)).read(),
                       headers={"Content-Type": "application/gzip"}).json()
    stored = plane.api("POST", "/api/models", json={"name": "routed", "source_type": "local",
                                                    "upload_id": upload["id"]})
    assert stored.status_code == 201, stored.text
    ui.go(f"/dashboard/models/{stored.json()['id']}")
    page.get_by_role("link", name="Create endpoint from this model").click()
    page.get_by_text("Routes filled from routes.json in the model (2 routes).").wait_for()
    assert routes_on_the_form(page) == EXPECTED

    # Pasted: one route object replaces what is there; a typo is named beside the box, and nothing changes.
    page.get_by_text("Paste route JSON").click()
    page.get_by_label("Routes as JSON").fill('{"verb": "post", "path": "/one", "file": "echo", "function": "echo"')
    page.get_by_role("button", name="Load routes").click()
    assert page.locator('[data-error-for="route-json"]').inner_text().startswith("The pasted routes are not valid JSON")
    assert len(routes_on_the_form(page)) == 2
    page.get_by_label("Routes as JSON").fill('{"verb": "post", "path": "/one", "file": "echo", "function": "echo",'
                                              ' "body": [{"name": "text", "type": "str"}]}')
    page.get_by_role("button", name="Load routes").click()
    assert routes_on_the_form(page) == [{"verb": "POST", "path": "/one", "file": "echo",
                                         "params": [["text", "str", "", ""]]}]
    ui.close()


def test_one_next_shows_every_problem_of_the_routes_beside_its_field(browser, plane):
    ui = Dashboard(browser, plane)
    page = ui.page
    ui.go("/dashboard/create")
    page.fill("#name", "many-problems")
    page.check('input[name="source"][value="directory"]')
    page.fill("#model-directory", ECHO_DIR)
    page.get_by_text("Paste route JSON").click()
    page.get_by_label("Routes as JSON").fill(json.dumps([
        {"verb": "POST", "path": "", "file": "echo", "function": "echo",
         "body": [{"name": "t", "type": "int", "optional": True, "default_value": "abc"},
                  {"name": "t", "type": "int"}]},
        {"verb": "POST", "path": "/b", "file": "nofile", "function": "f"},
        {"verb": "POST", "path": "/c", "file": "echo", "function": "ehco"}]))
    page.get_by_role("button", name="Load routes").click()
    page.get_by_role("button", name="Next").click()
    routes = page.locator("[data-route]")
    routes.nth(2).locator('[data-error="function"]').wait_for()
    shown = {
        "path": routes.nth(0).locator('[data-error="path"]').inner_text(),
        "default": routes.nth(0).locator("[data-param]").nth(0).locator('[data-error="default_value"]').inner_text(),
        "twice": routes.nth(0).locator("[data-param]").nth(1).locator('[data-error="name"]').inner_text(),
        "file": routes.nth(1).locator('[data-error="file"]').inner_text(),
        "function": routes.nth(2).locator('[data-error="function"]').inner_text(),
    }
    assert shown == {"path": "'' must start with '/' and use only URL path characters",
                     "default": "'abc' is not a Python literal", "twice": "'t' appears twice",
                     "file": f"'nofile' not found in {ECHO_DIR} (looked for nofile.py)",
                     "function": "echo.py has no function 'ehco' (it defines CALLS, echo, itertools)"}
    assert page.locator("#review").is_hidden()
    ui.shoot("create-every-problem")
    assert plane.api("GET", "/api/jobs").json() == []
    ui.close()


def create(plane, name: str, model: str, routes: list[dict], wait: bool = True, environment: dict | None = None,
           **endpoint) -> dict:
    """A job made through the SDK, in a thread of its own (Playwright's sync API runs an event loop in this one)."""
    from concurrent.futures import ThreadPoolExecutor

    from conftest import run

    async def scenario():
        async with plane.client() as client:
            job = await client.jobs.create(name, model={"source_type": "local", "source_uri": str(MODELS / model)},
                                           endpoint={"routes": routes, **endpoint}, wait=False,
                                           **({"environment": environment} if environment else {}))
            if wait:
                await job.wait_for("running", timeout=300)
                await job.refresh()
            return job.dict

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: run(scenario())).result(timeout=120)


def entry_texts(page) -> list[str]:
    return page.locator(".log-line .msg").evaluate_all("rows => rows.map(r => r.innerText)")


def test_logs_keep_print_order_across_streams_and_filter_pause_follow_and_download(browser, plane):
    crash = {"verb": "POST", "path": "/crash", "file": "crash", "function": "crash",
             "body": [{"name": "value", "type": "str"}]}
    job = create(plane, "order", "dashboard_traceback", [crash])
    ui = Dashboard(browser, plane)
    page = ui.page
    ui.go(f"/dashboard/jobs/{job['id']}/logs")
    page.locator('#live[data-state="live"]').wait_for()
    # The runtime's ready line is news on stdout, not an error.
    ready = page.locator(".log-line", has_text="ready: 1 route(s)")
    assert ready.get_attribute("data-stream") == "stdout" and "err" not in ready.locator(".kind").inner_text()

    # A call prints a traceback on stderr, then a summary on stdout: newest on top, the summary is above it.
    for value in ("x", "y"):
        assert requests.post(job["url"] + "/crash", json={"value": value}, timeout=10).ok
    page.locator(".log-line", has_text="summary for y:").wait_for()
    wait_for(lambda: sum("ValueError: bad value 'y'" in t for t in entry_texts(page)) == 1, "the second traceback")
    texts = entry_texts(page)
    where = lambda text: next(i for i, t in enumerate(texts) if text in t)  # noqa: E731
    assert (where("summary for y:") < where("bad value 'y'") < where("summary for x:") < where("bad value 'x'")
            ), texts
    ui.shoot("logs-order")

    # Filter: only the entries holding the text, and how many.
    page.get_by_label("Filter the log").fill("summary for")
    assert [t.splitlines()[0] for t in entry_texts(page) if t] and all(
        "summary for" in row.inner_text() for row in page.locator(".log-line:visible").all())
    assert page.locator(".log-line:visible").count() == 2
    assert page.locator("#log-note").inner_text().startswith("2 of ")
    page.get_by_label("Filter the log").fill("")

    # Pause holds new lines (counted) until Follow shows them.
    page.get_by_role("button", name="Pause").click()
    assert page.locator("#live").inner_text() == "Paused"
    assert requests.post(job["url"] + "/crash", json={"value": "z"}, timeout=10).ok
    page.get_by_text("new lines held").wait_for()
    assert not any("summary for z" in t for t in entry_texts(page))
    page.get_by_role("button", name="Follow").click()
    page.locator(".log-line", has_text="summary for z:").wait_for()
    assert page.locator("#live").inner_text() == "Live"

    # Download: the whole log as text, oldest first, in print order too.
    with page.expect_download() as download:
        page.get_by_role("link", name="Download").click()
    text = Path(download.value.path()).read_text()
    assert download.value.suggested_filename == "order.log"
    assert text.index("bad value 'x'") < text.index("summary for x:") < text.index("bad value 'y'")
    assert " stdout r1 ready: 1 route(s)" in text

    # A failed import: its traceback is in the log once, in monospace, the caret line under what it points at.
    route = {"verb": "POST", "path": "/predict", "file": "predict", "function": "predict", "body": []}
    broken = create(plane, "broken", "import_error", [route], wait=False)
    wait_for(lambda: plane.api("GET", f"/api/jobs/{broken['id']}").json()["status"] == "failed", "the failure", 60)
    ui.go(f"/dashboard/jobs/{broken['id']}/logs")
    page.locator(".log-line", has_text="status: failed").wait_for()
    traceback = page.locator(".log-line", has_text="Traceback (most recent call last):")
    texts = [t for t in entry_texts(page) if "Traceback (most recent call last):" in t]
    assert len(texts) == 1, entry_texts(page)
    lines = texts[0].splitlines()
    caret = next(i for i, line in enumerate(lines) if line.strip().startswith("^"))
    assert lines[caret].index("^") == lines[caret - 1].index("import helper_that_does_not_exist")
    assert "mono" in traceback.locator(".msg").evaluate("m => getComputedStyle(m).fontFamily").lower()
    ui.close()


ECHO_ROUTE = {"verb": "POST", "path": "/predict", "file": "echo", "function": "echo",
              "body": [{"name": "text", "type": "str"}]}


def test_a_keyed_endpoint_shows_a_key_badge_and_its_key_rotates_from_connect(browser, plane):
    keyed = create(plane, "keyed", "dashboard_echo", [ECHO_ROUTE], auth=True)
    plain = create(plane, "plain", "dashboard_echo", [ECHO_ROUTE])
    ui = Dashboard(browser, plane)
    page = ui.page
    keyed_row, plain_row = (page.locator(f'tr[data-job-id="{job["id"]}"]') for job in (keyed, plain))
    keyed_row.locator('.badge[data-status="running"]').wait_for()
    assert keyed_row.locator(".key-badge").is_visible() and keyed_row.locator(".key-badge").inner_text() == "key"
    assert plain_row.locator(".key-badge").is_hidden()
    ui.shoot("endpoints-keyed", "/dashboard/")
    ui.go(f"/dashboard/jobs/{keyed['id']}")
    assert page.locator("#job-head .key-badge").is_visible()
    ui.go(f"/dashboard/jobs/{plain['id']}")
    assert page.locator("#job-head .key-badge").is_hidden()

    ui.go(f"/dashboard/jobs/{keyed['id']}/connect")
    old = page.locator("#endpoint-key").inner_text()
    page.get_by_role("button", name="Rotate key").click()
    page.locator("dialog#confirm").get_by_role("button", name="Rotate key").click()
    page.get_by_text("Key rotated: the old key no longer works.").wait_for(timeout=30_000)
    new = page.locator("#endpoint-key").inner_text()
    assert new and new != old
    command = page.locator("[data-curl]").first.inner_text()
    assert new in command and old not in command
    call = lambda key: requests.post(keyed["url"] + "/predict", json={"text": "k"},  # noqa: E731
                                     headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code
    assert (call(old), call(new)) == (401, 200)
    ui.shoot("connect-keyed")

    # Stop from the list: the toast says so until the endpoint has stopped, then that it has.
    ui.go("/dashboard/")
    plain_row.locator('.badge[data-status="running"]').wait_for()
    plain_row.get_by_role("button", name="Stop plain").click()
    toast = page.locator("#toast")
    wait_for(lambda: toast.inner_text() in ("Stopping plain…", "plain is stopped."), "the Stop toast")
    plain_row.locator('.badge[data-status="stopped"]').wait_for(timeout=30_000)
    wait_for(lambda: toast.inner_text() == "plain is stopped.", "the toast to say it has stopped")
    ui.close()


def test_secrets_are_added_from_a_password_field_never_shown_and_removed(browser, plane):
    value = "s3cr3t-value-never-shown"
    ui = Dashboard(browser, plane)
    page = ui.page
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Secrets").click()
    page.get_by_text("No secrets yet.").wait_for()
    assert page.get_by_label("Value").get_attribute("type") == "password"
    page.get_by_label("Name").fill("bad name")
    page.get_by_label("Value").fill(value)
    page.get_by_role("button", name="Save secret").click()
    name_error = page.locator('#secret-form [data-error-for="name"]')
    wait_for(lambda: name_error.inner_text().startswith("secret name: 'bad name' must be letters"), "the name's error")
    page.get_by_label("Name").fill("HF_TOKEN")
    page.get_by_role("button", name="Save secret").click()
    page.get_by_text("Secret HF_TOKEN saved; its value is not shown again.").wait_for()
    assert page.get_by_label("Value").input_value() == ""
    assert page.locator('tr[data-secret="HF_TOKEN"]').is_visible()
    assert [s["name"] for s in plane.api("GET", "/api/secrets").json()] == ["HF_TOKEN"]
    # Nowhere again: not on the page as the server renders it, nor in anything the API answers.
    ui.go("/dashboard/secrets")
    assert page.locator('tr[data-secret="HF_TOKEN"]').is_visible()
    assert value not in page.content() and value not in plane.api("GET", "/api/secrets").text
    assert_labelled(page)
    ui.shoot("secrets")

    page.get_by_role("button", name="Remove HF_TOKEN").click()
    page.locator("dialog#confirm").get_by_role("button", name="Remove").click()
    page.locator('tr[data-secret="HF_TOKEN"]').wait_for(state="detached")
    assert plane.api("GET", "/api/secrets").json() == []
    ui.close()


def test_environments_are_listed_with_their_jobs_removed_when_unused_and_pruned(browser, plane):
    version = {"verb": "GET", "path": "/version", "file": "predict", "function": "version"}
    job = create(plane, "tabulated", "tabulate_version", [version],
                 environment={"packages": {"pip": ["tabulate==0.9.0"]}})
    key = plane.api("GET", f"/api/jobs/{job['id']}").json()["environment"]["key"]
    ui = Dashboard(browser, plane)
    page = ui.page
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Environments").click()
    row = page.locator(f'tr[data-environment="{key}"]')
    assert "tabulate==0.9.0" in row.locator('[data-label="Packages"]').inner_text()
    assert row.locator('[data-label="Used by"]').inner_text() == "tabulated (held by tabulated)"
    ui.shoot("environments", "/dashboard/environments")

    # Held by a running endpoint: not removed, and the page says by which.
    row.get_by_role("button", name=f"Remove environment {key[:12]}").click()
    page.get_by_text("Held by tabulated: stop or remove it first.").wait_for()
    page.get_by_role("button", name="Prune unused").click()
    page.locator("dialog#confirm").get_by_role("button", name="Prune").click()
    page.get_by_text("Nothing to prune: every environment is in use.").wait_for()

    # Once its endpoint is removed, Prune removes it.
    assert plane.api("DELETE", f"/api/jobs/{job['id']}", params={"force": "true"}).status_code == 200
    page.reload()
    assert row.locator('[data-label="Used by"]').inner_text() == "—"
    page.get_by_role("button", name="Prune unused").click()
    page.locator("dialog#confirm").get_by_role("button", name="Prune").click()
    page.get_by_text("1 environment removed.").wait_for()
    row.wait_for(state="detached")
    assert plane.api("GET", "/api/environments").json()["environments"] == []
    ui.close()


def test_connect_shows_python_and_cli_calls_that_work_and_try_it_answers(browser, plane):
    import shlex
    import subprocess
    import sys

    routes = [{**ECHO_ROUTE, "body": [{"name": "text", "type": "str"},
                                      {"name": "times", "type": "int", "optional": True, "default_value": "1"}]}]
    job = create(plane, "tried", "dashboard_echo", routes, auth=True)
    ui = Dashboard(browser, plane)
    page = ui.page
    ui.go(f"/dashboard/jobs/{job['id']}/connect")
    assert page.locator("[data-python]").first.is_hidden()

    # Python: the shown code, run as shown, prints the answer (the key is in it).
    page.get_by_role("button", name="Python").click()
    code = page.locator("[data-python]").first.inner_text()
    assert code.startswith("import requests") and "Bearer " in code
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == str({"echo": "text"}), result.stderr
    ui.shoot("connect-python")

    # The CLI: `trainml job call` finds the URL and the key itself.
    page.get_by_role("button", name="trainml CLI").click()
    command = page.locator("[data-cli]").first.inner_text()
    assert command == "trainml job call tried 'POST /predict' -d '{\"text\": \"text\", \"times\": 1}'"
    env = {**os.environ, "TRAINML_API_URL": plane.url, "TRAINML_API_TOKEN": plane.token,
           "TRAINML_HOME": str(plane.home)}
    result = subprocess.run([sys.executable, "-m", "trainml_cli", *shlex.split(command)[1:]], env=env,
                            capture_output=True, text=True, timeout=60)
    assert json.loads(result.stdout) == {"echo": "text"}, result.stderr

    # Try it: the body template is there to edit; Send shows the answer, sent with the key.
    body = page.get_by_label("Body (JSON)")
    assert json.loads(body.input_value()) == {"text": "text", "times": 1}
    body.fill('{"text": "hi", "times": 3')
    page.get_by_role("button", name="Send").click()
    page.locator("#try-error", has_text="The body is not valid JSON").wait_for()
    body.fill('{"text": "hi", "times": 3}')
    page.get_by_role("button", name="Send").click()
    page.locator("#try-answer").wait_for()
    assert page.locator("#try-code").inner_text() == "200"
    assert json.loads(page.locator("#try-output").inner_text()) == {"echo": "hihihi"}
    assert "sent with the endpoint key" in page.locator("#try-meta").inner_text()
    # A body the route refuses: its 422 is shown as the endpoint answered it.
    body.fill('{"times": 2}')
    page.get_by_role("button", name="Send").click()
    page.locator("#try-code", has_text="422").wait_for()
    assert "text" in page.locator("#try-output").inner_text()
    assert_labelled(page)
    ui.shoot("connect-try-it")
    ui.close()


def test_details_nits_failed_endpoints_unknown_pages_and_the_skip_link(browser, plane):
    route = {"verb": "POST", "path": "/predict", "file": "predict", "function": "predict",
             "body": [{"name": "text", "type": "str"}, {"name": "limit", "type": "int", "optional": True}]}
    failed = create(plane, "fails-to-load", "import_error", [route], wait=False)
    wait_for(lambda: plane.api("GET", f"/api/jobs/{failed['id']}").json()["status"] == "failed", "the failure", 60)
    ui = Dashboard(browser, plane)
    page = ui.page
    # The first Tab reaches the skip link, which moves the focus to the page's content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"

    # A failed endpoint offers no Connect (no URL to connect to) and no hourly rate.
    row = page.locator(f'tr[data-job-id="{failed["id"]}"]')
    row.locator('.badge[data-status="failed"]').wait_for()
    assert row.get_by_role("link", name="Connect").count() == 0 and row.get_by_role("link", name="View logs").count()
    ui.go(f"/dashboard/jobs/{failed['id']}")
    assert page.get_by_role("navigation", name="Endpoint").get_by_role("link", name="Connect").count() == 0
    assert "Hourly rate" not in page.locator("dl.facts").first.inner_text()
    # An optional param without a default reads "= None"; the breadcrumb has no trailing slash.
    assert "text: str, limit: int = None" in page.locator(".panel", has_text="text: str").last.inner_text()
    assert page.locator(".crumbs").inner_text() == "Endpoints"
    # A long path breaks after a slash, never inside a folder's name.
    source = page.locator("dl.facts dd.path").first
    assert source.inner_text().endswith("import_error") and "/<wbr>" in source.inner_html()
    page.set_viewport_size({"width": 390, "height": 844})
    lines = source.evaluate("""dd => { const range = document.createRange(); range.selectNodeContents(dd);
        const tops = [...range.getClientRects()].map(r => Math.round(r.top)); return new Set(tops).size; }""")
    assert lines > 1  # it did wrap at this width
    words = source.evaluate("""dd => { const out = [];
        const walker = document.createTreeWalker(dd, NodeFilter.SHOW_TEXT);
        for (let n = walker.nextNode(); n; n = walker.nextNode()) { const r = document.createRange();
          r.selectNodeContents(n); out.push(new Set([...r.getClientRects()].map(x => Math.round(x.top))).size); }
        return out; }""")
    assert max(words) == 1, words  # each piece between two slashes stays on one line
    page.set_viewport_size({"width": 1366, "height": 900})
    ui.shoot("details-failed")

    # An unknown dashboard URL gets the Not found page, not a JSON error.
    answer = page.goto(plane.url + "/dashboard/no/such/page")
    assert answer.status == 404
    assert page.get_by_role("heading", name="Page not found").is_visible()
    ui.errors.clear()  # the 404 above was asked for
    ui.close()
