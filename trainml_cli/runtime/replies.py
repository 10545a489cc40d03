"""How an answer leaves the runtime: one request id on every answer, and JSON bodies sent in one piece.

Every answer carries `X-Request-Id`: the caller's own when it sent a sane one (1 to 128 printable ASCII
characters), otherwise a new one, unique across the endpoint's processes (a random prefix per process and a
counter). The same id is in the access-log line and in every error body (`request_id`), so a caller's report
finds the log line. A new id costs a counter step and a format, about 0.3 us: no uuid on the hot path.

A file answer (a function returned a Path) is sent from disk: its first chunk read on the call's thread, the
rest on the loop's executor, CHUNK bytes at a time, so neither memory nor the event loop holds the whole file.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import mimetypes
import os
import re
import stat

from .. import errors
from .gate import CallTimeout, UserExit

JSON = b"application/json"
# The content type of the answers our JSON encoder wrote (output.encode_result): equal to JSON but an object of its
# own, so that a capture can tell them from bytes a function answered as JSON, which it checks before keeping as is.
ENCODED_JSON = bytes(bytearray(JSON))
OCTET = b"application/octet-stream"
CHUNK = 256 * 1024
HEADER = b"x-request-id"
_HEAD = b"content-type: %s\r\ncontent-length: %d\r\n" + HEADER + b": %s\r\n"
MAX_LENGTH = 128
_sane = re.compile(rb"[\x20-\x7e]{1,%d}" % MAX_LENGTH).fullmatch


class RequestIds:
    """New ids for one process: `<12 random hex>-<counter in hex>`."""

    def __init__(self):
        self._prefix = os.urandom(6).hex() + "-"
        self._counter = itertools.count(1)

    def pick(self, headers) -> bytes:
        """The caller's X-Request-Id if it is sane, else a new one."""
        for name, value in headers:
            if name == HEADER:
                if _sane(value) and value.strip():
                    return value.strip()
                break
        return f"{self._prefix}{next(self._counter):x}".encode()


class Reply:
    """The ASGI `send` of one request, with the id every answer to it carries."""

    __slots__ = ("send", "request_id", "trace", "sample", "whole")

    def __init__(self, send, request_id: bytes):
        self.send = send
        self.request_id = request_id
        # Our uvicorn protocol's one-write answer (connections.WholeCycle), None elsewhere (Ray Serve) and once
        # `send` is wrapped (a capture's tee must see the answer).
        self.whole = getattr(getattr(send, "__self__", None), "send_whole", None)
        self.trace = None  # the request's span when tracing is on (tracing.py)
        self.sample = None  # the call's sample.Sample when it is kept: told the answer as it is sent

    def head(self, content_type: bytes, length: int) -> bytes:
        """The header lines of a whole answer (connections.WholeCycle.send_whole): values our own or checked (the
        request id is printable ASCII, the content type a route's media type)."""
        return _HEAD % (content_type, length, self.request_id)

    def with_id(self, body: bytes) -> bytes:
        """A JSON error object with `request_id` added as its last field."""
        if not body.startswith(b'{"error"') or body[-1:] != b"}":  # /ping's {"status": ...} is not an error
            return body
        return body[:-1] + b',"request_id":' + json.dumps(self.request_id.decode("ascii")).encode() + b"}"


async def send_json(reply: Reply, status: int, body: bytes, extra_headers=(), content_type: bytes = JSON) -> int:
    if status >= 400:
        body = reply.with_id(body)
    if reply.sample is not None:
        reply.sample.answer(content_type, body)
    if not extra_headers and reply.whole is not None and reply.whole(status, reply.head(content_type, len(body)), body):
        return status
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
               (HEADER, reply.request_id)]
    if extra_headers:
        headers.extend(extra_headers)
    send = reply.send
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return status


async def send_failure(reply: Reply, exc: Exception, timeout: float) -> int:
    """The answer to a call that raised (500, the user's exception named) or ran past the endpoint's timeout (504)."""
    if isinstance(exc, CallTimeout):
        body = {
            "error": errors.CallTimeout.kind,
            "message": f"the call ran longer than the endpoint's timeout of {timeout:g}s "
            "(--timeout, or endpoint.timeout in a job); its slot stays taken until the function returns",
        }
        return await send_json(reply, errors.CallTimeout.http_status, json.dumps(body).encode())
    original = exc.original if isinstance(exc, UserExit) else exc
    body = {"error": errors.ModelError.kind, "type": type(original).__name__, "message": str(original)}
    return await send_json(reply, errors.ModelError.http_status, json.dumps(body).encode())


class FileBody:
    """A file a function answered with: open, its size taken when opened, its first chunk already read."""

    __slots__ = ("file", "size", "head", "content_type")

    def __init__(self, file, size: int, head: bytes, content_type: bytes):
        self.file = file
        self.size = size
        self.head = head
        self.content_type = content_type

    @classmethod
    def open(cls, path) -> FileBody:
        """Open `path` (on a call thread); OSError if it is missing, ValueError if it is no regular file."""
        # O_NONBLOCK: opening a FIFO must not hang the call; a regular file ignores the flag.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        file = os.fdopen(fd, "rb")
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ValueError(f"the function returned the path {str(path)!r}, which is not a regular file")
            head = file.read(min(CHUNK, info.st_size))
        except BaseException:
            file.close()
            raise
        guessed = mimetypes.guess_type(os.fspath(path))[0]
        return cls(file, info.st_size, head, guessed.encode() if guessed else OCTET)


async def send_result(reply: Reply, payload, content_type: bytes) -> int:
    """A 200 with what the function answered: bytes in one piece, a FileBody from disk in chunks."""
    if not isinstance(payload, FileBody):
        return await send_json(reply, 200, payload, content_type=content_type)
    send = reply.send if reply.sample is None else reply.sample.tee(reply.send)
    try:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", content_type), (b"content-length", str(payload.size).encode()),
            (HEADER, reply.request_id)]})
        left = payload.size - len(payload.head)
        await send({"type": "http.response.body", "body": payload.head, "more_body": left > 0})
        read = asyncio.get_running_loop().run_in_executor
        while left > 0:
            chunk = await read(None, payload.file.read, min(CHUNK, left))
            left = left - len(chunk) if chunk else 0  # a file that shrank ends early: the server closes the reply
            await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})
    finally:
        payload.file.close()
    return 200
