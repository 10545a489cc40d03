"""What the runtime writes: JSON for return values, and one access-log line per request.

Access-log lines are batched and written at most every 100 ms: a write per request would cost the hot path a
system call, and a follower of the job's log still sees each line well within a second.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
from pathlib import PurePath


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


_dumps = json.JSONEncoder(separators=(",", ":"), default=_default, allow_nan=False, ensure_ascii=False).encode


def encode_result(result) -> tuple[bytes, bytes]:
    """(body, content type) for a function's return value; bytes are sent as they are."""
    if isinstance(result, (bytes, bytearray, memoryview)):
        return bytes(result), b"application/octet-stream"
    try:
        return _dumps(result).encode(), b"application/json"
    except ValueError as exc:  # NaN or infinity, which JSON cannot carry
        raise ValueError(f"the function's return value cannot be sent as JSON: {exc}") from None


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
