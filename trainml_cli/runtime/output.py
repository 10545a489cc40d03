"""What the runtime writes: JSON for return values, files and bytes as they are, and one access-log line per request.

A function may answer with a `pathlib.Path`: the file is opened on the call's thread and sent from disk in
chunks (replies.py), with the content type its suffix implies. The path is the function's own choice, so it may
name any file the endpoint's user can read: serving what a request names is the function's business to check.

Access-log lines are batched and written at most every 100 ms: a write per request would cost the hot path a
system call, and a follower of the job's log still sees each line well within a second.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
from pathlib import PurePath

from .replies import ENCODED_JSON, OCTET, FileBody


def _default(value):
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars, without importing numpy
    if tolist is not None and callable(tolist):
        return tolist()
    dump = getattr(value, "model_dump", None)  # pydantic models
    if dump is not None and callable(dump):
        return dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"the function returned a {type(value).__name__}, which cannot be sent as JSON")


_encoder = json.JSONEncoder(separators=(",", ":"), default=_default, allow_nan=False, ensure_ascii=False)
_make = getattr(json.encoder, "c_make_encoder", None)


def _dumps(value) -> str:
    """_encoder.encode(value), without its Python layers (a third of a small answer's encoding time): the same C
    encoder it would make, with markers of its own for the circular check, so no two threads share them."""
    if _make is None:
        return _encoder.encode(value)
    return "".join(_make({}, _default, json.encoder.encode_basestring, None, ":", ",", False, False, False)(value, 0))


def encode_result(result, bytes_type: bytes = OCTET) -> tuple[bytes | FileBody, bytes]:
    """(body, content type) for a function's return value: bytes as they are (of `bytes_type`), a Path as the
    file it names (opened here, on the call's thread; a missing file raises, as the function would have)."""
    if isinstance(result, (bytes, bytearray, memoryview)):
        return bytes(result), bytes_type
    if isinstance(result, PurePath):
        body = FileBody.open(result)
        return body, body.content_type
    try:
        return _dumps(result).encode(), ENCODED_JSON
    except ValueError as exc:  # NaN or infinity, which JSON cannot carry
        raise ValueError(f"the function's return value cannot be sent as JSON: {exc}") from None


def encoder(content_type: str | None):
    """encode_result for a route: its bytes answers go out as the route's content type, if it names one."""
    if content_type is None:
        return encode_result
    bytes_type = content_type.encode("ascii")  # the route spec allows only a media type's characters
    return lambda result: encode_result(result, bytes_type)


def encode_item(item) -> bytes:
    """One item a streaming route yielded, as JSON on one line (a str is a JSON string)."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        raise TypeError("the function yielded bytes, which a stream cannot carry: yield str or JSON values")
    try:
        return _dumps(item).encode()
    except ValueError as exc:
        raise ValueError(f"the function yielded a value that cannot be sent as JSON: {exc}") from None


class AccessLog:
    """`2026-11-27T03:50:32Z POST /predict 200 0.41ms 5f1c0a9e3b2d-1f` (the request id last), one line per
    request, flushed in batches."""

    def __init__(self, loop, stream, enabled: bool = True, interval: float = 0.1):
        self.loop = loop
        self.stream = stream
        self.enabled = enabled
        self.interval = interval
        self.lines: list[str] = []
        self.scheduled = False
        self._second = -1
        self._stamp = ""

    def write(self, method: str, path: str, status: int, ms: float, request_id: bytes = b"-") -> None:
        if not self.enabled:
            return
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        self.lines.append(f"{self._stamp} {method} {path} {status} {ms:.2f}ms {request_id.decode()}\n")
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_later(self.interval, self.flush)

    def flush(self) -> None:
        self.scheduled = False
        if self.lines:
            data = "".join(self.lines)
            self.lines.clear()
            try:
                self.stream.write(data)
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed log pipe must not stop the endpoint from serving
