"""Streams that never end by themselves: their `finally` writes the file named in the request, so the test sees
the generator closed when the caller went away."""

import asyncio
import os
import time


def forever(closed):
    try:
        i = 0
        while True:
            yield i
            i += 1
            time.sleep(0.02)
    finally:
        open(closed, "w").close()


async def aforever(closed):
    try:
        i = 0
        while True:
            yield i
            i += 1
            await asyncio.sleep(0.02)
    finally:
        open(closed, "w").close()


def counted(count):
    """As fast as it can, forever, writing how many it has yielded to the file named `count`."""
    i = 0
    while True:
        yield i
        i += 1
        with open(count + ".part", "w") as file:
            file.write(str(i))
        os.replace(count + ".part", count)  # the test reads it meanwhile: never half-written
