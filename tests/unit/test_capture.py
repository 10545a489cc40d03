"""Request capture in process: what the endpoint keeps of a sampled call (runtime/capture.py), and what it never
keeps; the byte cap, the size bound over segments, sampling off."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from .conftest import param, route

pytestmark = pytest.mark.anyio

ECHO = [route("/predict", "predict", [param("text", "str")])]
SECRET = "s3cr3t-value-of-the-job"


def entries(folder: Path) -> list[dict]:
    lines = []
    for segment in sorted(folder.glob("*.jsonl")):
        lines += [json.loads(line) for line in segment.read_text().splitlines()]
    return lines


async def stopped(client) -> None:
    """The writer has written everything queued (what the endpoint does when it stops)."""
    client.app.capture.stop()


async def test_each_call_is_kept_with_its_id_bodies_and_status_and_never_a_header(endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_SECRET", SECRET)
    folder = tmp_path / "requests"
    client = await endpoint("echo", ECHO, capture=1.0, capture_dir=str(folder), secret_env=["MY_SECRET"])
    answers = [await client.post("/predict", json={"text": f"hello {i}"},
                                 headers={"Authorization": "Bearer header-value-never-kept"}) for i in range(3)]
    answers.append(await client.post("/predict", json={"nope": 1}))
    answers.append(await client.post("/predict", json={"text": f"my secret is {SECRET}"}))
    await stopped(client)
    kept = entries(folder)
    assert [e["id"] for e in kept] == [a.headers["x-request-id"] for a in answers]
    assert [e["status"] for e in kept] == [200, 200, 200, 422, 200]
    assert kept[0]["route"] == "POST /predict" and kept[0]["request"] == {"text": "hello 0"}
    assert kept[0]["response"] == {"echo": "hello 0"} and kept[0]["error"] is None
    assert kept[0]["client"] and kept[0]["latency_ms"] > 0 and kept[0]["queue_ms"] >= 0
    assert kept[3]["error"]["kind"] == "invalid_request"
    assert kept[4]["request"] == {"text": "my secret is REDACTED"}
    text = "".join(p.read_text() for p in folder.iterdir())
    assert "header-value-never-kept" not in text and SECRET not in text and "authorization" not in text.lower()
    for segment in folder.iterdir():
        assert stat.S_IMODE(segment.stat().st_mode) == 0o600


async def test_without_capture_nothing_is_kept(endpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    client = await endpoint("echo", ECHO)
    assert (await client.post("/predict", json={"text": "x"})).status_code == 200
    assert client.app.capture is None and list(tmp_path.iterdir()) == []


async def test_a_rate_keeps_about_that_share(endpoint, tmp_path):
    folder = tmp_path / "requests"
    client = await endpoint("echo", ECHO, capture=0.25, capture_dir=str(folder))
    for i in range(200):
        await client.post("/predict", json={"text": str(i)})
    await stopped(client)
    assert 15 <= len(entries(folder)) <= 90  # 50 expected; the bounds are many deviations wide


async def test_a_body_longer_than_the_cap_is_cut_with_a_marker(endpoint, tmp_path):
    folder = tmp_path / "requests"
    client = await endpoint("echo", ECHO, capture=1.0, capture_dir=str(folder), capture_max_bytes=100)
    long = "x" * 1000
    assert (await client.post("/predict", json={"text": long})).status_code == 200
    await stopped(client)
    (kept,) = entries(folder)
    assert kept["request"].startswith('{"text":"xxx') and kept["request"].endswith("[cut at 100 of 1011 bytes]")
    assert len(kept["request"]) < 200 and kept["response"].endswith("[cut at 100 of 1011 bytes]")


async def test_the_size_bound_drops_the_oldest_segments(endpoint, tmp_path):
    folder = tmp_path / "requests"
    client = await endpoint("echo", ECHO, capture=1.0, capture_dir=str(folder), capture_size=20_000)
    for i in range(300):
        await client.post("/predict", json={"text": f"call {i} " + "y" * 100})
    await stopped(client)
    total = sum(p.stat().st_size for p in folder.iterdir())
    kept = entries(folder)
    assert total <= 20_000 + 2_000  # the bound, give or take the segment being written
    assert kept and kept[-1]["request"]["text"].startswith("call 299") and len(kept) < 300
    assert len(list(folder.iterdir())) > 1


async def test_a_stream_keeps_its_items_up_to_the_cap_and_their_count(endpoint, tmp_path):
    folder = tmp_path / "requests"
    client = await endpoint("stream_tokens", [route("/tokens", "tokens", [param("n", "int"), param("gate", "str")])],
                            capture=1.0, capture_dir=str(folder), capture_max_bytes=120)
    gate = tmp_path / "gate"
    gate.write_text("")
    answer = await client.post("/tokens", json={"n": 6, "gate": str(gate)})
    assert answer.status_code == 200 and len(answer.text.splitlines()) == 6
    await stopped(client)
    (kept,) = entries(folder)
    assert kept["response"]["count"] == 6
    assert kept["response"]["items"][:2] == ["first", {"i": 1, "text": "line 1\nwith a newline"}]
    assert len(kept["response"]["items"]) < 6 and "cut" in kept["response"]


async def test_a_multipart_call_keeps_fields_and_each_files_name_size_and_hash_never_its_bytes(endpoint, tmp_path):
    folder = tmp_path / "requests"
    client = await endpoint("uploads", [route("/describe", "describe", [
        param("image", "file"), param("threshold", "float", optional=True, default_value="0.5")])],
        capture=1.0, capture_dir=str(folder))
    data = b"PNG-BYTES-" + os.urandom(2000).hex().encode()
    answer = await client.post("/describe", files={"image": ("cat.png", data, "image/png")},
                               data={"threshold": "0.75"})
    assert answer.status_code == 200
    await stopped(client)
    (kept,) = entries(folder)
    assert kept["request"] == {"fields": {"threshold": 0.75}, "files": {"image": {
        "name": "cat.png", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}}}
    text = "".join(p.read_text() for p in folder.iterdir())
    assert "PNG-BYTES" not in text and base64.b64encode(data[:30]).decode()[:20] not in text


async def test_a_batched_call_says_the_size_of_its_batch(endpoint, tmp_path):
    folder = tmp_path / "requests"
    client = await endpoint("batched", [route("/echo", "echo", [param("request_id", "int"), param("text", "str")],
                                              batch={"max_size": 8, "max_wait_ms": 0})],
                            capture=1.0, capture_dir=str(folder))
    assert (await client.post("/echo", json={"request_id": 1, "text": "a"})).status_code == 200
    await stopped(client)
    (kept,) = entries(folder)
    assert kept["batch_size"] == 1 and kept["response"]["text"] == "a"


QUOTED = 'pa"ss\u00e9-word'  # a secret JSON must escape, with a character past ASCII


async def test_a_secret_sent_escaped_is_redacted_and_no_kept_string_holds_it(endpoint, tmp_path, monkeypatch):
    """A body is written as it came only when it has no backslash: any escape (a quote, \\u00e9, or \\u0073 for a
    plain letter) and it is written anew, in the forms the redaction looks for."""
    monkeypatch.setenv("MY_SECRET", SECRET)
    monkeypatch.setenv("OTHER_SECRET", QUOTED)
    folder = tmp_path / "requests"
    client = await endpoint("echo", ECHO, capture=1.0, capture_dir=str(folder),
                            secret_env=["MY_SECRET", "OTHER_SECRET"])
    escaped_plain = "".join(f"\\u{ord(c):04x}" for c in SECRET[:3]) + SECRET[3:]
    bodies = [
        b'{"text": "plain ' + SECRET.encode() + b'"}',  # as it came: found as it is
        b'{"text": "escaped ' + escaped_plain.encode() + b'"}',
        b'{"text": "quoted ' + json.dumps(QUOTED).encode()[1:-1] + b'"}',  # pa\"ss\u00e9-word
        b'{"text": "raw ' + json.dumps(QUOTED, ensure_ascii=False).encode()[1:-1] + b'"}',  # pa\"ssé-word
        b'{"text": "inside ' + SECRET.encode() + b'", "junk": [1, 2',  # not JSON: kept as its text
    ]
    for body in bodies:
        await client.post("/predict", content=body, headers={"Content-Type": "application/json"})
    await stopped(client)
    kept = entries(folder)
    assert [e["status"] for e in kept] == [200, 200, 200, 200, 422]
    assert [e["request"]["text"] for e in kept[:4]] == [
        "plain REDACTED", "escaped REDACTED", "quoted REDACTED", "raw REDACTED"]
    assert [e["response"]["echo"] for e in kept[:4]] == [e["request"]["text"] for e in kept[:4]]
    assert isinstance(kept[4]["request"], str) and "inside REDACTED" in kept[4]["request"]
    decoded = json.dumps(kept, ensure_ascii=False)  # every string as a reader of the entries sees it
    assert SECRET not in decoded and QUOTED not in decoded
    text = "".join(p.read_text() for p in folder.iterdir())
    assert SECRET not in text and escaped_plain not in text and "ss\u00e9-word" not in text


async def test_bodies_are_kept_as_json_on_one_line_whatever_they_hold(endpoint, tmp_path):
    """Pretty-printed JSON stays JSON; a line break str.splitlines honours inside a string (U+2028, NEL) cannot
    split the entry (a reader would lose it, or read what follows the break as an entry of its own); a body that
    is not JSON (or not UTF-8) is kept as its text and cannot add fields to its entry."""
    folder = tmp_path / "requests"
    client = await endpoint("echo", ECHO, capture=1.0, capture_dir=str(folder))
    forged = '{"id": "forged", "status": 200}'
    bodies = [
        b'{\n  "text": "pretty"\r\n}\n',
        json.dumps({"text": f"a\u2028{forged}\x85b\u2029c"}, ensure_ascii=False).encode(),
        b'{"text": "x"}, "id": "forged", "client": "forged"',
        b'{"text": "\xff\xfe"}',
    ]
    answers = [await client.post("/predict", content=body, headers={"Content-Type": "application/json"})
               for body in bodies]
    await stopped(client)
    kept = entries(folder)
    assert [e["id"] for e in kept] == [a.headers["x-request-id"] for a in answers]
    assert kept[0]["request"] == {"text": "pretty"} and kept[0]["response"] == {"echo": "pretty"}
    assert kept[1]["request"] == {"text": f"a\u2028{forged}\x85b\u2029c"}
    assert kept[2]["status"] == 422 and kept[2]["request"] == bodies[2].decode()
    assert all(e["client"] != "forged" for e in kept)
    assert kept[3]["request"] == bodies[3].decode("utf-8", "replace")
