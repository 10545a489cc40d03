"""The endpoint runtime against hostile and sloppy clients: what an attacker on the network would try.

Real runtime processes on loopback; each test says the status a client gets and the bound that holds (answer
size, /ping latency, connection lifetime).
"""

from __future__ import annotations

import json
import os
import resource
import socket
import threading
import time
from contextlib import contextmanager

import pytest
import requests

from endpoint_process import param, route, start

ECHO = [param("text", "str"), param("f", "float", optional=True, default_value="0.5"),
        param("d", "dict", optional=True), param("l", "list", optional=True, default_value="[1]")]


@pytest.fixture
def serve(tmp_path):
    started = []

    def _serve(routes, *args):
        endpoint = start("types", routes, *args, tmp_path=tmp_path)
        started.append(endpoint)
        return endpoint.wait_ready()

    yield _serve
    for endpoint in started:
        endpoint.stop()


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    """One endpoint for the tests that only send it requests, hostile or not, and need nothing else of it: /echo,
    /q (GET) and /opt. An endpoint's start costs about a second; one per request was most of this module."""
    endpoint = start("types", [route("/echo", "echo", ECHO), route("/q", "echo", ECHO[1:], verb="GET"),
                               route("/opt", "echo", [param("f", "float", optional=True, default_value="0.5")])],
                     tmp_path=tmp_path_factory.mktemp("echo"))
    try:
        yield endpoint.wait_ready()
    finally:
        endpoint.stop()


def raw_post(ep, path, body: bytes, content_type: str | None, **kwargs):
    headers = {"content-type": content_type} if content_type is not None else {}
    return ep.session.post(ep.url + path, data=body, headers=headers, timeout=kwargs.pop("timeout", 30), **kwargs)


@pytest.mark.parametrize("content_type",
                         ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None])
def test_a_body_that_does_not_say_json_is_415_naming_the_expected_type(echo, content_type):
    answer = raw_post(echo, "/echo", b'{"text": "x"}', content_type)
    assert answer.status_code == 415
    assert answer.json()["error"] == "unsupported_media_type"
    assert "application/json" in answer.json()["message"]


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON",
                                          "application/vnd.example+json"])
def test_json_content_types_are_accepted(echo, content_type):
    answer = raw_post(echo, "/echo", b'{"text": "x"}', content_type)
    assert answer.status_code == 200 and answer.json()["text"] == ["x", "str"]


def test_an_empty_body_needs_no_content_type(echo):
    assert raw_post(echo, "/opt", b"", None).json() == {"f": [0.5, "float"]}


@pytest.mark.parametrize("body, loc", [
    (b'{"text": "x", "f": NaN}', ["body", "f"]),
    (b'{"text": "x", "f": Infinity}', ["body", "f"]),
    (b'{"text": "x", "f": -Infinity}', ["body", "f"]),
    (b'{"text": "x", "f": 1e999}', ["body", "f"]),
    (b'{"text": "x", "d": {"a": [1, NaN]}}', ["body", "d", "a", 1]),
    (b'{"text": "x", "l": [1e999]}', ["body", "l", 0]),
])
def test_non_finite_numbers_are_422_naming_where(echo, body, loc):
    answer = raw_post(echo, "/echo", body, "application/json")
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == loc
    assert "finite" in answer.json()["message"]


@pytest.mark.parametrize("query", ["f=nan", "f=inf", "f=-Infinity", "f=1e999", 'l=[NaN]'])
def test_non_finite_numbers_in_a_query_are_422(echo, query):
    answer = echo.get("/q?" + query)
    assert answer.status_code == 422, answer.text


def test_a_non_finite_default_is_refused_before_anything_runs(tmp_path):
    bad = route("/echo", "echo", [param("f", "float", optional=True, default_value="1e999")])
    endpoint = start("types", [bad], tmp_path=tmp_path)
    assert endpoint.wait_exit() == 2
    assert "body[0].default_value: '1e999' is not a finite number" in endpoint.log()


def test_an_explicit_null_means_the_default(echo):
    answer = echo.post("/echo", {"text": "x", "f": None, "d": None, "l": None})
    assert answer.json() == {"text": ["x", "str"], "f": [0.5, "float"], "d": [None, "NoneType"], "l": [[1], "list"]}
    assert echo.post("/echo", {"text": None}).status_code == 422  # a required param has no default to stand in


