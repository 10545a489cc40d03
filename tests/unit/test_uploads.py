"""File params in process: multipart bodies streamed to disk, base64 and data: URLs in JSON, the 422 of a missing
part, the 413 of a large upload, what OpenAPI and curl examples say about them."""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import time
from pathlib import Path

import pytest

from trainml_cli.errors import RouteSpecError
from trainml_cli.routecalls import curl_command
from trainml_cli.routespec import parse_routes

from .conftest import error_of, param, route

pytestmark = pytest.mark.anyio

DESCRIBE = [param("image", "file"), param("threshold", "float", optional=True, default_value="0.5"),
            param("tags", "list", optional=True), param("flag", "bool", optional=True, default_value="False"),
            param("count", "int", optional=True, default_value="1"), param("meta", "dict", optional=True),
            param("note", "str", optional=True)]


@pytest.fixture
def temp(tmp_path, monkeypatch):
    """Uploads go to a folder of this test's own, where a test can look for what is left."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


@pytest.fixture
async def uploads(endpoint, temp):
    return await endpoint("uploads", [
        route("/describe", "describe", DESCRIBE),
        route("/two", "two", [param("first", "file"), param("second", "file", optional=True)], positional=True),
        route("/batch", "batch", [param("image", "file")], batch={"max_size": 4, "max_wait_ms": 0}),
    ], max_body_size=1_000_000)


def left_over(temp: Path) -> list[str]:
    """The upload folders still there once removal is done (it runs on a thread: waited for, up to 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        found = [str(p) for p in temp.glob("trainml-upload-*")]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.01)


async def test_a_multipart_file_reaches_the_function_as_a_path_with_its_fields_typed(uploads, temp):
    data = os.urandom(300_000)
    fields = {"threshold": "0.25", "tags": '["a", 2]', "flag": "true", "count": "7", "meta": '{"k": [1]}',
              "note": "hello"}
    answer = await uploads.post("/describe", data=fields, files={"image": ("cat photo.jpg", data, "image/jpeg")})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["size"] == 300_000 and body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["is_path"] and body["name"] == "cat photo.jpg" and body["suffix"] == ".jpg"
    assert body["content_type"] == "image/jpeg"
    assert body["other"] == {"threshold": 0.25, "tags": ["a", 2], "flag": True, "count": 7, "meta": {"k": [1]},
                             "note": "hello"}
    assert body["types"] == ["float", "bool", "int"]
    assert left_over(temp) == [] and not Path(body["path"]).exists()  # removed once the answer has gone


