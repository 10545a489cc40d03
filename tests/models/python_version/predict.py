"""Answers with the Python version it runs on."""

import platform


def python_version():
    return {"version": platform.python_version()}
