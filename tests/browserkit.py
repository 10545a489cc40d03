"""What the Chromium tests share (test_dashboard_browser.py, test_dashboard_pages.py, test_dashboard_requests.py): the
browser, one signed-in context on a control plane (Dashboard), the layout check run on every screenshot, and
small waits. Debian's Chromium is driven by Playwright; never `playwright install`: the browser is the system's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[1] / "test-output" / "dashboard"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
WIDE, NARROW = {"width": 1366, "height": 900}, {"width": 390, "height": 844}

sync_api = pytest.importorskip("playwright.sync_api")
# Each Chromium test module sets `pytestmark = SKIP_WITHOUT_CHROMIUM`.
SKIP_WITHOUT_CHROMIUM = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                           reason="Chromium is not installed at /usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


class Dashboard:
    """One signed-in browser context on one control plane, with the page's script errors collected."""

    def __init__(self, browser, plane):
        self.plane = plane
        self.context = browser.new_context(viewport=WIDE, permissions=["clipboard-read", "clipboard-write"])
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        # A 422 is the form answering with field errors; anything else failing to load is a bug.
        self.page.on("response",
                     lambda r: r.status >= 400 and r.status != 422 and self.errors.append(f"{r.status} {r.url}"))
        self.page.on("console",
                     lambda m: m.type == "error" and "status of" not in m.text and self.errors.append(m.text))
        self.page.goto(login_link(plane))
        self.page.wait_for_url(f"{plane.url}/dashboard/")

    def go(self, path: str):
        self.page.goto(self.plane.url + path)

    def shoot(self, name: str, path: str | None = None) -> None:
        """The page as it is, at 1366 px; then the same URL at 390 px in a second tab of the same session. Both are
        checked for layout faults first."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        check_layout(self.page, name)
        self.page.screenshot(path=str(SHOTS / f"{name}-1366.png"), full_page=True)
        narrow = self.context.new_page()
        narrow.set_viewport_size(NARROW)
        narrow.goto(self.plane.url + path if path else self.page.url)
        narrow.wait_for_timeout(600)  # live pages never go network-idle (their event streams stay open)
        check_layout(narrow, name)
        narrow.screenshot(path=str(SHOTS / f"{name}-390.png"), full_page=True)
        narrow.close()

    def close(self):
        self.context.close()
        assert not self.errors, self.errors


def check_layout(page, name: str) -> None:
    """What a person would see as broken: the page scrolling sideways, a phone card's label squeezed narrower than
    its word ("Na / m / e"), a URL broken inside host:port, a button's text wrapped, a table row's actions on two
    lines."""
    width = page.viewport_size["width"]
    faults = page.evaluate("""() => {
        const visible = (n) => n.offsetParent !== null;
        const faults = [];
        const scroll = document.documentElement.scrollWidth;
        if (scroll > window.innerWidth) faults.push(`scrolls sideways: ${scroll} px wide`);
        const ruler = document.createElement("span");
        ruler.style.cssText = "position:absolute;visibility:hidden;white-space:nowrap";
        document.body.appendChild(ruler);
        for (const cell of document.querySelectorAll("td[data-label]")) {
            if (!visible(cell)) continue;
            const before = getComputedStyle(cell, "::before");
            if (before.content === "none" || before.display === "none") continue;
            ruler.style.font = before.font;
            ruler.textContent = cell.dataset.label;
            const shown = parseFloat(before.width);
            if (shown + 0.5 < ruler.getBoundingClientRect().width)
                faults.push(`label ${cell.dataset.label} squeezed to ${shown} px`);
        }
        ruler.remove();
        for (const url of document.querySelectorAll(".url")) {
            if (visible(url) && url.getClientRects().length === 1
                    && url.getBoundingClientRect().height > 1.6 * parseFloat(getComputedStyle(url).lineHeight || 20))
                faults.push(`URL ${url.textContent} broken over lines`);
        }
        for (const button of document.querySelectorAll("button, .button")) {
            if (visible(button) && button.scrollWidth > button.clientWidth + 1)
                faults.push(`button ${button.textContent.trim()} cut`);
        }
        if (window.innerWidth > 720) {
            for (const group of document.querySelectorAll("td .action-group")) {
                const tops = new Set([...group.children].filter(visible).map((c) => c.getBoundingClientRect().top));
                if (tops.size > 1) faults.push("a row's actions take two lines");
            }
        }
        return faults;
    }""")
    assert faults == [], f"{name} at {width} px: {faults}"


def wait_for(predicate, what: str, timeout: float = 10.0) -> None:
    """Poll from Python: the pages' CSP forbids the string evaluation page.wait_for_function relies on."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def assert_labelled(page) -> None:
    """Every visible control has a name a screen reader can say: a <label>, aria-label, or its own text."""
    unnamed = page.locator("input, select, textarea, button").evaluate_all("""controls => controls
        .filter(c => c.offsetParent !== null && c.type !== "hidden")
        .filter(c => !(c.labels && c.labels.length) && !c.getAttribute("aria-label") && !c.textContent.trim())
        .map(c => c.outerHTML)""")
    assert unnamed == [], unnamed


def login_link(plane) -> str:
    env = {**os.environ, "TRAINML_API_URL": plane.url, "TRAINML_API_TOKEN": plane.token,
           "TRAINML_HOME": str(plane.home)}
    result = subprocess.run([sys.executable, "-m", "trainml_cli", "server", "dashboard", "--format", "json"],
                            env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["url"]
