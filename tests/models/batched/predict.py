"""Batched functions: each gets one list per param and returns one result per request, in order."""

import asyncio
import os
import time


def echo(request_id, text):
    # Echoes every request's id with the size of the batch it was part of, so tests can match answers to requests.
    return [{"id": i, "text": t, "batch": len(request_id), "pid": os.getpid()} for i, t in zip(request_id, text)]


def slow_echo(request_id, delay):
    time.sleep(max(delay))
    return [{"id": i, "batch": len(request_id)} for i in request_id]


def ordered(request_id, text):
    # A positional route: the lists come in the template's order.
    return tuple(f"{i}:{t}" for i, t in zip(request_id, text))


async def async_echo(request_id):
    await asyncio.sleep(0.01)
    return [{"id": i, "batch": len(request_id)} for i in request_id]


def short(request_id):
    return request_id[:-1] if len(request_id) > 1 else []


def not_a_list(request_id):
    return {"ids": request_id}


def fails(request_id):
    raise ValueError(f"cannot handle a batch of {len(request_id)}")


def numpy_rows(x):
    import numpy as np

    values = np.asarray(x, dtype=np.float64)
    return np.stack([values, values * 2], axis=1)  # one row per request


def no_params():
    return []


def wrong_signature(text):
    return text
