"""A sync function that says which thread ran it, and on request sleeps, spins, runs its own event loop, or raises."""

import asyncio
import threading
import time


async def _twice(x):
    await asyncio.sleep(0)
    return 2 * x


def where(mode=""):
    if mode.startswith("sleep:"):
        time.sleep(float(mode[6:]))
    elif mode.startswith("spin:"):  # busy for that long (wall time), as a short computation on a busy core
        until = time.perf_counter() + float(mode[5:])
        while time.perf_counter() < until:
            pass
    elif mode == "asyncio":
        return {"thread": threading.current_thread().name, "twice": asyncio.run(_twice(21))}
    elif mode == "raise":
        raise ValueError("asked to fail")
    elif mode == "exit":
        raise SystemExit(3)
    return {"thread": threading.current_thread().name}