def test_head_and_options(echo):
    get = echo.get("/q?f=2")
    head = echo.session.head(echo.url + "/q?f=2", timeout=10)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]
    assert echo.session.head(echo.url + "/ping", timeout=10).status_code == 200
    assert echo.session.head(echo.url + "/openapi.json", timeout=10).status_code == 200
    options = echo.session.options(echo.url + "/q", timeout=10)
    assert options.status_code == 204 and options.headers["allow"] == "GET, HEAD, OPTIONS"
    assert echo.session.options(echo.url + "/echo", timeout=10).headers["allow"] == "OPTIONS, POST"
    assert echo.session.options(echo.url + "/nowhere", timeout=10).status_code == 404


def hostile_body(size=10 * 1024 * 1024) -> bytes:
    """A JSON object of unknown keys filling `size` bytes: 883,071 of them at 10 MiB."""
    parts, total, i = [], 2, 0
    while True:
        item = f'"k{i}": 1'
        if total + len(item) + 2 > size:
            break
        parts.append(item)
        total += len(item) + 2
        i += 1
    return ("{" + ", ".join(parts) + "}").encode()


def test_a_body_of_a_million_unknown_keys_gets_a_small_422_and_never_stalls_the_endpoint(serve):
    ep = serve([route("/echo", "echo", ECHO)])
    body = hostile_body()
    keys = body.count(b":")
    pings: list[float] = []
    done = threading.Event()

    def ping_meanwhile():
        session = requests.Session()
        while not done.is_set() and len(pings) < 500:
            began = time.monotonic()
            assert session.get(ep.url + "/ping", timeout=10).status_code == 200
            pings.append(time.monotonic() - began)
            time.sleep(0.02)

    pinger = threading.Thread(target=ping_meanwhile)
    pinger.start()
    began = time.monotonic()
    try:
        answer = raw_post(ep, "/echo", body, "application/json", timeout=60)
    finally:
        done.set()
        pinger.join(30)
    took = time.monotonic() - began
    assert answer.status_code == 422
    assert len(answer.content) < 8 * 1024, len(answer.content)
    detail = answer.json()["detail"]
    assert len(detail) == 20
    assert detail[0] == {"loc": ["body", "text"], "msg": "Field required", "type": "missing"}
    assert detail[1]["loc"] == ["body", "k0"] and detail[1]["type"] == "extra_forbidden"
    assert answer.json()["message"].endswith(f"... and {keys + 1 - 20:,} more")
    assert pings and max(pings) < 1.0, (max(pings), len(pings))
    # The same body again: the endpoint is unharmed, and its memory stays bounded.
    assert raw_post(ep, "/echo", body, "application/json", timeout=60).status_code == 422
    assert ep.post("/echo", {"text": "fine"}).status_code == 200
    peak_mb = _peak_rss_mb(ep.proc.pid)
    print(f"hostile 10 MiB body ({keys:,} unknown keys): 422 of {len(answer.content)} bytes in {took:.2f}s; "
          f"/ping worst {max(pings) * 1000:.0f} ms over {len(pings)} pings; endpoint peak RSS {peak_mb} MB")
    assert peak_mb < 1000


def _peak_rss_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    return 0


def test_thousands_of_unknown_query_params_get_a_small_422(echo):
    query = "&".join(f"u{i}=1" for i in range(5000))
    answer = echo.get("/q?" + query)
    assert answer.status_code == 422
    assert len(answer.content) < 8 * 1024
    assert len(answer.json()["detail"]) == 20 and answer.json()["message"].endswith("... and 4,980 more")


def test_headers_past_64_kib_get_431(echo):
    headers = {f"x-filler-{i}": "v" * 1000 for i in range(70)}
    answer = echo.session.post(echo.url + "/echo", json={"text": "x"}, headers=headers, timeout=10)
    assert answer.status_code == 431
    fifty = {f"x-filler-{i}": "v" * 1000 for i in range(50)}
    assert echo.post("/echo", {"text": "x"}, headers=fifty).status_code == 200


