"""The traffic chart's numbers per route and its errors, in process: what the endpoint's JSON totals count per
route (4xx apart from 5xx), and what the control plane's sampler stores and answers from them (a real SQLite store
in a temporary folder)."""

from __future__ import annotations

import pytest

from trainml_cli.contracts import empty_totals
from trainml_cli.server.dashboard.traffic import Traffic, _counters, _minus
from trainml_cli.server.store import Store

from .conftest import param, route

TEXT = [param("text", "str")]


@pytest.mark.anyio
async def test_the_json_totals_count_4xx_answers_per_route(endpoint):
    ep = await endpoint("raises", [route("/ok", "ok", TEXT), route("/boom", "fail", TEXT)])
    for path, body in (("/ok", {"text": "a"}), ("/ok", {"wrong": 1}), ("/boom", {"text": "a"})):
        await ep.post(path, json=body)
    totals = (await ep.get("/metrics", params={"format": "json"})).json()
    assert totals["route_client_errors"] == {"POST /ok": 1}
    assert totals["route_errors"] == {"POST /boom": 1}


def reading(ok: int, bad: int, other: int) -> dict:
    values = empty_totals()
    values.update(requests=ok + bad + other, responses={"200": ok + other, "422": bad},
                  route_requests={"POST /predict": ok + bad, "POST /again": other},
                  route_client_errors={"POST /predict": bad} if bad else {})
    return values


def test_every_span_ends_at_the_latest_reading_with_errors_and_each_route(tmp_path):
    store, traffic = Store(tmp_path / "state.db"), Traffic()
    then, now = 1_000_000.0, 1_000_007.0  # the reading at 7 s falls in the period from 5 s (fine) and 0 s (coarse)
    delta = _minus(_counters(reading(10, 2, 4)), _counters(reading(4, 0, 1)))
    traffic._store(store, [("job", then, now, delta)])
    traffic._last["job"] = (now, 1, _counters(reading(10, 2, 4)))
    asked = now + 30  # the page asks later than the reading: its points still end at the reading
    short, long = (traffic.series(store, ["job"], span, now=asked)["jobs"]["job"] for span in ("5m", "1h"))
    assert short[-1]["t"] == long[-1]["t"] == now
    point = short[-1]
    assert (point["requests"], point["client_errors"], point["error_rps"]) == (11, 2, round(2 / 7, 3))
    assert point["routes"] == {"POST /again": {"requests": 3, "rps": round(3 / 7, 3), "errors": 0},
                               "POST /predict": {"requests": 8, "rps": round(8 / 7, 3), "errors": 2}}
