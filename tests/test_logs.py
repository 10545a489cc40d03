"""Job logs through the real control plane: newest first with a cursor, paging, and following new lines as the
model code prints them."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import requests

from conftest import MODELS, route, run
from trainml_cli.server.logs import LogBook

ECHO = {"source_type": "local", "source_uri": str(MODELS / "echo")}
ROUTES = {"routes": [route()]}


def test_logs_are_newest_first_in_pages_with_a_cursor(control_plane):
    async def scenario():
        async with control_plane.client() as client:
            job = await client.jobs.create("echo", model=ECHO, endpoint=ROUTES, wait=True)
            for i in range(30):
                await job.call("/predict", {"text": f"n{i}"})
            await job.stop()
            return job.id

    job_id = run(scenario())
    everything = []
    before = None
    while True:
        params = {"limit": 7, **({"before": before} if before else {})}
        page = control_plane.api("GET", f"/api/jobs/{job_id}/logs", params=params).json()
        assert len(page["logs"]) <= 7
        everything += page["logs"]
        before = page["next"]
        if before is None:
            break
        assert before == page["logs"][-1]["id"]
    ids = [e["id"] for e in everything]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)  # newest first, nothing twice
    assert everything[0]["message"] == "status: stopped"
    assert everything[-1]["message"] == "job 'echo' created (local model)"
    calls = [e["message"] for e in everything if e["message"].startswith("predict called with")]
    assert calls == [f"predict called with n{i}" for i in reversed(range(30))]
    for entry in everything:
        assert set(entry) == {"id", "time", "stream", "message", "revision"}
        assert entry["revision"] == (None if entry["stream"] == "event" else 1)
        assert entry["stream"] in ("stdout", "stderr", "event")
        assert entry["time"].endswith("Z") and "T" in entry["time"]
    # The runtime's news is output, not an error: its ready line is on stdout.
    assert any(e["stream"] == "stdout" and e["message"].startswith("ready: ") for e in everything)
    assert any(e["stream"] == "stdout" and "POST /predict 200" in e["message"] for e in everything)  # access log

    async def sdk_view():
        async with control_plane.client() as client:
            job = await client.jobs.get(job_id)
            tail = [e async for e in job.logs(tail=5)]
            whole = [e async for e in job.logs()]
            return tail, whole

    tail, whole = run(sdk_view())
    assert [e["id"] for e in whole] == list(reversed(ids))  # the SDK yields oldest to newest
    assert tail == whole[-5:]


def test_a_line_printed_by_model_code_reaches_a_follower_in_well_under_a_second(control_plane):
    async def scenario():
        async with control_plane.client() as client:
            job = await client.jobs.create("echo", model=ECHO, endpoint=ROUTES, wait=True)
            follower = await client.jobs.get(job.id)
            seen: dict[str, float] = {}

            async def follow():
                async for entry in follower.logs(follow=True, tail=0):
                    if entry["message"].startswith("predict called with"):
                        seen[entry["message"]] = time.monotonic()
                    if entry["message"] == "status: stopped":
                        return

            task = asyncio.create_task(follow())
            await asyncio.sleep(0.3)
            delays = []
            for i in range(5):
                sent = time.monotonic()
                await job.call("/predict", {"text": f"live{i}"})
                line = f"predict called with live{i}"
                while line not in seen and time.monotonic() - sent < 5:
                    await asyncio.sleep(0.005)
                delays.append(seen[line] - sent)
            await job.stop()
            await asyncio.wait_for(task, 15)  # a follower ends when the job stops
            assert max(delays) < 0.5, delays
            await job.remove(force=True)

    run(scenario())


def test_the_stream_endpoint_follows_as_ndjson_and_as_server_sent_events(control_plane):
    async def create():
        async with control_plane.client() as client:
            return (await client.jobs.create("echo", model=ECHO, endpoint=ROUTES, wait=True)).dict

    job = run(create())
    headers = {"Authorization": f"Bearer {control_plane.token}"}
    lines: list[dict] = []
    arrived = threading.Event()

    def follow():
        with requests.get(f"{control_plane.url}/api/jobs/{job['id']}/logs/stream", headers=headers, stream=True,
                          timeout=30) as response:
            assert response.headers["content-type"].startswith("application/x-ndjson")
            for raw in response.iter_lines():
                if raw:
                    lines.append(json.loads(raw))
                    if lines[-1]["message"] == "predict called with streamed":
                        arrived.set()

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    time.sleep(0.3)
    sent = time.monotonic()
    requests.post(job["url"] + "/predict", json={"text": "streamed"}, timeout=10)
    assert arrived.wait(5)
    assert time.monotonic() - sent < 1.0
    assert lines[0]["message"] == "job 'echo' created (local model)"  # from the start (after=0)
    control_plane.api("POST", f"/api/jobs/{job['id']}/stop")
    reader.join(20)
    assert not reader.is_alive()  # the stream ends when the job stops
    assert lines[-1]["message"] == "status: stopped"
    ids = [e["id"] for e in lines]
    assert ids == sorted(ids)

    response = control_plane.api("GET", f"/api/jobs/{job['id']}/logs/stream", headers={"Accept": "text/event-stream",
                                                                                       "Last-Event-ID": str(ids[-3])})
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [block for block in response.text.split("\n\n") if block.strip()]
    assert [int(b.split("\n")[0].removeprefix("id: ")) for b in events] == ids[-2:]
    assert json.loads(events[-1].split("\n")[1].removeprefix("data: "))["message"] == "status: stopped"


def test_a_long_poll_for_new_lines_returns_as_soon_as_one_arrives(control_plane):
    async def create():
        async with control_plane.client() as client:
            return (await client.jobs.create("echo", model=ECHO, endpoint=ROUTES, wait=True)).dict

    job = run(create())
    newest = control_plane.api("GET", f"/api/jobs/{job['id']}/logs", params={"limit": 1}).json()["logs"][0]["id"]
    empty = control_plane.api("GET", f"/api/jobs/{job['id']}/logs", params={"after": newest + 1000, "wait": 0.2}).json()
    assert empty == {"logs": [], "next": None, "last": newest + 1000, "done": False}

    poked = []

    def poke():
        time.sleep(0.5)
        poked.append(time.monotonic())
        requests.post(job["url"] + "/predict", json={"text": "poll"}, timeout=10)

    poker = threading.Thread(target=poke)
    poker.start()
    cursor, found = newest, None
    while found is None:
        page = control_plane.api("GET", f"/api/jobs/{job['id']}/logs", params={"after": cursor, "wait": 20}).json()
        assert page["logs"] and page["last"] == page["logs"][-1]["id"] and page["done"] is False
        cursor = page["last"]
        if any(e["message"] == "predict called with poll" for e in page["logs"]):
            found = time.monotonic()
    poker.join()
    assert found - poked[0] < 1.0


def test_old_lines_are_pruned_past_the_limit(tmp_path):
    from trainml_cli.server.logs import MAX_MESSAGE
    from trainml_cli.server.store import Store

    async def scenario():
        store = Store(tmp_path / "db.sqlite")
        book = LogBook(store, max_lines=50, prune_every=100)
        for i in range(250):
            book.write("job1", "stdout", f"line {i}")
        book.write("job2", "stdout", "other job")
        book.flush()
        kept = book.page("job1", None, 1000)
        assert [e["message"] for e in kept] == [f"line {i}" for i in reversed(range(200, 250))]
        assert [e["message"] for e in book.page("job2", None, 10)] == ["other job"]
        book.write("job1", "stdout", "x" * (MAX_MESSAGE + 10))
        assert book.page("job1", None, 1)[0]["message"].endswith("(10 more characters cut)")
        await book.close()
        store.close()

    run(scenario())


def test_events_have_their_own_cap_so_a_flood_of_prints_keeps_them(tmp_path):
    from trainml_cli.server.store import Store

    async def scenario():
        store = Store(tmp_path / "db.sqlite")
        book = LogBook(store, max_lines=50, prune_every=100, max_events=5)
        book.event("job1", "job 'x' created (local model)")
        book.event("job1", "status: running")
        for i in range(1000):
            book.write("job1", "stdout" if i % 2 else "stderr", f"line {i}")
        book.flush()
        kept = book.page("job1", None, 10_000)
        output = [e for e in kept if e["stream"] != "event"]
        assert [e["message"] for e in output] == [f"line {i}" for i in reversed(range(950, 1000))]
        events = [e["message"] for e in kept if e["stream"] == "event"]
        assert events == ["status: running", "job 'x' created (local model)"]
        for i in range(200):
            book.event("job1", f"status: starting ({i})")
        book.flush()
        events = [e["message"] for e in book.page("job1", None, 10_000) if e["stream"] == "event"]
        assert events == [f"status: starting ({i})" for i in reversed(range(195, 200))]
        await book.close()
        store.close()

    run(scenario())


def test_a_flood_of_prints_leaves_the_status_history(control_plane):
    from test_dashboard import signed_in
    from trainml_cli.server.logs import MAX_LINES, PRUNE_EVERY

    flood = {"verb": "POST", "path": "/flood", "file": "predict", "function": "flood",
             "body": [{"name": "n", "type": "int"}]}
    lines = MAX_LINES + 50_000

    async def scenario():
        async with control_plane.client() as client:
            job = await client.jobs.create("flood", model={"source_type": "local", "source_uri": str(MODELS / "flood")},
                                           endpoint={"routes": [flood]}, wait=True)
            assert await job.call("/flood", {"n": lines}) == {"printed": lines}
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                newest = [e["message"] async for e in job.logs(tail=5)]
                if f"flood line {lines - 1}" in newest:
                    break
                await asyncio.sleep(0.5)
            else:
                raise AssertionError("the flood never reached the log")
            return job.dict

    job = run(scenario())
    history = signed_in(control_plane).get(f"{control_plane.url}/api/dashboard/jobs/{job['id']}/history",
                                           timeout=30).json()
    statuses = [h["status"] for h in history["history"]]
    assert statuses[-1] == "new" and "starting" in statuses and statuses[0] == "running"
    # The output was pruned to its cap (pruning runs every PRUNE_EVERY lines).
    count, before = 0, None
    for _ in range(200):
        page = control_plane.api("GET", f"/api/jobs/{job['id']}/logs",
                                 params={"limit": 1000, **({"before": before} if before else {})}).json()
        count += sum(1 for e in page["logs"] if e["stream"] != "event")
        before = page["next"]
        if before is None:
            break
    assert MAX_LINES <= count <= MAX_LINES + PRUNE_EVERY


def test_output_files_are_read_from_where_the_last_reader_stopped_and_freed_once_read(tmp_path):
    from trainml_cli.server.tailing import PUNCH_EVERY, OutputTail

    got, saved = [], {}
    first = OutputTail(tmp_path, {}, lambda stream, line: got.append((stream, line)), saved.update)
    files = first.open_for_child()
    files["stdout"].write(b"one\ntwo\nhalf a li")
    files["stderr"].write(b"oops\n")
    files["stdout"].flush()
    files["stderr"].flush()
    first.catch_up()
    first.save()
    assert got == [("stdout", "one"), ("stdout", "two"), ("stderr", "oops")]
    first.finish()  # the writer lives on (a control plane restart): the unfinished line waits
    files["stdout"].write(b"ne\n" + b"x" * 99 + b"\n")
    files["stdout"].flush()
    got.clear()
    second = OutputTail(tmp_path, dict(saved), lambda stream, line: got.append((stream, line)), saved.update)
    second.catch_up()
    assert got == [("stdout", "half a line"), ("stdout", "x" * 99)]  # nothing lost, nothing twice
    # Once read, the bytes are freed: the file keeps its size (offsets stay valid) but not its blocks.
    line = b"y" * 1023 + b"\n"
    for _ in range(PUNCH_EVERY // 1024 * 2):
        files["stdout"].write(line)
    files["stdout"].flush()
    second.catch_up(rounds=1000)
    second.save()
    stat = (tmp_path / "stdout.log").stat()
    assert stat.st_size > 2 * PUNCH_EVERY and stat.st_blocks * 512 < PUNCH_EVERY
    second.finish(last_lines=True)
    for file in files.values():
        file.close()