def _exchange(ep, pieces: list[bytes]) -> bytes:
    """Send `pieces` on one connection, a write each, and read until the server closes it (10 s at most a read)."""
    sock = socket.create_connection(("127.0.0.1", ep.port), timeout=10)
    try:
        for piece in pieces:
            try:
                sock.sendall(piece)
            except OSError:  # closed by the server: its answer is read below
                break
            time.sleep(0.02)  # separate reads on the server's side, most likely
        answer = b""
        try:
            while data := sock.recv(65536):  # the server closes the connection after its last answer
                answer += data
        except ConnectionResetError:
            pass
        return answer
    finally:
        sock.close()


def test_headers_past_64_kib_in_many_small_writes_get_431_before_they_end(echo):
    """The count is kept per read while headers are incomplete: 2 KiB writes past the limit are refused without
    waiting for the end of the headers (which never comes here)."""
    filler = [b"x-filler-%d: %s\r\n" % (i, b"v" * 2000) for i in range(40)]
    answer = _exchange(echo, [b"POST /echo HTTP/1.1\r\nhost: x\r\n", *filler])
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


def test_one_header_value_that_never_ends_gets_431_once_it_passes_twice_the_limit(echo):
    """The parser holds a header whole until it ends: a value sent on and on (never a line end) is refused from
    the header section's own bytes, instead of being buffered until the header timeout."""
    answer = _exchange(echo, [b"POST /echo HTTP/1.1\r\nhost: x\r\nx-big: ", *[b"a" * 8192] * 40])
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


def test_a_body_past_64_kib_sent_with_its_headers_in_one_write_is_no_431(echo):
    """A read that holds small headers and a large body passes the bound; the exact count of the headers decides."""
    body = json.dumps({"text": "y" * 300_000}).encode()
    head = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n" % len(body)
    pipelined = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 12\r\n"
    answer = _exchange(echo, [head + b"\r\n" + body + pipelined + b"connection: close\r\n\r\n" + b'{"text":"z"}'])
    assert answer.count(b"HTTP/1.1 200 ") == 2 and b'"z"' in answer, answer[:300]


def test_pipelined_calls_are_answered_in_order_whole_and_an_http_1_0_caller_gets_close(echo):
    """Small JSON answers leave in one write each (connections.WholeCycle): every answer must still carry the
    server's date, its own length and request id, in order on a kept-alive connection, and `connection: close`
    (then the close) for an HTTP/1.0 caller, whose connections are not kept alive."""
    call = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s"
    bodies = [json.dumps({"text": f"n{i}"}).encode() for i in range(3)]
    pieces = b"".join(call % (len(b), b"x-request-id: call-%d\r\n" % i, b) for i, b in enumerate(bodies))
    answer = _exchange(echo, [pieces + call % (2, b"connection: close\r\n", b"{}")])
    parts = answer.split(b"HTTP/1.1 ")[1:]
    assert [p.split(b" ", 1)[0] for p in parts] == [b"200", b"200", b"200", b"422"], answer[:600]
    for i, part in enumerate(parts[:3]):
        head, _, body = part.partition(b"\r\n\r\n")
        head += b"\r\n"
        assert b"\r\ndate: " in head and b"\r\nx-request-id: call-%d\r\n" % i in head, head
        assert json.loads(body[:int(head.split(b"content-length: ")[1].split(b"\r\n")[0])])["text"][0] == f"n{i}"
    assert b"connection: close" in parts[3]

    old = _exchange(echo, [b"POST /echo HTTP/1.0\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n"
                           b'{"text":"a"}'])  # read until the server closes: it must
    assert old.startswith(b"HTTP/1.1 200 ") and b"\r\nconnection: close\r\n" in old, old
    assert b'"text":["a","str"]' in old, old


def test_a_slowloris_connection_is_closed_and_others_are_served(serve):
    ep = serve([route("/echo", "echo", ECHO)])
    sock = socket.create_connection(("127.0.0.1", ep.port), timeout=30)
    began = time.monotonic()
    sock.sendall(b"POST /echo HTTP/1.1\r\nhost: x\r\n")
    closed_after = None
    for _ in range(40):  # a header byte every 0.5 s, for up to 20 s
        assert ep.post("/echo", {"text": "x"}).status_code == 200
        try:
            sock.sendall(b"x")
            sock.settimeout(0.5)
            if sock.recv(1024) == b"":
                closed_after = time.monotonic() - began
                break
        except socket.timeout:
            continue
        except OSError:
            closed_after = time.monotonic() - began
            break
    sock.close()
    assert closed_after is not None and 8 < closed_after < 16, closed_after


