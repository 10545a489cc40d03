"""Streams: the first item at once, the rest only once the test creates the gate file (so the first item is seen
while the function is still running)."""

import asyncio
import os
import time


def tokens(n, gate):
    yield "first"
    while not os.path.exists(gate):
        time.sleep(0.01)
    for i in range(1, n):
        yield {"i": i, "text": f"line {i}\nwith a newline"}


async def atokens(n, gate):
    yield "first"
    while not os.path.exists(gate):
        await asyncio.sleep(0.01)
    for i in range(1, n):
        yield {"i": i, "text": f"line {i}\nwith a newline"}
