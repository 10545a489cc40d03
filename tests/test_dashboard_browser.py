"""The dashboard in a real browser: Playwright driving Debian's Chromium against the real control plane and real
endpoint processes. Screenshots of every page, at 1366 and 390 px wide, go to test-output/dashboard/;
each is also checked for layout faults (check_layout).

Skipped when Chromium or the playwright package is missing (`apt-get install chromium`, `pip install playwright`;
never `playwright install`: the browser is the system's).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import requests

import browserkit
from browserkit import (
    NARROW,
    SHOTS,
    SKIP_WITHOUT_CHROMIUM,
    WIDE,
    Dashboard,
    assert_labelled,
    wait_for,
)
from conftest import MODELS

ECHO_DIR = str(MODELS / "dashboard_echo")
TABULATE_DIR = str(MODELS / "tabulate_version")

pytestmark = SKIP_WITHOUT_CHROMIUM
browser = browserkit.browser  # the module's one Chromium (a fixture)


def fill_form(page, name: str, default_value: str = "2") -> None:
    """An endpoint for tests/models/dashboard_echo: POST /predict -> echo(text, times=DEFAULT)."""
    page.fill("#name", name)
    page.check('input[name="source"][value="directory"]')
    page.fill("#model-directory", ECHO_DIR)
    page.fill('[data-input="path"]', "/predict")
    page.fill('[data-input="file"]', "echo")
    page.fill('[data-input="function"]', "echo")
    page.get_by_role("button", name="Add Parameter").click()
    page.get_by_role("button", name="Add Parameter").click()
    first, second = page.locator("[data-param]").nth(0), page.locator("[data-param]").nth(1)
    first.get_by_label("Name").fill("text")
    second.get_by_label("Name").fill("times")
    second.get_by_label("Data type").select_option(label="Integer")
    second.get_by_label("Optional").check()
    second.get_by_label("Default Value").fill(default_value)


def test_create_connect_logs_chart_stop_remove(browser, control_plane):
    ui = Dashboard(browser, control_plane)
    page = ui.page
    ui.shoot("endpoints-empty")

    # Create through the form: Next shows the review, Create starts it and opens its page.
    ui.go("/dashboard/create")
    fill_form(page, "echo")
    assert_labelled(page)
    ui.shoot("create", "/dashboard/create")
    page.get_by_role("button", name="Next").click()
    review = page.locator("#review")
    review.wait_for(state="visible")
    assert "POST /predict → echo:echo" in review.inner_text()
    assert "times: int = 2" in review.inner_text()
    page.screenshot(path=str(SHOTS / "review-1366.png"), full_page=True)
    page.set_viewport_size(NARROW)
    page.screenshot(path=str(SHOTS / "review-390.png"), full_page=True)
    page.set_viewport_size(WIDE)
    page.get_by_role("button", name="Create", exact=True).click()
    page.wait_for_url(f"{control_plane.url}/dashboard/jobs/*")
    job_id = page.url.rsplit("/", 1)[1]
    # The status badge follows the job live, without a reload, until the endpoint answers.
    page.locator('#job-head .badge[data-status="running"]').wait_for(timeout=30_000)
    page.locator('#history .badge[data-status="running"]').wait_for()
    ui.shoot("details")

    # Connect: the shown curl command, run as shown, answers with the prediction.
    page.get_by_role("navigation", name="Endpoint").get_by_role("link", name="Connect").click()
    command = page.locator("[data-curl]").first.inner_text()
    assert command.startswith("curl -X POST ")
    result = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=10)
    assert json.loads(result.stdout) == {"echo": "texttext"}, result
    page.get_by_role("button", name="Copy the curl command for POST /predict").click()
    page.get_by_text("Command copied").wait_for()
    ui.shoot("connect")

    # Logs: a line the model prints appears on top without a reload.
    page.get_by_role("navigation", name="Endpoint").get_by_role("link", name="Logs").click()
    page.locator('#live[data-state="live"]').wait_for()
    page.evaluate("window.notReloaded = true")
    subprocess.run(shlex.split(command), capture_output=True, timeout=10)
    page.locator(".log-line", has_text="echo call #2 with 'text'").wait_for(timeout=5_000)
    top = page.locator(".log-line").evaluate_all("rows => rows.slice(0, 3).map(r => r.textContent)")
    assert any("echo call #2" in line for line in top), top
    assert page.evaluate("window.notReloaded") is True

    # Scrolling down loads older lines: make more than a page of them, then scroll to the bottom.
    url = control_plane.api("GET", f"/api/jobs/{job_id}").json()["url"]
    with requests.Session() as calls:
        for _ in range(130):
            calls.post(url + "/predict", json={"text": "x"}, timeout=5)
    page.reload()
    page.locator('#live[data-state="live"]').wait_for()
    assert page.locator("#log-end").inner_text() == "Scroll for older lines"
    shown = page.locator(".log-line").count()
    page.locator("#log").evaluate("box => box.scrollTo(0, box.scrollHeight)")
    wait_for(lambda: page.locator(".log-line").count() >= shown + 50, "an older page of lines")
    page.locator("#log").evaluate("box => box.scrollTo(0, box.scrollHeight)")
    page.get_by_text("Beginning of the log").wait_for()
    assert page.locator(".log-line").last.inner_text().endswith("job 'echo' created (local model)")
    ui.shoot("logs")

    # The endpoint list: live status, and a traffic chart fed by the runtime's counters.
    ui.go("/dashboard/")
    row = page.locator(f'tr[data-job-id="{job_id}"]')
    row.locator('.badge[data-status="running"]').wait_for()
    card = page.locator(f'.chart-card[data-job-id="{job_id}"]')
    card.wait_for()
    deadline = time.monotonic() + 20
    while "requests/s" not in card.locator(".chart-now").inner_text() and time.monotonic() < deadline:
        requests.post(url + "/predict", json={"text": "y"}, timeout=5)
        page.wait_for_timeout(250)
    assert "requests/s" in card.locator(".chart-now").inner_text()
    assert_labelled(page)
    ui.shoot("endpoints")

    # Stop, Start again, then Remove (which stops it first) with its confirmation; Cancel keeps it.
    row.get_by_role("button", name="Stop echo").click()
    row.locator('.badge[data-status="stopped"]').wait_for(timeout=20_000)
    assert row.get_by_role("button", name="Stop echo").is_hidden()
    row.get_by_role("button", name="Start echo").click()
    row.locator('.badge[data-status="running"]').wait_for(timeout=20_000)
    dialog = page.locator("dialog#confirm")
    row.get_by_role("button", name="Remove echo").click()
    dialog.get_by_role("button", name="Cancel").click()
    dialog.wait_for(state="hidden")
    assert control_plane.api("GET", f"/api/jobs/{job_id}").status_code == 200
    row.get_by_role("button", name="Remove echo").click()
    assert "Remove “echo”? Its endpoint is stopped first." in dialog.inner_text()
    page.screenshot(path=str(SHOTS / "remove-confirm-1366.png"))
    dialog.get_by_role("button", name="Remove").click()
    row.wait_for(state="detached")
    assert page.locator("#no-jobs").is_visible()
    assert control_plane.api("GET", "/api/jobs").json() == []
    ui.close()


def test_create_with_pip_packages_then_the_details_show_the_environment(browser, control_plane):
    interpreters = control_plane.api("GET", "/api/environments", timeout=60).json()["interpreters"]
    default = next(i for i in interpreters if i["default"])
    ui = Dashboard(browser, control_plane)
    page = ui.page
    ui.go("/dashboard/create")
    page.fill("#name", "tabulate")
    page.check('input[name="source"][value="directory"]')
    # A folder with a requirements.txt at its root says so under Requirements file; naming a file hides it.
    note = page.locator("#requirements-found")
    page.fill("#model-directory", str(MODELS / "requirements_file"))
    note.wait_for()
    assert note.inner_text() == "requirements.txt found: its packages are installed too."
    page.get_by_label("Requirements file (optional)").fill("other.txt")
    note.wait_for(state="hidden")
    page.get_by_label("Requirements file (optional)").fill("")
    note.wait_for()
    page.fill("#model-directory", TABULATE_DIR)
    note.wait_for(state="hidden")

    page.select_option('[data-input="verb"]', "GET")
    page.fill('[data-input="path"]', "/version")
    page.fill('[data-input="file"]', "predict")
    page.fill('[data-input="function"]', "version")
    python = page.get_by_label("Python", exact=True)
    assert python.locator("option").first.inner_text() == f"Python {default['version']} (default)"
    assert python.locator("option").count() == len(interpreters)
    assert_labelled(page)

    # An installer option among the packages is refused next to the packages field.
    packages = page.get_by_label("Python packages")
    packages.fill("tabulate==0.9.0, --index-url=http://127.0.0.1:9/simple")
    page.get_by_role("button", name="Next").click()
    error = page.locator('[data-error-for="environment.packages.pip"]')
    error.wait_for()
    assert error.inner_text().startswith("'--index-url=http://127.0.0.1:9/simple' looks like an installer option")
    assert packages.get_attribute("aria-invalid") == "true"
    assert page.locator("#review").is_hidden()
    ui.shoot("create-environment-error", "/dashboard/create")

    packages.fill("tabulate==0.9.0")
    page.get_by_role("button", name="Next").click()
    review = page.locator("#review")
    review.wait_for(state="visible")
    facts = page.locator("#review-environment").inner_text()
    assert "tabulate==0.9.0" in facts and f"Python {default['version']} (default)" in facts
    assert "GET /version → predict:version" in review.inner_text()
    page.screenshot(path=str(SHOTS / "review-environment-1366.png"), full_page=True)
    page.get_by_role("button", name="Create", exact=True).click()
    page.wait_for_url(f"{control_plane.url}/dashboard/jobs/*")
    job_id = page.url.rsplit("/", 1)[1]

    # The environment is built (uv fetches tabulate the first time), then the endpoint runs with the package.
    page.locator('#job-head .badge[data-status="running"]').wait_for(timeout=300_000)
    record = control_plane.api("GET", f"/api/jobs/{job_id}").json()
    assert record["environment"]["packages"]["pip"] == ["tabulate==0.9.0"]
    assert requests.get(record["url"] + "/version", timeout=10).json() == {"tabulate": "0.9.0"}
    env = page.locator("#environment")
    # Followed live: the key arrives with the build, without a reload; then the same once rendered by the server.
    for reloaded in (False, True):
        if reloaded:
            page.reload()
        env.locator('[data-env="key"]', has_text=record["environment"]["key"]).wait_for(timeout=20_000)
        assert env.locator('[data-env="packages"]').inner_text() == "tabulate==0.9.0"
        assert env.locator('[data-env="python"]').inner_text() == f"{default['version']} (default)"
        assert env.locator('[data-env="requirements"]').inner_text() == "none"
        assert env.locator('[data-env="note"]').is_hidden()
    ui.shoot("details-environment")
    ui.close()
    assert control_plane.api("DELETE", f"/api/jobs/{job_id}", params={"force": "true"}).status_code == 200


def test_bad_default_value_shows_next_to_its_field_and_creates_nothing(browser, shared_plane):
    ui = Dashboard(browser, shared_plane)
    page = ui.page
    ui.go("/dashboard/create")
    fill_form(page, "broken", default_value="two")
    page.get_by_role("button", name="Next").click()
    param = page.locator("[data-param]").nth(1)
    error = param.locator('[data-error="default_value"]')
    error.wait_for()
    assert error.inner_text() == "'two' is not a Python literal"
    assert param.get_by_label("Default Value").get_attribute("aria-invalid") == "true"
    assert page.locator("#review").is_hidden()
    page.screenshot(path=str(SHOTS / "create-error-1366.png"), full_page=True)
    page.set_viewport_size(NARROW)
    page.screenshot(path=str(SHOTS / "create-error-390.png"), full_page=True)
    assert shared_plane.api("GET", "/api/jobs").json() == []
    ui.close()


def test_the_batch_section_of_a_route_is_checked_and_reviewed(browser, shared_plane):
    ui = Dashboard(browser, shared_plane)
    page = ui.page
    ui.go("/dashboard/create")
    fill_form(page, "batched")
    route = page.locator("[data-route]").nth(0)
    size = route.get_by_label("Max batch size")
    assert size.is_disabled()  # only a batched route has batch settings
    route.get_by_label("Batch requests", exact=False).check()
    assert_labelled(page)
    size.fill("2000")
    page.get_by_role("button", name="Next").click()
    error = route.locator('[data-error="batch_max_size"]')
    error.wait_for()
    assert error.inner_text() == "2000 is more than 1024 (allowed: 1 to 1024)"
    assert size.get_attribute("aria-invalid") == "true"
    size.fill("16")
    route.get_by_label("Max wait (ms)").fill("5")
    page.get_by_role("button", name="Next").click()
    page.locator("#review").wait_for()
    review_text = page.locator("#review").inner_text()
    assert "Batched: up to 16 requests per call, waiting up to 5 ms to fill a batch" in review_text
    assert shared_plane.api("GET", "/api/jobs").json() == []
    ui.close()


def test_without_a_session_the_dashboard_says_how_to_sign_in(browser, shared_plane):
    context = browser.new_context(viewport=WIDE)
    page = context.new_page()
    page.goto(shared_plane.url + "/dashboard/")
    assert page.url == shared_plane.url + "/dashboard/signed-out"
    assert page.get_by_text("trainml server dashboard").is_visible()
    page.screenshot(path=str(SHOTS / "signed-out-1366.png"))
    page.set_viewport_size(NARROW)
    page.screenshot(path=str(SHOTS / "signed-out-390.png"))
    assert context.cookies() == []
    context.close()


def test_sign_out_ends_the_session(browser, shared_plane):
    ui = Dashboard(browser, shared_plane)
    assert [c["name"] for c in ui.context.cookies()] == ["trainml_session"]
    cookie = ui.context.cookies()[0]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    ui.page.get_by_role("button", name="Sign out").click()
    ui.page.wait_for_url(f"{shared_plane.url}/dashboard/signed-out?bye=1")
    assert ui.context.cookies() == []
    ui.go("/dashboard/")
    assert ui.page.url.endswith("/dashboard/signed-out")
    ui.close()


def test_hostile_names_and_log_lines_stay_text(browser, control_plane, tmp_path):
    name = '<img src=x onerror="window.owned=1">'
    (tmp_path / "<b>repo</b>").mkdir(parents=True)  # a folder, not a repository: the clone fails, naming it in the log
    payload = {"name": name, "model": {"source_type": "git", "source_uri": f"file://{tmp_path}/<b>repo</b>"},
               "endpoint": {"routes": [{"verb": "POST", "path": "/p", "file": "predict", "function": "predict"}]}}
    created = control_plane.api("POST", "/api/jobs", json=payload)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    ui = Dashboard(browser, control_plane)
    row = ui.page.locator(f'tr[data-job-id="{job_id}"]')
    row.locator('.badge[data-status="failed"]').wait_for(timeout=20_000)  # the clone fails; updated live
    assert row.locator('[data-field="name"]').inner_text() == name
    ui.go(f"/dashboard/jobs/{job_id}/logs")
    ui.page.locator(".log-line", has_text="<b>repo</b>").first.wait_for()
    assert ui.page.locator("img, b").count() == 0
    assert ui.page.evaluate("window.owned") is None
    ui.close()


ECHO_ROUTE = {"verb": "POST", "path": "/predict", "file": "echo", "function": "echo",
              "body": [{"name": "text", "type": "str"}]}


def create_echo(plane, name: str, directory: str = ECHO_DIR, routes: tuple = (ECHO_ROUTE,), **endpoint) -> dict:
    """An echo endpoint (or another model's) made through the SDK (as a script would), running; `endpoint`: more
    of its endpoint fields (capture, auth). In a thread of its own: Playwright's sync API keeps an event loop
    running in this one."""
    from concurrent.futures import ThreadPoolExecutor

    from conftest import run

    async def scenario():
        async with plane.client() as client:
            job = await client.jobs.create(name, model={"source_type": "local", "source_uri": directory},
                                           endpoint={"routes": list(routes), **endpoint}, wait=True)
            return job.dict

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: run(scenario())).result(timeout=120)


def test_traffic_sent_before_the_page_opens_shows_in_the_chart(browser, control_plane):
    job = create_echo(control_plane, "early")
    with requests.Session() as calls:
        for _ in range(200):
            assert calls.post(job["url"] + "/predict", json={"text": "x"}, timeout=5).ok
    # Nobody watches: the control plane samples anyway (every 5 s); wait until its history holds all 200.
    def recorded():
        data = control_plane.api("GET", "/api/dashboard/traffic", params={"job": job["id"]}).json()
        return sum(p["requests"] for p in data["jobs"][0]["points"])
    wait_for(lambda: recorded() == 200, "the sampler to record the 200 calls", timeout=30)

    ui = Dashboard(browser, control_plane)
    card = ui.page.locator(f'.chart-card[data-job-id="{job["id"]}"]')
    card.locator(".chart-now", has_text="200 requests in the last 5 minutes").wait_for()
    assert "p50 " in card.locator(".chart-now").inner_text()
    # The other spans read the same history at a coarser step.
    ui.page.get_by_role("button", name="24 h").click()
    card.locator(".chart-now", has_text="200 requests in the last 24 hours").wait_for()
    ui.shoot("endpoints-traffic")
    ui.go(f"/dashboard/jobs/{job['id']}")
    ui.page.locator("#traffic .chart-now", has_text="200 requests in the last 5 minutes").wait_for()
    ui.close()


def test_streams_open_items_sent_and_time_to_first_item_show_on_the_details_page(browser, control_plane,
                                                                                    tmp_path):
    tokens = {"verb": "POST", "path": "/tokens", "file": "predict", "function": "tokens",
              "body": [{"name": "n", "type": "int"}, {"name": "gate", "type": "str"}]}
    job = create_echo(control_plane, "streamer", str(MODELS / "stream_tokens"), (tokens,))
    gate = tmp_path / "gate"
    gate.touch()
    for _ in range(2):
        answer = requests.post(job["url"] + "/tokens", json={"n": 5, "gate": str(gate)}, timeout=10,
                               headers={"Accept": "text/event-stream"})
        assert answer.ok and answer.text.count("data: ") == 6  # five items and the end
    # Nobody watches: the control plane reads the endpoint's metrics anyway (every 5 s).
    def streams():
        data = control_plane.api("GET", "/api/dashboard/traffic", params={"job": job["id"]}).json()
        return data["jobs"][0]["streams"]
    wait_for(lambda: (streams() or {}).get("items") == 10, "the sampler to read the 10 items sent", timeout=30)
    assert streams()["open"] == 0 and streams()["first_item_ms"] > 0

    ui = Dashboard(browser, control_plane)
    ui.go(f"/dashboard/jobs/{job['id']}")
    line = ui.page.locator('#traffic [data-field="streams"]')
    line.filter(has_text="Streams: 0 open · 10 items sent · first item after").wait_for()
    assert line.inner_text().endswith("ms on average.")
    # An endpoint that has not streamed shows no such line.
    echo = create_echo(control_plane, "plain")
    ui.go(f"/dashboard/jobs/{echo['id']}")
    ui.page.locator('#traffic [data-field="now"]').filter(has_not_text="Loading").wait_for()  # drawn
    assert ui.page.locator('#traffic [data-field="streams"]').is_hidden()
    assert not ui.errors
    ui.close()


def fill_echo_route(page, name: str) -> None:
    page.fill("#name", name)
    page.fill('[data-input="path"]', "/predict")
    page.fill('[data-input="file"]', "echo")
    page.fill('[data-input="function"]', "echo")
    page.get_by_role("button", name="Add Parameter").click()
    page.locator("[data-param]").nth(0).get_by_label("Name").fill("text")


def test_upload_a_folder_and_a_tar_gz_from_the_browser_and_reach_running(browser, control_plane, tmp_path):
    import shutil
    import tarfile

    folder = tmp_path / "echo-model"
    shutil.copytree(ECHO_DIR, folder)
    for skipped in (".git", "__pycache__", "env"):  # env holds a pyvenv.cfg: a virtualenv
        (folder / skipped).mkdir(exist_ok=True)
        (folder / skipped / "big.bin").write_bytes(b"x" * 1000)
    (folder / "env" / "pyvenv.cfg").write_text("home = /usr\n")
    (folder / "pkg").mkdir()
    (folder / "pkg" / "helper.py").write_text("X = 1\n")

    ui = Dashboard(browser, control_plane)
    page = ui.page
    ui.go("/dashboard/create")
    zone = page.locator("#model-upload")
    assert "Up to 10.0 GB" in zone.inner_text()  # the limit, before anything is sent
    fill_echo_route(page, "uploaded")
    page.fill('[data-input="file"]', "missing")
    page.set_input_files("#model-folder", str(folder))
    zone.locator("[data-upload-status]", has_text="echo-model: 2 files").wait_for()  # .git, __pycache__, env skipped
    assert zone.locator("progress").evaluate("bar => bar.value === bar.max && bar.max > 0")
    assert_labelled(page)
    ui.shoot("create-uploaded", "/dashboard/create")
    # The route's file is checked against the uploaded tree, as the CLI checks the folder.
    page.get_by_role("button", name="Next").click()
    error = page.locator("[data-route]").nth(0).locator('[data-error="file"]')
    error.wait_for()
    assert error.inner_text() == "'missing' not found in the uploaded folder (looked for missing.py)"
    page.fill('[data-input="file"]', "echo")
    page.get_by_role("button", name="Next").click()
    page.locator("#review").wait_for()
    assert "Uploaded: echo-model (uploaded from the browser)" in page.locator("#review").inner_text()
    page.get_by_role("button", name="Create", exact=True).click()
    page.wait_for_url(f"{control_plane.url}/dashboard/jobs/*")
    page.locator('#job-head .badge[data-status="running"]').wait_for(timeout=30_000)
    job_id = page.url.rsplit("/", 1)[1]
    url = control_plane.api("GET", f"/api/jobs/{job_id}").json()["url"]
    assert requests.post(url + "/predict", json={"text": "hi"}, timeout=10).json() == {"echo": "hi"}
    assert not (control_plane.home / "jobs" / job_id / "model" / ".git").exists()
    assert (control_plane.home / "jobs" / job_id / "model" / "pkg" / "helper.py").exists()

    # A .tar.gz goes as it is.
    archive = tmp_path / "echo.tar.gz"
    with tarfile.open(archive, "w:gz") as out:
        out.add(Path(ECHO_DIR) / "echo.py", arcname="echo.py")
    ui.go("/dashboard/create")
    fill_echo_route(page, "from-archive")
    page.set_input_files("#model-archive", str(archive))
    page.locator("#model-upload [data-upload-status]", has_text="echo.tar.gz: 1 file,").wait_for()
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Create", exact=True).click()
    page.wait_for_url(f"{control_plane.url}/dashboard/jobs/*")
    page.locator('#job-head .badge[data-status="running"]').wait_for(timeout=30_000)

    # A .zip goes as it is too; the server turns it into a tar.gz, and the route file is found in it.
    import zipfile

    zipped = tmp_path / "echo.zip"
    with zipfile.ZipFile(zipped, "w") as out:
        out.write(Path(ECHO_DIR) / "echo.py", "echo.py")
    ui.go("/dashboard/create")
    fill_echo_route(page, "from-zip")
    page.set_input_files("#model-archive", str(zipped))
    page.locator("#model-upload [data-upload-status]", has_text="echo.zip: 1 file,").wait_for()
    page.get_by_role("button", name="Next").click()
    page.locator("#review").wait_for()
    assert "Uploaded: echo.zip (uploaded from the browser)" in page.locator("#review").inner_text()
    ui.close()


def test_a_traceback_reads_top_down_as_one_entry(browser, control_plane):
    from concurrent.futures import ThreadPoolExecutor

    from conftest import run

    crash_route = {"verb": "POST", "path": "/crash", "file": "crash", "function": "crash",
                   "body": [{"name": "value", "type": "str"}]}

    async def scenario():
        async with control_plane.client() as client:
            job = await client.jobs.create("tracer", model={"source_type": "local",
                                           "source_uri": str(MODELS / "dashboard_traceback")},
                                           endpoint={"routes": [crash_route]}, wait=True)
            return job.dict

    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(lambda: run(scenario())).result(timeout=120)
    assert requests.post(job["url"] + "/crash", json={"value": "x"}, timeout=10).ok
    assert requests.post(job["url"] + "/nowhere", json={}, timeout=10).status_code == 404
    ui = Dashboard(browser, control_plane)
    page = ui.page
    ui.go(f"/dashboard/jobs/{job['id']}/logs")
    entry = page.locator(".log-line", has_text="Traceback (most recent call last):")
    entry.wait_for()
    # The output is tailed from files in chunks: a record's later lines may join its entry a moment later.
    page.wait_for_function(
        "() => [...document.querySelectorAll('.log-line .msg')].some(m => "
        "m.innerText.includes(\"ValueError: bad value 'x'\")"
        " && m.innerText.includes('Traceback (most recent call last):'))", timeout=20000)
    text = entry.locator(".msg").inner_text()
    lines = text.splitlines()
    # One entry, in the order Python printed it: the header first, the frames, the exception last.
    assert lines[0] == "Traceback (most recent call last):", text
    assert lines[-1] == "ValueError: bad value 'x'", text
    assert text.index('in crash') < text.index('in inner')
    assert entry.get_attribute("data-stream") == "stderr"
    block = page.locator(".log-line", has_text="summary for x:").locator(".msg").inner_text()
    assert block == "summary for x:\n  first: 1\n  second: 2"
    # Newest entry first: the access-log line of the 404 is above the traceback, marked, with one timestamp.
    missing = page.locator('.log-line[data-http="4xx"]')
    access_line = missing.locator(".msg").inner_text()
    assert access_line == "POST /nowhere 404 " + access_line.split(" 404 ")[1]
    assert missing.evaluate("(row) => row.compareDocumentPosition(document.querySelector('.log-line.multi')) & 4") == 4
    assert page.locator('.log-line[data-stream="event"]').count() > 0
    # Everything fits on the page: the log is the only thing that would scroll.
    assert page.locator("#log-end").inner_text() == "Beginning of the log"
    ui.shoot("logs-traceback")
    ui.close()


def test_the_models_page_adds_shows_uses_and_removes_stored_models(browser, control_plane, tmp_path):
    import shutil

    repo = tmp_path / "repo"
    shutil.copytree(ECHO_DIR, repo)
    for command in (["init", "-q", "-b", "main"], ["add", "."],
                    ["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "echo"]):
        subprocess.run(["git", *command], cwd=repo, check=True, capture_output=True, timeout=30)

    ui = Dashboard(browser, control_plane)
    page = ui.page
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Models").click()
    page.get_by_text("No stored models yet.").wait_for()
    ui.shoot("models-empty", "/dashboard/models")

    # From a folder on this computer: the name comes from the folder; Add opens the model's page.
    page.set_input_files("#stored-folder", ECHO_DIR)
    page.locator("#stored-upload [data-upload-status]", has_text="uploaded").wait_for()
    assert page.get_by_label("Name").input_value() == "dashboard_echo"
    page.get_by_role("button", name="Add model").click()
    page.wait_for_url(f"{control_plane.url}/dashboard/models/*")
    assert page.locator("#model-files").inner_text().startswith("echo.py")
    assert "local: dashboard_echo (uploaded from the browser)" in page.locator("dl.facts").inner_text()
    ui.shoot("model")

    # From git.
    ui.go("/dashboard/models")
    page.get_by_label("A git repository").check()
    page.get_by_label("Name").fill("from-git")
    page.get_by_label("Git URI").fill(repo.as_uri())
    page.get_by_role("button", name="Add model").click()
    page.wait_for_url(f"{control_plane.url}/dashboard/models/*")
    assert "Commit" in page.locator("dl.facts").inner_text()
    ui.go("/dashboard/models")
    assert page.locator("#model-rows tr").count() == 2
    assert_labelled(page)
    ui.shoot("models", "/dashboard/models")

    # Create an endpoint from it: the form opens with the stored model chosen.
    row = page.locator("#model-rows tr", has_text="dashboard_echo")
    row.get_by_role("link", name="Create an endpoint from dashboard_echo").click()
    assert page.get_by_label("A stored model").is_checked()
    assert page.locator("#stored-model option:checked").inner_text().startswith("dashboard_echo")
    fill_echo_route(page, "from-stored")
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Create", exact=True).click()
    page.wait_for_url(f"{control_plane.url}/dashboard/jobs/*")
    page.locator('#job-head .badge[data-status="running"]').wait_for(timeout=30_000)

    # Remove, confirmed; the endpoint made from it keeps running its own copy.
    ui.go("/dashboard/models")
    row = page.locator("#model-rows tr", has_text="dashboard_echo")
    row.get_by_role("button", name="Remove dashboard_echo").click()
    dialog = page.locator("dialog#confirm")
    assert "The endpoint made from it keeps running its own copy." in dialog.inner_text()
    dialog.get_by_role("button", name="Remove").click()
    row.wait_for(state="detached")
    assert [m["name"] for m in control_plane.api("GET", "/api/models").json()] == ["from-git"]
    assert control_plane.api("GET", "/api/jobs").json()[0]["status"] == "running"
    ui.close()


def test_a_fresh_create_form_shows_every_error_at_once_beside_its_field(browser, shared_plane):
    ui = Dashboard(browser, shared_plane)
    page = ui.page
    ui.go("/dashboard/create")
    gpu_count = page.get_by_label("GPU count")
    assert gpu_count.input_value() == "0" and gpu_count.is_disabled()  # a cpu job holds no GPU
    style = lambda selector, pseudo="": page.locator(selector).first.evaluate(  # noqa: E731
        f"(node) => {{ const s = getComputedStyle(node, {pseudo!r} || null); return "
        "[s.backgroundColor, s.color, s.fontStyle]; }")
    # Placeholders read as hints, and a disabled field looks unlike an enabled one.
    assert style("#name", "::placeholder")[2] == "italic"
    assert page.locator("#name").get_attribute("placeholder").startswith("e.g. ")
    assert style("#gpu-count")[0] != style("#cpu-count")[0]

    page.get_by_label("CPU count").fill("0")
    page.get_by_label("Max price (credits/hour)").fill("-5")
    page.get_by_role("button", name="Next").click()
    page.locator('[data-error-for="name"]').wait_for()
    errors = {
        "name": page.locator('[data-error-for="name"]').inner_text(),
        "cpu": page.locator('[data-error-for="resources.cpu_count"]').inner_text(),
        "price": page.locator('[data-error-for="resources.max_price"]').inner_text(),
        "upload": page.locator('[data-error-for="model.upload"]').inner_text(),
        "file": page.locator('[data-route] [data-error="file"]').inner_text(),
        "function": page.locator('[data-route] [data-error="function"]').inner_text(),
    }
    assert errors["name"] == "must not be empty"
    assert errors["cpu"] == "0 is too small; CPU count must be a whole number, 1 or more"
    assert errors["price"] == "-5 is too small; max price must be 0 or more (credits per hour)"
    assert errors["upload"] == "pick a folder or drop an archive, and wait until it is uploaded"
    assert errors["file"] and errors["function"], errors
    assert page.locator("[aria-invalid=true]").count() >= 5
    ui.shoot("create-errors", "/dashboard/create")

    # Picking a GPU type would enable the count; back to cpu sets it to 0 again. The review says "no GPU".
    page.get_by_label("CPU count").fill("1")
    page.get_by_label("Max price (credits/hour)").fill("1")
    fill_form(page, "fixed")
    page.get_by_role("button", name="Next").click()
    page.locator("#review").wait_for()
    assert "no GPU, 1 CPU, 10 GB disk" in page.locator("#review-facts").inner_text()
    ui.close()


def test_the_endpoint_list_fits_a_phone_and_a_laptop(browser, control_plane):
    long_name = "sentiment-analysis-production-eu-west-1"
    job = create_echo(control_plane, long_name)
    ui = Dashboard(browser, control_plane)
    row = ui.page.locator(f'tr[data-job-id="{job["id"]}"]')
    row.locator('.badge[data-status="running"]').wait_for()
    # The list uses the page's width at 1366 px: more than the old 1066 px cap.
    assert ui.page.locator("#jobs").evaluate("t => t.getBoundingClientRect().width") > 1250
    ui.shoot("endpoints-long-name")  # check_layout: no sideways scroll, labels whole, URL and actions on one line
    ui.close()


def test_connect_and_details_of_a_stopped_and_a_failed_endpoint(browser, control_plane, tmp_path):
    job = create_echo(control_plane, "pauses")
    port = str(job["port"])
    ui = Dashboard(browser, control_plane)
    page = ui.page
    ui.go(f"/dashboard/jobs/{job['id']}/connect")
    assert page.locator("#endpoint-url").inner_text() == job["url"]
    page.get_by_role("button", name="Copy the URL").click()
    page.get_by_text("URL copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == job["url"]
    pre = page.locator("[data-curl]").first
    assert job["url"] in pre.inner_text()
    wrapping = pre.evaluate("p => [getComputedStyle(p).wordBreak, getComputedStyle(p).overflowWrap]")
    assert wrapping == ["normal", "normal"]

    # Stopped: no URL, and no command with the port it had; the page says so in words.
    control_plane.api("POST", f"/api/jobs/{job['id']}/stop")
    page.locator('#job-head .badge[data-status="stopped"]').wait_for(timeout=20_000)
    assert page.locator("#endpoint-url").inner_text() == "—"
    assert page.get_by_role("button", name="Copy the URL").is_hidden()
    assert all(port not in text for text in page.locator("[data-curl]").all_inner_texts())
    assert page.locator("#not-running").inner_text().startswith("The endpoint is stopped;")
    ui.shoot("connect-stopped")
    page.reload()  # the same when rendered by the server
    assert all(port not in text for text in page.locator("[data-curl]").all_inner_texts())
    assert "http://ENDPOINT_URL/predict" in pre.inner_text()

    # Details: the size once known; a failed endpoint's reason is its error line, in monospace, the log one click away.
    ui.go(f"/dashboard/jobs/{job['id']}")
    assert page.locator('[data-field="model_size"]').inner_text().endswith(" B")
    assert page.locator('[data-field="model_size"]').inner_text() != "0 B"
    payload = {"name": "broken", "model": {"source_type": "git", "source_uri": tmp_path.as_uri()},  # no repository
               "endpoint": {"routes": [{"verb": "POST", "path": "/p", "file": "predict", "function": "predict"}]}}
    failed = control_plane.api("POST", "/api/jobs", json=payload).json()
    ui.go(f"/dashboard/jobs/{failed['id']}")
    page.locator('#job-head .badge[data-status="failed"]').wait_for(timeout=20_000)
    reason = page.locator("#job-reason")
    reason.wait_for()
    font = reason.evaluate("r => getComputedStyle(r).fontFamily")
    assert "monospace" in font or "Mono" in font
    assert reason.inner_text() == control_plane.api("GET", f"/api/jobs/{failed['id']}").json()["reason"].splitlines()[0]
    page.get_by_role("link", name="Open the log").click()
    page.wait_for_url(f"**/jobs/{failed['id']}/logs")
    ui.go(f"/dashboard/jobs/{failed['id']}/connect")
    assert page.locator("#not-running").inner_text().startswith("The endpoint failed;")
    ui.go(f"/dashboard/jobs/{failed['id']}")
    ui.shoot("details-failed")
    ui.close()


def test_an_archive_dropped_on_the_drop_zone_is_uploaded(browser, control_plane, tmp_path):
    import base64
    import tarfile

    archive = tmp_path / "dropped.tgz"
    with tarfile.open(archive, "w:gz") as out:
        out.add(Path(ECHO_DIR) / "echo.py", arcname="echo.py")
    ui = Dashboard(browser, control_plane)
    page = ui.page
    ui.go("/dashboard/create")
    zone = page.locator("#model-upload")
    data = base64.b64encode(archive.read_bytes()).decode()
    # What a browser does when a file is dropped: a drop event whose DataTransfer holds the File.
    transfer = page.evaluate_handle("""(data) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "dropped.tgz", { type: "application/gzip" }));
        return transfer;
    }""", data)
    zone.dispatch_event("dragover", {"dataTransfer": transfer})
    zone.dispatch_event("drop", {"dataTransfer": transfer})
    zone.locator("[data-upload-status]", has_text="dropped.tgz: 1 file,").wait_for()
    # Anything else is refused before it is sent, saying what would do.
    other = page.evaluate_handle("""() => {
        const transfer = new DataTransfer();
        transfer.items.add(new File(["x"], "notes.txt", { type: "text/plain" }));
        return transfer;
    }""")
    zone.dispatch_event("drop", {"dataTransfer": other})
    assert zone.locator("[data-upload-error]").inner_text() == \
        "notes.txt is not a .tar.gz, .tgz or .zip; drop one of those, or pick a folder."
    ui.close()


def test_an_uploaded_folder_with_a_requirements_txt_says_so(browser, control_plane):
    ui = Dashboard(browser, control_plane)
    page = ui.page
    ui.go("/dashboard/create")
    note = page.locator("#requirements-found")
    page.set_input_files("#model-folder", str(MODELS / "requirements_file"))
    note.wait_for()
    assert note.inner_text() == "requirements.txt found: its packages are installed too."
    page.get_by_label("Requirements file (optional)").fill("other.txt")
    note.wait_for(state="hidden")
    page.set_input_files("#model-folder", ECHO_DIR)  # no requirements.txt there
    page.get_by_label("Requirements file (optional)").fill("")
    page.locator("#model-upload [data-upload-status]", has_text="dashboard_echo:").wait_for()
    page.wait_for_timeout(500)
    assert note.is_hidden()
    ui.close()


ENVIRON_DIR = str(MODELS / "environ")
GETENV_ROUTE = {"verb": "POST", "path": "/getenv", "file": "predict", "function": "getenv",
                "body": [{"name": "name", "type": "str"}]}


def test_secrets_and_credentials_chosen_on_the_form_reach_the_endpoint_and_no_page_shows_a_value(
        browser, start_control_plane, tmp_path, monkeypatch):
    # The user's own home, with AWS credentials and no Kaggle ones; the control plane runs as that user, as
    # `trainml` would start it, and the CLI below looks in the same place.
    user = tmp_path / "user"
    (user / ".aws").mkdir(parents=True)
    (user / ".aws" / "credentials").write_text("[default]\naws_access_key_id = AKIAEXAMPLE\n")
    with monkeypatch.context() as patched:
        patched.setenv("HOME", str(user))
        plane = start_control_plane()
    env = {**os.environ, "TRAINML_API_URL": plane.url, "TRAINML_API_TOKEN": plane.token,
           "TRAINML_HOME": str(plane.home), "HOME": str(user), "NO_COLOR": "1"}

    def cli(*argv, input=None):
        return subprocess.run([sys.executable, "-m", "trainml_cli", *argv], env=env, input=input,
                              capture_output=True, text=True, timeout=60)

    value = "hf-9f2c-never-on-a-page"
    for name in ("HF_TOKEN", "GONE_SOON"):
        assert cli("secret", "create", name, input=value + "\n").returncode == 0
    ui = Dashboard(browser, plane)
    page = ui.page
    ui.go("/dashboard/create")
    page.fill("#name", "with-secrets")
    page.check('input[name="source"][value="directory"]')
    page.fill("#model-directory", ENVIRON_DIR)
    page.fill('[data-input="path"]', "/getenv")
    page.fill('[data-input="file"]', "predict")
    page.fill('[data-input="function"]', "getenv")
    page.get_by_role("button", name="Add Parameter").click()
    page.locator("[data-param]").get_by_label("Name").fill("name")
    secrets = page.get_by_role("group", name="Secrets")
    credentials = page.get_by_role("group", name="Credentials")
    secrets.get_by_label("HF_TOKEN").check()
    secrets.get_by_label("GONE_SOON").check()
    credentials.get_by_label("aws").check()
    credentials.get_by_label("kaggle").check()
    assert_labelled(page)
    ui.shoot("create-secrets", "/dashboard/create")

    # A secret removed since the page was opened, and credentials that are not there: each beside its group,
    # in the words the CLI uses for the same mistake.
    assert cli("secret", "remove", "GONE_SOON").returncode == 0
    page.get_by_role("button", name="Next").click()
    secret_error = page.locator('[data-error-for="environment.secrets"]')
    credential_error = page.locator('[data-error-for="environment.credentials"]')
    secret_error.wait_for()
    assert secret_error.inner_text() == ("no secret named 'GONE_SOON'; store it first with "
                                         "`trainml secret create GONE_SOON`")
    assert credential_error.inner_text().startswith(
        "no kaggle credentials found at ~/.kaggle/kaggle.json; save kaggle.json from your Kaggle account page")
    route = ["--model-dir", ENVIRON_DIR, "--route", json.dumps(GETENV_ROUTE), "--no-connect"]
    by_cli = cli("job", "create", "endpoint", "x", "--secret", "GONE_SOON", *route)
    assert by_cli.returncode == 2 and f"environment.secrets[0]: {secret_error.inner_text()}" in by_cli.stderr
    by_cli = cli("job", "create", "endpoint", "x", "--credential", "kaggle", *route)
    assert by_cli.returncode == 2 and f"--credential kaggle: {credential_error.inner_text()}" in by_cli.stderr
    assert page.locator("#secrets[aria-invalid=true], #credentials[aria-invalid=true]").count() == 2
    page.screenshot(path=str(SHOTS / "create-secrets-errors-1366.png"), full_page=True)

    # Without them, the review names the secret and where the AWS credentials are; Create runs the endpoint.
    secrets.get_by_label("GONE_SOON").uncheck()
    credentials.get_by_label("kaggle").uncheck()
    page.get_by_role("button", name="Next").click()
    review = page.locator("#review-environment")
    review.wait_for(state="visible")
    aws = str((user / ".aws" / "credentials").resolve())
    assert "HF_TOKEN (as $HF_TOKEN)" in review.inner_text()
    assert f"aws: AWS_SHARED_CREDENTIALS_FILE={aws}" in review.inner_text()
    assert value not in page.content()
    page.screenshot(path=str(SHOTS / "review-secrets-1366.png"), full_page=True)
    page.get_by_role("button", name="Create", exact=True).click()
    page.wait_for_url(f"{plane.url}/dashboard/jobs/*")
    job_id = page.url.rsplit("/", 1)[1]
    page.locator('#job-head .badge[data-status="running"]').wait_for(timeout=60_000)
    url = plane.api("GET", f"/api/jobs/{job_id}").json()["url"]
    assert requests.post(url + "/getenv", json={"name": "HF_TOKEN"}, timeout=10).json()["value"] == value
    assert requests.post(url + "/getenv", json={"name": "AWS_SHARED_CREDENTIALS_FILE"},
                         timeout=10).json()["value"] == aws

    # The name is on the details page; the value on none of the dashboard's pages.
    assert "HF_TOKEN" in page.content()
    for path in ("/dashboard/", f"/dashboard/jobs/{job_id}", f"/dashboard/jobs/{job_id}/connect",
                 f"/dashboard/jobs/{job_id}/logs", "/dashboard/create", "/dashboard/models"):
        ui.go(path)
        assert value not in page.content(), path
    ui.close()


def test_deploy_a_new_version_then_roll_back_from_the_details_page(browser, control_plane, tmp_path):
    """Revisions on the details page: "Deploy new version" uploads a folder with the serving routes prefilled; the
    list shows one serving and one retired; "Roll back" serves the retired one again; the chart marks each switch
    and the log says which revision printed each line."""
    from concurrent.futures import ThreadPoolExecutor

    from conftest import route, run

    def model(version):
        folder = tmp_path / f"v{version}"
        folder.mkdir()
        (folder / "predict.py").write_text(f"print('loading version {version}', flush=True)\n\n"
                                           f"def predict(text):\n    return {{'version': {version}}}\n")
        return folder

    async def create():
        async with control_plane.client() as client:
            job = await client.jobs.create("versions", model={"source_type": "local", "source_uri": str(model(1))},
                                           endpoint={"routes": [route()]})
            await job.wait_for("running", timeout=120)
            return job.id, job.url

    with ThreadPoolExecutor(1) as pool:  # the SDK's own event loop, beside Playwright's
        job_id, url = pool.submit(run, create()).result()

    def version():
        return requests.post(url + "/predict", json={"text": "x"}, timeout=10).json()["version"]

    ui = Dashboard(browser, control_plane)
    page = ui.page
    ui.go(f"/dashboard/jobs/{job_id}")
    rows = page.locator("#revision-rows tr")
    assert rows.count() == 1 and rows.first.get_attribute("data-status") == "serving"

    page.get_by_role("button", name="Deploy new version").click()
    assert '"path": "/predict"' in page.locator("#deploy-routes").input_value()  # the serving revision's routes
    assert_labelled(page)
    page.set_input_files("#deploy-folder", str(model(2)))
    page.locator("#deploy-upload [data-upload-status]", has_text="v2: 1 file").wait_for()
    page.get_by_role("button", name="Deploy", exact=True).click()
    page.locator("#revision-status", has_text="Revision 2 is serving.").wait_for(timeout=60_000)
    assert version() == 2
    wait_for(lambda: [(r.get_attribute("data-revision"), r.get_attribute("data-status")) for r in rows.all()]
             == [("2", "serving"), ("1", "retired")], "revision 2 serving, 1 retired")
    # The traffic chart marks the switch (in words too, under the chart) at its next poll.
    page.locator("#traffic [data-field='switches']", has_text="revision 2 began serving at").wait_for(timeout=20_000)
    ui.shoot("revisions")

    page.get_by_role("button", name="Roll back to revision 1").click()
    dialog = page.locator("dialog#confirm")
    assert "Serve revision 1 again?" in dialog.inner_text()
    dialog.get_by_role("button", name="Roll back").click()
    page.locator("#revision-status", has_text="Revision 1 is serving.").wait_for(timeout=60_000)
    assert version() == 1
    wait_for(lambda: [(r.get_attribute("data-revision"), r.get_attribute("data-status")) for r in rows.all()]
             == [("2", "retired"), ("1", "serving")], "revision 1 serving again, 2 retired")

    # The log: each output line tagged with the revision that printed it.
    page.get_by_role("navigation", name="Endpoint").get_by_role("link", name="Logs").click()
    page.locator(".log-line[data-revision='2']", has_text="loading version 2").wait_for()
    loads = page.locator(".log-line", has_text="loading version 1")
    wait_for(lambda: loads.count() == 2, "both loads of revision 1")
    assert [line.get_attribute("data-revision") for line in loads.all()] == ["1", "1"]
    assert loads.first.locator(".kind").inner_text().lower() == "r1"
    ui.close()
