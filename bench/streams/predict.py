"""Tokens yielded as fast as a generator can: the function every server in bench/streaming.py streams."""


def tokens(n=1000):
    for i in range(n):
        yield f"tok{i}"
