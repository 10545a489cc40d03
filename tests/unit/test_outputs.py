"""What a function answers with besides JSON (runtime/output.py, replies.py): a returned Path is the file, sent from
disk with the type its suffix implies; bytes go out as the route's content_type; /openapi.json says which."""

from __future__ import annotations

import pytest

from .conftest import error_of, param, route

pytestmark = pytest.mark.anyio


def pattern(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


@pytest.fixture
async def outputs(endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("OUTPUTS_DIR", str(tmp_path))
    return await endpoint("outputs", [
        route("/file", "file", [param("name", "str"), param("size", "int")]),
        route("/png", "png", content_type="image/png"),
        route("/bytes", "png"),
        route("/missing", "missing"),
    ])


@pytest.mark.parametrize("name, size, content_type", [
    ("small.png", 1000, "image/png"),
    # more than one chunk (256 KiB), so the rest is read from disk as the answer goes out
    ("large.json", 700_000, "application/json"),
    ("empty.txt", 0, "text/plain"),
    ("data.unknownsuffix", 10, "application/octet-stream"),
])
async def test_a_returned_path_is_sent_as_the_file_with_the_type_its_suffix_implies(outputs, name, size,
                                                                                    content_type):
    response = await outputs.post("/file", json={"name": name, "size": size})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == content_type
    assert response.headers["content-length"] == str(size)
    assert response.content == pattern(size)
    assert response.headers["x-request-id"]


async def test_bytes_go_out_as_the_routes_content_type_and_as_octet_stream_without_one(outputs):
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # as the fixture model's PNG
    named = await outputs.post("/png")
    assert named.status_code == 200
    assert named.headers["content-type"] == "image/png"
    assert named.content == png
    plain = await outputs.post("/bytes")
    assert plain.headers["content-type"] == "application/octet-stream"
    assert plain.content == png


async def test_a_returned_path_that_does_not_exist_is_the_usual_model_error(outputs):
    response = await outputs.post("/missing")
    assert response.status_code == 500
    body = error_of(response)
    assert body["error"] == "model_error"
    assert body["type"] == "FileNotFoundError"
    assert "no-such-file.png" in body["message"]
    assert (await outputs.post("/png")).status_code == 200  # the slot was given back


async def test_openapi_shows_a_routes_content_type(outputs):
    document = (await outputs.get("/openapi.json")).json()
    png = document["paths"]["/png"]["post"]["responses"]["200"]
    assert png["content"] == {"image/png": {"schema": {"type": "string", "format": "binary"}}}
    plain = document["paths"]["/bytes"]["post"]["responses"]["200"]
    assert "image/png" not in plain.get("content", {})


async def test_a_large_file_goes_out_in_chunks_not_in_one_piece(outputs):
    """Straight to the ASGI app, to see each message: the file is read from disk as it is sent."""
    import json

    from trainml_cli.runtime.replies import CHUNK

    scope = {"type": "http", "method": "POST", "path": "/file", "root_path": "", "query_string": b"",
             "headers": [(b"content-type", b"application/json")], "http_version": "1.1", "scheme": "http"}
    body = json.dumps({"name": "big.bin", "size": 3 * CHUNK + 5}).encode()
    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    await outputs.app(scope, receive, send)
    chunks = [m["body"] for m in sent if m["type"] == "http.response.body"]
    assert len(chunks) == 4 and max(map(len, chunks)) == CHUNK
    assert b"".join(chunks) == pattern(3 * CHUNK + 5)
