"""Short sync calls run on the event loop once proved short (runtime/inline.py); a call that stalls the loop sends
them back to the call threads, and behaviour is the same on either side: in process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time

import pytest

from trainml_cli.runtime.inline import PROOF, STALL

from .conftest import param, route

pytestmark = pytest.mark.anyio

WHERE = route("/where", "where", [param("mode", "str", optional=True, default_value="''")])


async def threads(client, calls: int, mode: str = "") -> list[str]:
    names = []
    for _ in range(calls):
        response = await client.post("/where", json={"mode": mode})
        assert response.status_code == 200, response.text
        names.append(response.json()["thread"])
    return names


async def reaches_the_loop(client, loop_thread: str) -> bool:
    """True once a call runs on the loop; on a busy machine a preempted call restarts the proof, so allow many."""
    for _ in range(20 * PROOF):
        if (await threads(client, 1)) == [loop_thread]:
            return True
    return False


async def inline_endpoint(endpoint):
    client = await endpoint("inline", [WHERE])
    loop_thread = threading.current_thread().name
    assert all(name.startswith("call-") for name in await threads(client, PROOF))  # the proof runs on threads
    assert await reaches_the_loop(client, loop_thread)
    return client, loop_thread


async def test_short_calls_move_to_the_loop_and_a_long_stall_sends_them_back_for_good(endpoint, capsys):
    client, loop_thread = await inline_endpoint(endpoint)
    stalled = await client.post("/where", json={"mode": "sleep:0.2"})
    assert stalled.json()["thread"] == loop_thread  # this one could not be helped: it ran where the calls ran
    assert "a call took" in capsys.readouterr().err
    after = await threads(client, 4 * PROOF)
    assert all(name.startswith("call-") for name in after)

    # A function that blocks now blocks a call thread, never the loop: /ping answers while it sleeps.
    sleeping = asyncio.create_task(client.post("/where", json={"mode": "sleep:2"}))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    assert (await client.get("/ping")).status_code == 200
    assert time.monotonic() - started < 1.0
    assert not sleeping.done()
    assert (await sleeping).json()["thread"].startswith("call-")


async def test_a_brief_stall_costs_a_new_proof_then_the_calls_return_to_the_loop(endpoint):
    client, loop_thread = await inline_endpoint(endpoint)
    await client.post("/where", json={"mode": "sleep:0.01"})  # past STALL, short of LONG
    assert (await threads(client, 1))[0].startswith("call-")
    assert await reaches_the_loop(client, loop_thread)


async def test_an_inline_call_behaves_as_on_a_thread(endpoint, capsys):
    client, loop_thread = await inline_endpoint(endpoint)
    # A sync function may run its own event loop, as on a call thread.
    response = await client.post("/where", json={"mode": "asyncio"})
    assert response.status_code == 200
    assert response.json() == {"thread": loop_thread, "twice": 42}
    # Its exceptions are 500s naming them, with the traceback in the log; SystemExit does not stop the endpoint.
    failed = await client.post("/where", json={"mode": "raise"})
    assert failed.status_code == 500
    assert failed.json()["type"] == "ValueError" and failed.json()["message"] == "asked to fail"
    assert "ValueError: asked to fail" in capsys.readouterr().err
    exited = await client.post("/where", json={"mode": "exit"})
    assert exited.status_code == 500 and exited.json()["type"] == "SystemExit"
    # Calls still run on the loop (a slow traceback on a loaded machine may cost them a new proof first).
    assert await reaches_the_loop(client, loop_thread)


async def test_with_a_timeout_shorter_than_a_stall_may_be_the_calls_stay_on_threads(endpoint):
    # A call on the loop could not be answered 504 in time: such an endpoint never runs its calls there.
    client = await endpoint("inline", [WHERE], timeout=0.02)
    assert all(name.startswith("call-") for name in await threads(client, 4 * PROOF))
    timed_out = await client.post("/where", json={"mode": "sleep:0.3"})
    assert timed_out.status_code == 504
    for _ in range(500):  # the function still sleeps on its thread: let it return before the loop closes
        if client.app.pool.admitted == 0:
            break
        await asyncio.sleep(0.01)
    assert client.app.pool.admitted == 0


async def test_with_inline_calls_off_every_call_runs_on_a_call_thread(endpoint):
    # --no-inline-calls: a function that must never hold the event loop (it keeps thread-local state, or its
    # owner wants /ping answered whatever it does) stays on the threads however short it proves.
    client = await endpoint("inline", [WHERE], inline_calls=False)
    assert all(name.startswith("call-") for name in await threads(client, 4 * PROOF))


async def test_one_brief_stall_after_a_quiet_stretch_keeps_the_calls_on_the_loop_and_a_second_sends_them_back(
        endpoint):
    # What a busy core does to a short call now and then (the kernel runs something else in its middle), which on
    # a Ray replica's shared core would otherwise keep the calls on the threads: let pass once, not twice.
    client, loop_thread = await inline_endpoint(endpoint)
    await asyncio.sleep(0.3)  # inline for 0.3 s without a stall: more than QUIET times the one below
    assert (await client.post("/where", json={"mode": "sleep:0.004"})).json()["thread"] == loop_thread
    assert (await threads(client, 1)) == [loop_thread]
    await client.post("/where", json={"mode": "sleep:0.004"})  # the next stall, too soon after the first
    assert (await threads(client, 1))[0].startswith("call-")


@pytest.mark.skipif(not os.path.exists("/proc/thread-self/schedstat"), reason="no per-thread schedstat here")
async def test_calls_preempted_by_a_process_busy_on_the_same_core_stay_on_the_loop(endpoint):
    # A short computation whose thread the kernel gives to another process in the middle looks long by the wall
    # clock; the time spent waiting for the core is not the function's: its calls stay inline.
    client, loop_thread = await inline_endpoint(endpoint)
    affinity = os.sched_getaffinity(0)
    core = min(affinity)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(hog.pid, {core})
        os.sched_setaffinity(0, {core})  # this thread only: the loop's, where the calls run
        calls = []  # (thread, whether the kernel took the core away in its middle)
        kept = 0  # preempted calls on the loop, and the next call still there: not counted against the function
        for _ in range(4000):  # until enough preempted calls ran on the loop (the core is taken every few ms)
            started = time.perf_counter()
            name = (await threads(client, 1, "spin:0.0004"))[0]
            kept += bool(calls) and calls[-1] == (loop_thread, True) and name == loop_thread
            calls.append((name, time.perf_counter() - started > 2 * STALL))
            if kept >= 10:
                break
    finally:
        os.sched_setaffinity(0, affinity)
        hog.kill()
        hog.wait()
    sent_back = sum(1 for (was, _), (now, _) in zip(calls, calls[1:]) if was == loop_thread != now)
    slow = sum(slow for _, slow in calls)
    assert kept >= 10, f"{kept} preempted calls kept on the loop of {slow} preempted in {len(calls)} calls"
    # A stall the kernel does not count as waiting (a virtual machine's stolen time) may still cost one proof.
    assert sent_back <= 1, f"sent back to the threads {sent_back} times in {len(calls)} calls ({slow} preempted)"
