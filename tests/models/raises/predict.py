"""Fails in the ways user code fails at call time."""

import sys


def fail(text):
    raise ValueError(f"cannot handle {text!r}")


def exits():
    sys.exit(4)


def not_json():
    return object()


def ok(text):
    return {"ok": text}
