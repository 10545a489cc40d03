"""Streaming routes (runtime/streaming.py): a generator function's items as SSE or NDJSON, each sent as it is
yielded, errors mid-stream, a caller going away, the per-item timeout, metrics and /openapi.json. In process: the
requests are sent straight to the ASGI app, so each message it sends is seen as it is sent."""

from __future__ import annotations

import asyncio
import json

import pytest

from .conftest import error_of, param, route

pytestmark = pytest.mark.anyio
WAIT = 10.0  # seconds any one message may take; they take milliseconds

TOKENS = [param("n", "int"), param("gate", "str")]
FAILS = [param("text", "str")]
FOREVER = [param("closed", "str")]


class Exchange:
    """One request sent straight to the endpoint's ASGI app; its answer's messages are read as they are sent, and
    `leave()` makes the caller go away (the next receive() says http.disconnect)."""

    def __init__(self, app, path: str, body: dict, accept: str | None = None, request_id: str | None = None):
        headers = [(b"content-type", b"application/json")]
        if accept:
            headers.append((b"accept", accept.encode()))
        if request_id:
            headers.append((b"x-request-id", request_id.encode()))
        scope = {"type": "http", "method": "POST", "path": path, "root_path": "", "query_string": b"",
                 "headers": headers, "http_version": "1.1", "scheme": "http"}
        self.body = json.dumps(body).encode()
        self.messages: asyncio.Queue = asyncio.Queue()
        self.gone = asyncio.Event()
        self.task = asyncio.ensure_future(app(scope, self.receive, self.messages.put))

    async def receive(self):
        if self.body is not None:
            body, self.body = self.body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    def leave(self):
        self.gone.set()

    async def next(self) -> dict:
        return await asyncio.wait_for(self.messages.get(), WAIT)

    async def start(self) -> tuple[int, dict]:
        message = await self.next()
        assert message["type"] == "http.response.start"
        return message["status"], {k.decode(): v.decode() for k, v in message["headers"]}

    async def rest(self) -> bytes:
        chunks = []
        while True:
            message = await self.next()
            chunks.append(message["body"])
            if not message.get("more_body"):
                await asyncio.wait_for(self.task, WAIT)
                return b"".join(chunks)


def sse_events(text: str) -> list[tuple[str, object]]:
    """(event name, decoded data) per event; "message" when unnamed, as EventSource does."""
    events = []
    for block in text.split("\n\n"):
        if not block:
            continue
        name, data = "message", None
        for line in block.split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            elif field == "data":
                data = json.loads(value)
        events.append((name, data))
    return events


@pytest.mark.parametrize("function", ["tokens", "atokens"], ids=["def", "async-def"])
@pytest.mark.parametrize("accept", ["text/event-stream", "application/json"], ids=["sse", "ndjson"])
async def test_each_item_is_sent_as_it_is_yielded(endpoint, tmp_path, function, accept):
    ep = await endpoint("stream_tokens", [route("/tokens", function, TOKENS)])
    gate = tmp_path / "gate"
    call = Exchange(ep.app, "/tokens", {"n": 3, "gate": str(gate)}, accept=accept)
    status, headers = await call.start()
    sse = accept == "text/event-stream"
    assert status == 200
    assert headers["content-type"] == ("text/event-stream" if sse else "application/x-ndjson")
    assert headers["x-request-id"] and "content-length" not in headers
    first = await call.next()
    # The first item is out while the function is still waiting for the gate, which only this test opens.
    assert first["body"] == (b'data: "first"\n\n' if sse else b'"first"\n') and first["more_body"]
    assert not call.task.done()
    gate.touch()
    text = (first["body"] + await call.rest()).decode()
    items = [{"i": i, "text": f"line {i}\nwith a newline"} for i in (1, 2)]
    if sse:
        assert sse_events(text) == [("message", "first"), *[("message", item) for item in items], ("end", {})]
    else:
        assert [json.loads(line) for line in text.splitlines()] == ["first", *items]


@pytest.mark.parametrize("function", ["after_one", "aafter_one"], ids=["def", "async-def"])
@pytest.mark.parametrize("accept", ["text/event-stream", None], ids=["sse", "ndjson"])
async def test_an_error_after_the_first_item_ends_the_stream_with_an_error_item(endpoint, function, accept, capfd):
    ep = await endpoint("stream_fails", [route("/s", function, FAILS)])
    call = Exchange(ep.app, "/s", {"text": "x"}, accept=accept, request_id="trace-7")
    status, headers = await call.start()
    assert status == 200 and headers["x-request-id"] == "trace-7"
    text = (await call.rest()).decode()
    error = {"error": "model_error", "type": "ValueError", "message": "cannot go on after 'x'", "request_id": "trace-7"}
    if accept:
        assert sse_events(text) == [("message", {"got": "x"}), ("error", error)]
    else:
        assert [json.loads(line) for line in text.splitlines()] == [{"got": "x"}, error]
    assert "Traceback" in capfd.readouterr().err  # in the job log, not in the answer


async def test_an_error_before_the_first_item_is_the_usual_json_500(endpoint):
    ep = await endpoint("stream_fails", [route("/s", "at_once", FAILS)])
    answer = await ep.post("/s", json={"text": "x"}, headers={"Accept": "text/event-stream"})
    assert answer.status_code == 500
    assert error_of(answer) == {"error": "model_error", "type": "ValueError", "message": "cannot start with 'x'"}


