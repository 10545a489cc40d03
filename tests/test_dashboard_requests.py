"""The Requests tab and the traffic chart's errors series, split by route and tooltips, in Chromium against the real
control plane and endpoint processes, at 1366 and 390 px (check_layout on each)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import requests

import browserkit
from browserkit import NARROW, SKIP_WITHOUT_CHROMIUM, WIDE, Dashboard, assert_labelled, check_layout, wait_for
from test_dashboard_browser import ECHO_ROUTE, create_echo

pytestmark = [SKIP_WITHOUT_CHROMIUM, pytest.mark.e2e]
browser = browserkit.browser  # the module's one Chromium (a fixture)

AGAIN_ROUTE = {**ECHO_ROUTE, "path": "/again"}


def test_the_requests_tab_lists_opens_copies_and_replays_captured_calls(browser, control_plane):
    job = create_echo(control_plane, "captured", capture=1, auth=True)
    key = control_plane.api("GET", f"/api/jobs/{job['id']}/connect").json()["key"]
    assert key
    keyed = {"Authorization": f"Bearer {key}"}
    answers = [requests.post(job["url"] + "/predict", json={"text": f"call {i}"}, headers=keyed, timeout=30)
               for i in range(3)]
    answers.append(requests.post(job["url"] + "/predict", json={"wrong": 1}, headers=keyed, timeout=30))
    assert [a.status_code for a in answers] == [200, 200, 200, 422]
    ids = [a.headers["x-request-id"] for a in answers]

    ui = Dashboard(browser, control_plane)
    page = ui.page
    ui.go(f"/dashboard/jobs/{job['id']}")
    page.get_by_role("navigation", name="Endpoint").get_by_role("link", name="Requests").click()
    rows = page.locator("#request-rows tr")
    wait_for(lambda: rows.count() == 4, "the four captured calls", timeout=20)  # the page re-reads every 3 s
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.requestId)") == ids[::-1]  # newest first
    statuses = page.locator("#request-rows .code-badge").all_inner_texts()
    assert statuses == ["422", "200", "200", "200"]
    assert page.locator("#request-rows td[data-label='Route']").all_inner_texts() == ["POST /predict"] * 4
    assert all(t.endswith(" ms") for t in page.locator("#request-rows td[data-label='Latency']").all_inner_texts())
    assert page.locator("#capture-off").is_hidden()
    assert_labelled(page)

    # Filters: 4xx only, then back to all.
    page.get_by_label("Status").select_option("4xx")
    wait_for(lambda: rows.count() == 1, "the 4xx filter")
    assert rows.first.get_attribute("data-request-id") == ids[3]
    page.get_by_label("Status").select_option("")
    wait_for(lambda: rows.count() == 4, "the filter cleared")

    # One call: its request and answer, pretty-printed.
    page.locator(f'#request-rows tr[data-request-id="{ids[1]}"] button').click()
    detail = page.locator("#request-detail")
    detail.wait_for()
    assert ids[1] in detail.locator("h2").inner_text()
    assert page.locator("#detail-request").inner_text() == '{\n  "text": "call 1"\n}'
    assert page.locator("#detail-response").inner_text() == '{\n  "echo": "call 1"\n}'

    # Copy as curl: the key is a shell variable, never the key itself; run as shown (with the variable set), it
    # makes the same call.
    page.get_by_role("button", name="Copy as curl").click()
    page.get_by_text("Command copied").wait_for()
    command = page.locator("#curl-line").inner_text()
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert copied == command and key not in command and "$ENDPOINT_KEY" in command
    assert page.locator("#curl-hint").is_visible()
    ran = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30,
                         env={"PATH": os.environ["PATH"], "ENDPOINT_KEY": key})
    assert json.loads(ran.stdout) == {"echo": "call 1"}, ran
    assert key not in page.content()

    # Replay: both answers, and that they are the same.
    page.get_by_role("button", name="Replay").click()
    page.locator("#replay-verdict", has_text="The answers are the same.").wait_for(timeout=30_000)
    assert page.locator("#replay-old-heading").inner_text() == "Old answer (200)"
    assert page.locator("#replay-new-heading").inner_text() == "New answer (200)"
    assert page.locator("#replay-old").inner_text() == page.locator("#replay-new").inner_text() == \
        '{\n  "echo": "call 1"\n}'
    check_layout(page, "requests-detail")
    page.set_viewport_size(NARROW)
    check_layout(page, "requests-detail")
    page.set_viewport_size(WIDE)
    ui.shoot("requests")
    ui.close()


def test_the_chart_shows_errors_a_route_split_and_tooltips_and_every_span_agrees_on_now(browser, control_plane):
    job = create_echo(control_plane, "routed", routes=(ECHO_ROUTE, AGAIN_ROUTE))
    with requests.Session() as calls:
        for _ in range(6):
            calls.post(job["url"] + "/predict", json={"text": "a"}, timeout=10)
            calls.post(job["url"] + "/again", json={"text": "b"}, timeout=10)
        assert calls.post(job["url"] + "/predict", json={"wrong": 1}, timeout=10).status_code == 422

    def traffic(span):
        return control_plane.api("GET", "/api/dashboard/traffic", params={"job": job["id"], "span": span}).json()

    def sampled():
        points = traffic("5m")["jobs"][0]["points"]
        routes = {label for p in points for label in p.get("routes", {})}
        return routes >= {"POST /predict", "POST /again"} and any(p.get("error_rps") for p in points)
    wait_for(sampled, "a sample with both routes and the 422", timeout=30)  # the sampler reads every 5 s

    ui = Dashboard(browser, control_plane)
    page = ui.page
    ui.go(f"/dashboard/jobs/{job['id']}")
    legend = page.locator("#traffic .chart-legend")
    legend.locator('[data-series="errors/s"]').wait_for()
    assert legend.locator(".legend-item").all_inner_texts() == ["requests/s", "errors/s", "p50 ms", "p99 ms"]
    page.get_by_role("button", name="By route").click()
    assert legend.locator(".legend-item").all_inner_texts() == [
        "POST /again requests/s", "POST /predict requests/s", "errors/s", "p50 ms", "p99 ms"]

    # A tooltip at the pointer, with every series' value at the nearest point.
    canvas = page.locator("#traffic canvas")
    for viewport in (WIDE, NARROW):
        page.set_viewport_size(viewport)
        box = canvas.bounding_box()
        page.mouse.move(box["x"] + box["width"] - 62, box["y"] + box["height"] / 2)
        tip = page.locator("#traffic .chart-tip")
        tip.wait_for()
        text = tip.inner_text()
        assert "POST /predict requests/s: " in text and "errors/s: " in text and "p99 ms: " in text, text
        check_layout(page, "details-chart-tip")
        page.mouse.move(0, 0)
        tip.wait_for(state="hidden")
    page.set_viewport_size(WIDE)

    # 5 min and 1 h agree on now: their points end at the same latest reading, and their summaries say the same.
    wait_for(lambda: (traffic("5m")["jobs"][0]["latest"] or {}).get("requests") == 0, "a reading without calls",
             timeout=30)
    for _ in range(3):  # a reading may land between the two questions: ask again
        short, long = traffic("5m")["jobs"][0], traffic("1h")["jobs"][0]
        if short["latest"] == long["latest"]:
            break
    assert short["points"][-1]["t"] == long["points"][-1]["t"] == short["latest"]["t"]
    now = page.locator('#traffic [data-field="now"]')
    now.filter(has_text="in the last 5 minutes").filter(has_text="now 0 requests/s").wait_for(timeout=15_000)
    page.locator('#span button[data-span="1h"]').click()
    now.filter(has_text="in the last hour").wait_for()
    assert "now 0 requests/s" in now.inner_text()
    assert "1 4xx" in now.inner_text()
    ui.shoot("details-chart")

    # Without --capture, the Requests tab says capture is off and how to turn it on.
    ui.go(f"/dashboard/jobs/{job['id']}/requests")
    off = page.locator("#capture-off")
    off.wait_for()
    assert "trainml job update routed --capture 1" in off.inner_text()
    page.get_by_text("No calls captured: capture is off for this endpoint.").wait_for()
    ui.shoot("requests-off")
    ui.close()
