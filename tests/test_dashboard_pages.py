"""The dashboard's newer pages and form helpers in Chromium, on one control plane and one browser for the module
(the launches are what is slow): routes from a model's routes.json or pasted JSON, every form problem at once,
the key badge, the Secrets and Environments pages, Try it. Each page is checked for layout faults at 1366 and
390 px (check_layout), and screenshots go to test-output/dashboard/ as in test_dashboard_browser.py.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from conftest import ControlPlane, kill_everything_under
from test_dashboard_browser import ARGS, CHROMIUM, ECHO_DIR, Dashboard, assert_labelled

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Chromium is not installed at /usr/bin/chromium")

ROUTES = [{"verb": "POST", "path": "/predict", "file": "echo", "function": "echo",
           "body": [{"name": "text", "type": "str"}, {"name": "times", "type": "int", "optional": True,
                                                      "default_value": "3"}]},
          {"verb": "GET", "path": "/shout", "file": "echo", "function": "echo",
           "body": [{"name": "text", "type": "str", "choices": ["a", "b"]}]}]


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


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
