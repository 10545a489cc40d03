"""Dashboard tests: a call prints a traceback to stderr and an indented block to stdout, then answers."""

import sys
import traceback


def inner(value):
    raise ValueError(f"bad value {value!r}")


def crash(value):
    try:
        inner(value)
    except ValueError:
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
    print(f"summary for {value}:\n  first: 1\n  second: 2", flush=True)
    return {"ok": True}