@pytest.mark.parametrize("function", ["forever", "aforever"], ids=["def", "async-def"])
async def test_a_caller_going_away_closes_the_generator_and_frees_its_slot(endpoint, tmp_path, function):
    ep = await endpoint("stream_forever", [route("/s", function, FOREVER)], max_concurrency=1, max_queue=0)
    closed = tmp_path / "closed"
    call = Exchange(ep.app, "/s", {"closed": str(closed)})
    assert (await call.start())[0] == 200
    assert (await call.next())["body"] == b"0\n"
    assert (await ep.post("/s", json={"closed": str(tmp_path / "other")})).status_code == 503  # the slot is held
    call.leave()
    await asyncio.wait_for(call.task, WAIT)
    for _ in range(int(WAIT / 0.01)):
        if closed.exists():
            break
        await asyncio.sleep(0.01)
    assert closed.exists(), "the generator's finally did not run"
    for _ in range(int(WAIT / 0.01)):  # the slot is given back once the thread lets go, just after the finally
        if ep.app.pool.admitted == 0:
            break
        await asyncio.sleep(0.01)
    again = Exchange(ep.app, "/s", {"closed": str(tmp_path / "again")})
    assert (await again.start())[0] == 200
    again.leave()
    await asyncio.wait_for(again.task, WAIT)
    for _ in range(int(WAIT / 0.01)):
        if ep.app.pool.admitted == 0:
            break
        await asyncio.sleep(0.01)
    assert (tmp_path / "again").exists()


async def test_a_caller_who_reads_nothing_pauses_the_generator_a_bounded_way_ahead(endpoint, tmp_path):
    from trainml_cli.runtime.streaming import AHEAD

    ep = await endpoint("stream_forever", [route("/s", "counted", [param("count", "str")])])
    count = tmp_path / "count"
    first = asyncio.Event()
    stuck = asyncio.Event()  # never set: the caller's socket is full, so the server's send never returns

    async def send(message):
        if message["type"] == "http.response.body":
            first.set()
            await stuck.wait()

    body = [{"type": "http.request", "body": json.dumps({"count": str(count)}).encode(), "more_body": False}]

    async def receive():
        if body:
            return body.pop()
        await stuck.wait()  # the caller stays

    scope = {"type": "http", "method": "POST", "path": "/s", "root_path": "", "query_string": b"",
             "headers": [(b"content-type", b"application/json")], "http_version": "1.1", "scheme": "http"}
    task = asyncio.ensure_future(ep.app(scope, receive, send))
    await asyncio.wait_for(first.wait(), WAIT)
    seen = []
    for _ in range(3):  # a generator without the bound yields thousands of items in this time
        await asyncio.sleep(0.2)
        seen.append(int(count.read_text()))
    assert seen[-1] <= AHEAD + 3, f"the generator ran {seen[-1]} items ahead of a caller who read none"
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_the_timeout_bounds_the_wait_for_each_item(endpoint, tmp_path):
    ep = await endpoint("stream_tokens", [route("/tokens", "tokens", TOKENS)], timeout=0.2)
    gate = tmp_path / "gate"
    call = Exchange(ep.app, "/tokens", {"n": 3, "gate": str(gate)}, accept="text/event-stream")
    assert (await call.start())[0] == 200
    events = sse_events((await call.rest()).decode())
    gate.touch()  # lets the generator finish, so its thread ends with the test
    assert events[0] == ("message", "first")
    assert events[1][0] == "error" and events[1][1]["error"] == "timeout"
    assert "--timeout" in events[1][1]["message"] and len(events) == 2


async def test_a_batched_generator_is_refused_at_load(endpoint):
    ep = await endpoint("stream_tokens", [route("/tokens", "tokens", TOKENS, batch={"max_size": 4})])
    assert (await ep.get("/ping")).json()["status"] == "failed"
    assert "is a generator function (it yields), and a batched route cannot stream" in ep.app.load_error


async def test_streaming_routes_are_said_in_openapi_docs_and_metrics(endpoint, tmp_path, capfd):
    ep = await endpoint("stream_tokens", [route("/tokens", "tokens", TOKENS), route("/t2", "atokens", TOKENS)])
    assert "route POST /tokens streams" in capfd.readouterr().out  # the job log: news on stdout, not an error
    operation = (await ep.get("/openapi.json")).json()["paths"]["/tokens"]["post"]
    assert operation["x-trainml-stream"] is True
    assert set(operation["responses"]["200"]["content"]) == {"text/event-stream", "application/x-ndjson"}
    assert "Streams" in (await ep.get("/docs")).text
    gate = tmp_path / "gate"
    gate.touch()
    answer = await ep.post("/tokens", json={"n": 4, "gate": str(gate)})
    assert len(answer.text.splitlines()) == 4
    text = (await ep.get("/metrics")).text
    assert 'trainml_stream_items_total{route="POST /tokens"} 4.0' in text
    assert 'trainml_stream_first_item_seconds_count{route="POST /tokens"} 1.0' in text
    assert "trainml_streams_open 0.0" in text
    totals = (await ep.get("/metrics", params={"format": "json"})).json()
    assert totals["stream_items"] == 4 and totals["streams_open"] == 0
    assert totals["stream_first_items"] == 1 and totals["stream_first_item_ms_sum"] > 0  # the dashboard's mean
