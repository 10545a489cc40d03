"""Streams that fail: after their first item, or before it."""


def after_one(text):
    yield {"got": text}
    raise ValueError(f"cannot go on after {text!r}")


async def aafter_one(text):
    yield {"got": text}
    raise ValueError(f"cannot go on after {text!r}")


def at_once(text):
    raise ValueError(f"cannot start with {text!r}")
    yield  # a generator all the same
