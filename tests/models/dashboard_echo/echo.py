"""Dashboard tests: every call prints a numbered line (so the logs view has something new to show) and echoes."""

import itertools

CALLS = itertools.count(1)


def echo(text, times=1):
    print(f"echo call #{next(CALLS)} with {text!r}", flush=True)
    return {"echo": text * times}
