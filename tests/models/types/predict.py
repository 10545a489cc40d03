"""Echoes what it was given, with the Python type names, so tests see exactly what the runtime passed."""

import asyncio


def echo(**params):
    return {name: [value, type(value).__name__] for name, value in params.items()}


def ordered(first, second, third=None):
    return [first, second, third]


def keywords(*, second, first):
    return {"first": first, "second": second}


async def async_echo(text):
    await asyncio.sleep(0)
    return {"async": text}


def get_item(item_id, verbose=False):
    return {"item_id": item_id, "verbose": verbose, "via": "GET"}


def put_item(item_id, verbose=False):
    return {"item_id": item_id, "verbose": verbose, "via": "PUT"}


def numpy_array(n):
    import numpy

    return {"array": numpy.arange(n), "mean": numpy.float32(1.5)}


def shout(text):
    print(f"model says: {text}", flush=True)
    return text.upper()


def pid():
    import os

    return os.getpid()
