"""Answers that are not JSON: a file from disk (its type from its suffix), bytes, a file that is not there; and
typed params (list items, choices) echoed back as they arrived."""

import os
from pathlib import Path

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # a PNG signature, then enough bytes to check they all arrive


def file(name: str, size: int):
    """Writes `size` bytes of a known pattern to a file named `name` beside the model and answers with its Path."""
    path = Path(os.environ.get("OUTPUTS_DIR", ".")) / name
    path.write_bytes(bytes(i % 251 for i in range(size)))
    return path


def png():
    return PNG


def missing():
    return Path("/nonexistent/trainml-test/no-such-file.png")


def echo(**params):
    return params