async def test_a_file_is_written_to_disk_while_the_body_is_still_arriving(uploads, temp):
    boundary = "b0undary"
    chunk = os.urandom(64 * 1024)
    seen = []

    async def body():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.bin\"\r\n"
               "Content-Type: application/octet-stream\r\n\r\n").encode()
        for _ in range(10):
            yield chunk
        seen.extend(path.stat().st_size for path in temp.glob("trainml-upload-*/big.bin"))
        yield f"\r\n--{boundary}--\r\n".encode()

    answer = await uploads.post("/describe", content=body(),
                                headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["size"] == 10 * len(chunk)
    assert seen and seen[0] >= 9 * len(chunk)  # on disk before the body ended, not held in memory


@pytest.mark.parametrize("value, content_type, suffix", [
    (base64.b64encode(b"\x89PNG fake").decode(), "application/octet-stream", ""),
    ("data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode(), "image/png", ".png"),
], ids=["base64", "data-url"])
async def test_a_json_body_sends_a_file_as_base64_or_a_data_url(uploads, temp, value, content_type, suffix):
    answer = await uploads.post("/describe", json={"image": value, "count": 3})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["size"] == len(b"\x89PNG fake") and body["sha256"] == hashlib.sha256(b"\x89PNG fake").hexdigest()
    assert (body["content_type"], body["suffix"], body["other"]["count"]) == (content_type, suffix, 3)
    assert left_over(temp) == []


async def test_bad_base64_is_422_naming_the_param(uploads):
    body = error_of(await uploads.post("/describe", json={"image": "not base64!"}))
    assert body["detail"] == [{"loc": ["body", "image"], "type": "file_invalid",
                               "msg": "must be base64 text or a data: URL (data:image/png;base64,...)"}]


async def test_a_missing_file_part_is_422_naming_the_param(uploads, temp):
    answer = await uploads.post("/describe", data={"count": "2"}, files={"other": ("x.txt", b"x", "text/plain")})
    body = error_of(answer)
    assert answer.status_code == 422 and body["error"] == "invalid_request"
    assert ["body", "image"] in [e["loc"] for e in body["detail"]]
    assert "body.image: Field required" in body["message"]
    assert left_over(temp) == []


async def test_a_bad_form_field_is_422_naming_it(uploads, temp):
    answer = await uploads.post("/describe", data={"count": "many"}, files={"image": ("a.bin", b"1")})
    body = error_of(answer)
    assert [e["loc"] for e in body["detail"]] == [["body", "count"]]
    assert left_over(temp) == []  # the file written before the field was checked is gone too


async def test_an_upload_over_the_body_limit_is_413_and_leaves_nothing(uploads, temp):
    boundary = "xyz"

    async def body():  # chunked, no Content-Length: the limit is counted as the bytes arrive
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.bin\"\r\n\r\n"
               ).encode()
        for _ in range(20):
            yield os.urandom(64 * 1024)

    answer = await uploads.post("/describe", content=body(),
                                headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert answer.status_code == 413
    assert error_of(answer)["error"] == "body_too_large"
    assert left_over(temp) == []
    sized = await uploads.post("/describe", files={"image": ("big.bin", os.urandom(1_100_000))})
    assert sized.status_code == 413  # refused from its Content-Length


async def test_positional_routes_and_optional_files(uploads):
    one = await uploads.post("/two", files={"first": ("a.txt", b"A")})
    both = await uploads.post("/two", files={"first": ("a.txt", b"A"), "second": ("b.txt", b"B")})
    assert one.json() == {"first": "A", "second": None} and both.json() == {"first": "A", "second": "B"}


async def test_a_batched_route_gets_a_list_of_paths(uploads, temp):
    answer = await uploads.post("/batch", files={"image": ("a.bin", b"12345")})
    assert answer.status_code == 200 and answer.json() == 5
    assert left_over(temp) == []


async def test_a_form_posted_from_another_sites_page_is_refused(uploads):
    answer = await uploads.post("/describe", files={"image": ("a.bin", b"1")}, headers={"origin": "https://evil.example"})
    assert answer.status_code == 415
    assert "another site" in error_of(answer)["message"]
    same = await uploads.post("/describe", files={"image": ("a.bin", b"1")}, headers={"origin": "http://endpoint"})
    assert same.status_code == 200


async def test_a_route_without_file_params_still_takes_only_json(uploads, endpoint):
    echo = await endpoint("types", [route("/one", "echo", [param("text", "str")])])
    answer = await echo.post("/one", data={"text": "a"}, files={"x": ("a", b"1")})
    assert answer.status_code == 415


async def test_openapi_describes_the_multipart_body(uploads):
    document = (await uploads.get("/openapi.json")).json()
    content = document["paths"]["/describe"]["post"]["requestBody"]["content"]
    form = content["multipart/form-data"]["schema"]
    assert form["properties"]["image"] == {"type": "string", "format": "binary"}
    assert form["required"] == ["image"]
    assert form["properties"]["count"]["type"] == "integer"
    assert form["properties"]["tags"]["contentMediaType"] == "application/json"
    assert "application/json" in content
    docs = (await uploads.get("/docs")).text
    assert 'enctype="multipart/form-data"' in docs and 'type="file" name="image"' in docs


def test_curl_examples_send_files_with_dash_f():
    [described] = parse_routes([route("/describe", "describe", DESCRIBE[:3])])
    command = curl_command("http://h:1", described)
    assert command == ("curl -X POST http://h:1/describe -F image=@image.bin -F threshold=0.5 -F 'tags=[]'")


def test_a_file_param_on_a_get_route_is_a_route_error():
    with pytest.raises(RouteSpecError) as caught:
        parse_routes([route("/x", "f", [param("image", "file")], verb="GET")])
    assert str(caught.value) == ("route 1 (GET /x): body[0].type: a file param needs a body: use POST, PUT or PATCH, "
                                 "not GET")