def test_connections_past_the_cap_get_503_when_every_one_is_busy(tmp_path):
    endpoint = start("blocking", [route("/wait", "wait", [param("gate", "str"), param("started", "str")])],
                     "--max-connections", "4", tmp_path=tmp_path)
    ep = endpoint.wait_ready()
    gate = tmp_path / "gate"
    started = [tmp_path / f"started-{i}" for i in range(3)]
    busy = [threading.Thread(target=requests.post, args=(ep.url + "/wait",),
                             kwargs={"json": {"gate": str(gate), "started": str(mark)}, "timeout": 30})
            for mark in started]
    try:
        for thread in busy:
            thread.start()
        wait_for(lambda: all(mark.exists() for mark in started))
        # Three calls in flight: a fourth connection is past the cap (uvicorn counts the caller's own), and
        # busy connections are never closed to make room.
        assert requests.get(ep.url + "/ping", timeout=10).status_code == 503
        assert requests.post(ep.url + "/wait", json={"gate": str(gate), "started": ""}, timeout=10).status_code == 503
    finally:
        gate.touch()
        for thread in busy:
            thread.join(30)
    assert requests.get(ep.url + "/ping", timeout=10).status_code == 200
    endpoint.stop()


def test_idle_connections_at_the_cap_make_room_oldest_first(serve):
    ep = serve([route("/echo", "echo", ECHO)], "--max-connections", "4")
    idle = [socket.create_connection(("127.0.0.1", ep.port), timeout=10) for _ in range(4)]
    try:
        assert requests.post(ep.url + "/echo", json={"text": "x"}, timeout=10).status_code == 200
        idle[0].settimeout(10)
        assert idle[0].recv(1) == b""  # the oldest idle connection was closed to admit the caller
    finally:
        for sock in idle:
            sock.close()


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@contextmanager
def open_files(soft: int):
    """This process's soft open-file limit set to `soft` (children started meanwhile inherit it)."""
    before, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < soft:
        pytest.skip(f"the hard open-file limit ({hard}) is below {soft}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (before, hard))


@contextmanager
def idle_sockets(port: int, count: int):
    """`count` loopback connections that never send a byte, all closed at the end."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=30))
        yield socks
    finally:
        for sock in socks:
            sock.close()


def answered_within(call, bound=5.0):
    began = time.monotonic()
    answer = call(timeout=bound)
    return answer.status_code, time.monotonic() - began


def test_a_thousand_idle_connections_do_not_lock_callers_out(serve):
    ep = serve([route("/predict", "echo", ECHO)])  # one worker, the default --max-connections (1000)
    with open_files(4096), idle_sockets(ep.port, 1000):
        for _ in range(3):
            status, took = answered_within(lambda **kw: requests.post(ep.url + "/predict", json={"text": "x"}, **kw))
            assert status == 200 and took < 5, (status, took)
            status, took = answered_within(lambda **kw: requests.get(ep.url + "/ping", **kw))
            assert status == 200 and took < 5, (status, took)


def test_idle_connections_do_not_lock_callers_out_of_the_control_plane(start_control_plane):
    # The usual soft open-file limit (systemd, most shells): 2,000 idle sockets were more than the control
    # plane could hold, and uvloop closed every new connection unanswered.
    with open_files(1024):
        plane = start_control_plane()
    with open_files(4096), idle_sockets(int(plane.url.rsplit(":", 1)[1]), 2000):
        for _ in range(3):
            status, took = answered_within(lambda **kw: requests.get(plane.url + "/api/health", **kw))
            assert status == 200 and took < 5, (status, took)
            status, took = answered_within(lambda **kw: plane.api("GET", "/api/jobs", **kw))
            assert status == 200 and took < 5, (status, took)


def test_an_endpoint_key_guards_every_call_but_ping(serve, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("k" * 32)
    os.chmod(key_file, 0o600)
    ep = serve([route("/echo", "echo", ECHO), route("/q", "echo", ECHO[1:], verb="GET")], "--key-file", str(key_file))
    for answer in (ep.post("/echo", {"text": "x"}), ep.get("/q"), ep.get("/openapi.json"), ep.get("/nowhere"),
                   ep.post("/echo", {"text": "x"}, headers={"authorization": "Bearer " + "k" * 31 + "j"}),
                   ep.post("/echo", {"text": "x"}, headers={"authorization": "k" * 32})):
        assert answer.status_code == 401
        assert answer.json()["error"] == "unauthorized" and "Authorization: Bearer" in answer.json()["message"]
    good = {"authorization": "Bearer " + "k" * 32}
    assert ep.post("/echo", {"text": "x"}, headers=good).status_code == 200
    assert ep.get("/ping").status_code == 200
    # A new key in the file replaces the old one within a second or two, without a restart.
    replacement = tmp_path / "key.new"
    replacement.write_text("n" * 32)
    os.replace(replacement, key_file)
    deadline = time.monotonic() + 10
    while ep.post("/echo", {"text": "x"}, headers=good).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ep.post("/echo", {"text": "x"}, headers=good).status_code == 401
    assert ep.post("/echo", {"text": "x"}, headers={"authorization": "Bearer " + "n" * 32}).status_code == 200
    assert "k" * 32 not in ep.log() and "n" * 32 not in ep.log()


def test_a_key_file_that_is_missing_or_too_short_stops_the_runtime_naming_it(tmp_path):
    short = tmp_path / "short.key"
    short.write_text("abc")
    for path, message in ((short, "the key must be at least 16 characters"),
                          (tmp_path / "missing.key", "No such file or directory")):
        endpoint = start("types", [route("/echo", "echo", ECHO)], "--key-file", str(path), tmp_path=tmp_path)
        assert endpoint.wait_exit() == 2
        assert f"--key-file {path}: {message}" in endpoint.log() and "Traceback" not in endpoint.log()


# -- nesting depth, on both servers ------------------------------------------------------------------------------


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def padding(size: int, keys: bool) -> str:
    """JSON members (after a comma) filling `size` bytes: many unknown keys (the large-body scan's path) or one
    long string (pydantic's)."""
    if keys:
        return "".join(f', "u{i:07}": 1' for i in range(size // 14 + 1))
    return ', "pad": "' + "x" * size + '"'


DEEP = [  # (levels, bytes of padding, padded with keys): small, and over 64 KiB both ways
    pytest.param(5_000, 0, False, id="5000-small"),
    pytest.param(5_000, 100_000, False, id="5000-large-string"),
    pytest.param(5_000, 100_000, True, id="5000-large-keys"),
    pytest.param(100_000, 0, False, id="100000"),
    pytest.param(100_000, 100_000, True, id="100000-large-keys"),
]


@pytest.mark.parametrize("levels, pad, keys", DEEP)
def test_a_body_nested_past_the_bound_is_a_json_422_naming_it_on_an_endpoint(echo, levels, pad, keys):
    for body in ('{"text": "x", "l": ' + nested(levels) + (padding(pad, keys) if pad else "") + "}",
                 '{"text": "x"' + (padding(pad, keys) if pad else "") + ', "d": {"a": ' + nested(levels) + "}}"):
        assert (len(body) > 64 * 1024) == bool(pad or levels > 30_000)
        answer = raw_post(echo, "/echo", body.encode(), "application/json")
        assert answer.status_code == 422, answer.text[:300]
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["detail"][0]["type"] == "too_deep"
        assert "more than 100 levels deep" in answer.json()["message"], answer.json()["message"]
    assert echo.post("/echo", {"text": "fine"}).status_code == 200


def test_the_endpoints_depth_bound_is_100_levels(echo):
    deepest = raw_post(echo, "/echo", b'{"text": "x", "l": ' + nested(99).encode() + b"}", "application/json")
    assert deepest.status_code == 200
    deeper = raw_post(echo, "/echo", b'{"text": "x", "l": ' + nested(100).encode() + b"}", "application/json")
    assert deeper.status_code == 422 and deeper.json()["detail"][0]["loc"] == ["body", "l"]
    assert echo.get("/q?l=" + nested(99)).status_code == 200  # a param's value is level 2, as in a body
    for levels in (100, 5_000):
        answer = echo.get("/q?l=" + nested(levels))
        assert answer.status_code == 422 and answer.json()["detail"][0] == {
            "loc": ["query", "l"], "msg": "objects and arrays nested more than 100 levels deep; the limit is 100",
            "type": "too_deep"}


# -- the control plane's API -------------------------------------------------------------------------------------


def health_meanwhile(url: str):
    """Pings /api/health from another thread until the returned stop() is called; stop() gives the latencies."""
    pings: list[float] = []
    done = threading.Event()

    def ping():
        session = requests.Session()
        while not done.is_set() and len(pings) < 1000:
            began = time.monotonic()
            assert session.get(url + "/api/health", timeout=10).status_code == 200
            pings.append(time.monotonic() - began)
            time.sleep(0.02)

    pinger = threading.Thread(target=ping)
    pinger.start()

    def stop() -> list[float]:
        done.set()
        pinger.join(30)
        return pings

    return stop


JOB = '{"name": "hostile", "model": {"source_type": "git", "source_uri": "https://example.com/x.git"}, ' \
      '"endpoint": {"routes": []}'


@pytest.mark.parametrize("size, status", [(10 * 1024 * 1024, 413), (1024 * 1024 - 64, 422)],
                         ids=["10MiB-over-the-cap", "just-under-the-1MiB-cap"])
def test_the_control_planes_hostile_body_gets_a_small_answer_and_never_stalls_its_health(shared_plane, size, status):
    unknown = hostile_body(size - len(JOB) - 2)
    body = JOB.encode() + b", " + unknown[1:]
    assert len(body) <= size
    keys = unknown.count(b":")
    stop = health_meanwhile(shared_plane.url)
    began = time.monotonic()
    try:
        answer = shared_plane.api("POST", "/api/jobs", data=body, headers={"content-type": "application/json"},
                                  timeout=60)
    finally:
        pings = stop()
    took = time.monotonic() - began
    assert answer.status_code == status, answer.text[:500]
    assert len(answer.content) <= 64 * 1024, len(answer.content)
    assert took < 15, took
    assert pings and max(pings) < 1.0, (max(pings), len(pings))
    if status == 413:
        assert answer.json()["error"] == "body_too_large" and "1,048,576 bytes" in answer.json()["message"]
    else:
        details = answer.json()["details"]
        assert len(details) == 21 and details[0] == "k0: Extra inputs are not permitted"
        assert details[-1] == f"... and {keys - 20:,} more"
        assert answer.json()["message"].startswith(f"{keys:,} problems in the request:")
    assert shared_plane.api("GET", "/api/jobs").json() == []
    print(f"control plane, {len(body):,} byte body ({keys:,} unknown keys): {status} of {len(answer.content)} "
          f"bytes in {took:.2f}s; /api/health worst {max(pings) * 1000:.0f} ms over {len(pings)} pings; "
          f"peak RSS {_peak_rss_mb(shared_plane.process.pid)} MB")


def test_a_body_over_the_control_planes_cap_is_413_without_a_content_length(control_plane):
    def chunks():
        for _ in range(20):
            yield b" " * 64 * 1024  # 1.25 MiB in all, sent chunked: no Content-Length to refuse it by

    answer = control_plane.api("PUT", "/api/secrets/big", data=chunks(), headers={"content-type": "application/json"})
    assert answer.status_code == 413 and answer.json()["error"] == "body_too_large"
    # A stranger's body is not read at all: 401 before the cap or the parser see it.
    stranger = control_plane.api("PUT", "/api/secrets/big", auth=False, data=chunks(),
                                 headers={"content-type": "application/json"})
    assert stranger.status_code == 401
    assert control_plane.api("GET", "/api/secrets").json() == []
    fine = control_plane.api("PUT", "/api/secrets/fine", json={"value": "v" * 60_000})
    assert fine.status_code == 200, fine.text


@pytest.mark.parametrize("levels, pad, keys", DEEP)
def test_a_body_nested_past_the_bound_is_a_json_422_naming_it_on_the_control_plane(shared_plane, levels, pad, keys):
    for path, body in (("/api/jobs", JOB[:-1] + ', "routes": ' + nested(levels) + "}"
                        + (padding(pad, keys) if pad else "") + "}"),
                       ("/api/dashboard/check",
                        '{"name": ' + nested(levels) + (padding(pad, keys) if pad else "") + "}")):
        assert (len(body) > 64 * 1024) == bool(pad or levels > 30_000)
        answer = shared_plane.api("POST", path, data=body, headers={"content-type": "application/json"})
        assert answer.status_code == 422, answer.text[:300]
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["error"] == "invalid"
        assert "more than 100 levels deep" in answer.json()["message"], answer.json()["message"]
    assert shared_plane.api("GET", "/api/jobs").json() == []
    assert shared_plane.api("GET", "/api/health").status_code == 200
