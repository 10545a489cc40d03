"""X-Request-Id on every answer of the endpoint runtime: the caller's own when sane, else a new one, also in
error bodies and the access log."""

from __future__ import annotations

import asyncio
import io

import pytest

from .conftest import param, route

pytestmark = pytest.mark.anyio


async def test_every_answer_carries_a_new_request_id_and_error_bodies_repeat_it(endpoint, tmp_path):
    ep = await endpoint("raises", [route("/ok", "ok", [param("text", "str")]),
                                   route("/fail", "fail", [param("text", "str")])])
    answers = [
        await ep.post("/ok", json={"text": "a"}),  # 200
        await ep.post("/ok", json={"text": 3}),  # 422
        await ep.post("/fail", json={"text": "a"}),  # 500
        await ep.get("/nowhere"),  # 404
        await ep.get("/ping"),
    ]
    assert [a.status_code for a in answers] == [200, 422, 500, 404, 200]
    ids = [a.headers["x-request-id"] for a in answers]
    assert len(set(ids)) == len(ids) and all(ids)
    for answer in answers[1:4]:
        assert answer.json()["request_id"] == answer.headers["x-request-id"]
    assert "request_id" not in answers[0].json()


async def test_a_503_when_overloaded_carries_the_callers_id(endpoint, tmp_path):
    ep = await endpoint("blocking", [route("/wait", "wait", [param("gate", "str"), param("started", "str")])],
                        max_concurrency=1, max_queue=0)
    gate, started = tmp_path / "gate", tmp_path / "started"
    first = asyncio.ensure_future(ep.post("/wait", json={"gate": str(gate), "started": str(started)}))
    while not started.exists():
        await asyncio.sleep(0.01)
    refused = await ep.post("/wait", json={"gate": str(gate), "started": ""}, headers={"X-Request-Id": "mine-503"})
    gate.touch()
    assert (await first).status_code == 200
    assert refused.status_code == 503
    assert refused.headers["x-request-id"] == "mine-503" and refused.json()["request_id"] == "mine-503"


@pytest.mark.parametrize("sent, kept", [
    ("order-17/retry 2", True),
    ("a" * 128, True),
    ("a" * 129, False),  # too long
    ("caf\u00e9", False),  # not ASCII
    ("tab\there", False),  # not printable
])
async def test_the_callers_id_is_kept_only_when_sane(endpoint, sent, kept):
    ep = await endpoint("raises", [route("/fail", "fail", [param("text", "str")])])
    answer = await ep.post("/fail", json={"text": "a"}, headers={"X-Request-Id": sent.encode("utf-8")})
    assert answer.status_code == 500
    got = answer.headers["x-request-id"]
    assert (got == sent) is kept
    assert got and len(got) <= 128 and got.isprintable() and got.isascii()
    assert answer.json()["request_id"] == got


async def test_the_access_log_line_names_the_request_id(endpoint):
    ep = await endpoint("raises", [route("/ok", "ok", [param("text", "str")])], access_log=True)
    log = ep.app.access_log
    log.stream = io.StringIO()
    await ep.post("/ok", json={"text": "a"}, headers={"X-Request-Id": "trace-42"})
    answer = await ep.post("/ok", json={"text": "b"})
    log.flush()
    lines = log.stream.getvalue().splitlines()
    assert lines[0].split()[1:4] == ["POST", "/ok", "200"] and lines[0].endswith(" trace-42")
    assert lines[1].endswith(" " + answer.headers["x-request-id"])
