"""File params: multipart/form-data bodies streamed to disk, or base64 / `data:` URLs in a JSON body.

A route with a `file` param takes either body. The function gets an `UploadPath` (a `pathlib.Path`) per file param:
the upload's bytes in `<private temp dir>/<client's file name>` (in a folder named by the param when two files
share a name), so `path.name` and `path.suffix` are what
the client sent, and `path.content_type` is the media type it said (plain attributes: the user's code imports
nothing of ours). The folder is removed once the function has returned and the answer has gone (`Upload`).

A multipart body is parsed as it arrives, with a small parser of our own (a boundary search per chunk in C, about
150 lines: python-multipart is not among the runtime's requirements, which every endpoint environment installs).
File parts are written to disk chunk by chunk, never held whole; form fields are kept (bounded by the body limit)
and converted to their params' types as a query string is (binding.py): `int`, `float`, `bool` from text, `dict`
and `list` from JSON text. A missing part or a bad field is the usual 422 naming `body.<param>`.

A browser may post a form to any local endpoint without asking (no CORS preflight for multipart), which JSON-only
bodies ruled out: a multipart body whose `Origin` is not the endpoint's own host is refused (415).
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from queue import SimpleQueue
from urllib.parse import unquote_to_bytes, urlsplit

from .binding import InvalidRequest

MAX_PARTS = 1000  # a body of tiny parts would otherwise cost a dict entry and a 422 line each
MAX_PART_HEADERS = 16 * 1024
OCTET_STREAM = "application/octet-stream"
_PARAM = re.compile(r';\s*([\w*.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


class UploadPath(type(Path())):
    """A Path to an uploaded file; `content_type` is the media type the client gave it (paths derived from it,
    such as `path.parent`, have None)."""

    content_type: str | None = None


class Upload:
    """One request's uploaded files, in a private folder (mode 0700) removed when the last holder releases it: the
    request's handler (once the answer has gone) and the call (once the function has returned; a call that
    outlives its timeout keeps its files)."""

    def __init__(self):
        self.folder: str | None = None
        self._holds = 1
        self._lock = threading.Lock()

    def create(self, param: str, filename: str | None, content_type: str | None):
        """(an open binary file, its UploadPath) for one file param: in the request's folder, or in a folder named
        by the param when another file param took the name already."""
        if self.folder is None:
            self.folder = tempfile.mkdtemp(prefix="trainml-upload-")
        name = safe_name(filename)
        folder = self.folder
        if os.path.exists(os.path.join(folder, name)):
            folder = os.path.join(folder, param)  # a param name is an identifier: safe as a folder name
            os.mkdir(folder, 0o700)
        path = UploadPath(folder, name)
        path.content_type = content_type or OCTET_STREAM
        return open(path, "xb"), path

    def hold(self):
        """One more holder; returns its release."""
        with self._lock:
            self._holds += 1
        return self.release

    def release(self, *_ignored) -> None:
        with self._lock:
            self._holds -= 1
            last = self._holds == 0
        if last and self.folder is not None:
            _remove_later(self.folder)


# Folders are removed on a thread of their own: unlinking a large file, or a folder on an overlay filesystem, can
# take milliseconds, which the event loop (where most releases happen) must not spend.
_removals: SimpleQueue = SimpleQueue()
_remover: list[threading.Thread] = []
_remover_lock = threading.Lock()


def _remove_later(folder: str) -> None:
    _removals.put(folder)
    if not _remover:
        with _remover_lock:
            if not _remover:
                _remover.append(threading.Thread(target=_remove, name="remove-uploads", daemon=True))
                _remover[0].start()


def _remove() -> None:
    while True:
        shutil.rmtree(_removals.get(), ignore_errors=True)


def safe_name(filename: str | None) -> str:
    """The client's file name as a name in our folder: no directories, no control characters, at most 200 bytes
    (the suffix kept); "upload" when nothing usable is left."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    if name in ("", ".", ".."):
        return "upload"
    if len(name.encode()) > 200:
        stem, suffix = os.path.splitext(name)
        suffix = suffix if len(suffix.encode()) <= 20 else ""
        name = stem.encode()[:200 - len(suffix.encode())].decode(errors="ignore") + suffix
    return name


def cross_site(headers, scope_host: bytes | None = None) -> bool:
    """True when a browser says the request comes from a page of another origin (Origin's host:port is not the
    Host the request was sent to). curl, the SDK and the CLI send no Origin."""
    origin = host = None
    for name, value in headers:
        if name == b"origin":
            origin = value
        elif name == b"host":
            host = value
    if origin is None:
        return False
    return urlsplit(origin.decode("latin-1")).netloc.lower() != (host or scope_host or b"").decode("latin-1").lower()


class FileParams:
    """A route's file params, and how its requests become arguments with them in."""

    cross_site = staticmethod(cross_site)  # for app.py, which loads this module only for routes with file params

    def __init__(self, route, binder):
        self.route = route
        self.binder = binder
        self.names = [p.name for p in route.body if p.type == "file"]
        self.types = {p.name: p.type for p in route.body}
        self.index = {p.name: i for i, p in enumerate(route.body)}

    def bind_json(self, body: bytes) -> tuple[tuple, dict, Upload]:
        """A JSON body: each file param is base64 text or a `data:` URL, written to a file."""
        args, kwargs = self.binder.bind_json(body)
        upload = Upload()
        try:
            paths = {}
            for name in self.names:
                text = self._get(args, kwargs, name)
                if text is not None:
                    paths[name] = _decode(upload, name, text)
            return (*self._put(args, kwargs, paths), upload)
        except BaseException:
            upload.release()
            raise

    async def bind_form(self, content_type: bytes, body) -> tuple[tuple, dict, Upload]:
        """A multipart/form-data body, from `body` (an async iterator of chunks), file parts written as they come."""
        boundary = _boundary(content_type)
        upload = Upload()
        form = _Form(self, upload)
        try:
            await _parse(body, boundary, form)
            args, kwargs = self.binder.bind_fields(form.fields)
            return (*self._put(args, kwargs, form.paths), upload)
        except BaseException:
            form.close()
            upload.release()
            raise

    def _get(self, args, kwargs, name):
        return args[self.index[name]] if self.route.positional else kwargs[name]

    def _put(self, args, kwargs, paths: dict) -> tuple[tuple, dict]:
        if self.route.positional:
            args = list(args)
            for name, path in paths.items():
                args[self.index[name]] = path
            return tuple(args), kwargs
        kwargs.update(paths)
        return args, kwargs


def _problem(name: str | None, message: str, kind: str) -> InvalidRequest:
    loc = ["body", name] if name else ["body"]
    return InvalidRequest([{"loc": loc, "msg": message, "type": kind}])


def _decode(upload: Upload, name: str, text: str) -> UploadPath:
    content_type = None
    try:
        if text.startswith("data:"):
            header, comma, data = text[5:].partition(",")
            if not comma:
                raise ValueError
            media, _, tail = header.partition(";")
            content_type = media.strip() or "text/plain"
            raw = (base64.b64decode(data, validate=True) if tail.split(";")[-1].strip() == "base64"
                   else unquote_to_bytes(data))
        else:
            raw = base64.b64decode("".join(text.split()), validate=True)
    except (ValueError, binascii.Error):
        raise _problem(name, "must be base64 text or a data: URL (data:image/png;base64,...)", "file_invalid") \
            from None
    suffix = (mimetypes.guess_extension(content_type) or "") if content_type else ""
    file, path = upload.create(name, "upload" + suffix, content_type)
    with file:
        file.write(raw)
    return path


def _boundary(content_type: bytes) -> bytes:
    params = dict((k.lower(), v) for k, v in _PARAM.findall(content_type.decode("latin-1")))
    boundary = _unquote(params.get("boundary", ""))
    if not 1 <= len(boundary) <= 200:  # RFC 2046: 1 to 70 characters; browsers stay well under 200
        raise _problem(None, "multipart/form-data needs a boundary parameter in its Content-Type", "multipart_invalid")
    return boundary.encode("latin-1")


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


class _Form:
    """Where the parts go: file params' parts to disk, other fields to memory, unknown files nowhere."""

    def __init__(self, params: FileParams, upload: Upload):
        self.params = params
        self.upload = upload
        self.fields: list[tuple[str, str]] = []
        self.paths: dict[str, UploadPath] = {}
        self.parts = 0
        self._name = None
        self._file = None
        self._path = None
        self._value: bytearray | None = None
        self._blank = False  # the part of a file input left empty (filename="")

    def begin(self, headers: bytes) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise _problem(None, f"more than {MAX_PARTS} parts in one form; the limit is {MAX_PARTS}", "too_many")
        disposition, content_type = "", None
        for line in headers.decode("utf-8", errors="replace").split("\r\n"):
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key == "content-disposition":
                disposition = value
            elif key == "content-type":
                content_type = value.strip()
        params = {k.lower(): _unquote(v) for k, v in _PARAM.findall(disposition)}
        name, filename = params.get("name"), params.get("filename")
        if not name:
            raise _problem(None, "a part has no Content-Disposition name", "multipart_invalid")
        self._name = name
        kind = self.params.types.get(name)
        if kind == "file":
            if name in self.paths:
                raise _problem(name, "was sent more than once", "multipart_invalid")
            self._file, self._path = self.upload.create(name, filename, content_type)
            self._blank = filename == ""
        elif filename is not None and kind is not None:
            raise _problem(name, f"is a {kind} param: send it as a form field, not a file", "multipart_invalid")
        else:  # a field, or a part for no param at all: the binder names it (its data is small or dropped)
            self._value = bytearray() if filename is None else None

    def write(self, data) -> None:
        if self._file is not None:
            self._file.write(data)
        elif self._value is not None:
            self._value += data

    def end(self) -> None:
        name = self._name
        if self._file is not None:
            self._file.close()
            self._file = None
            # A browser's file input left empty still sends its part, with no name and no bytes: not sent.
            if not (self._blank and self._path.stat().st_size == 0):
                self.paths[name] = self._path
        elif self._value is not None:
            try:
                self.fields.append((name, self._value.decode()))
            except UnicodeDecodeError:
                raise _problem(name, "is not UTF-8 text", "string_unicode") from None
            self._value = None
        else:
            self.fields.append((name, ""))  # an unknown file part: the binder reports it as an unknown param
        if name in self.paths:
            self.fields.append((name, "file"))  # a str for the binder's check; the path replaces it after

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


async def _parse(body, boundary: bytes, form: _Form) -> None:
    """Feed a multipart body's parts to `form` as its chunks arrive (RFC 7578 as browsers and curl send it)."""
    delimiter = b"\r\n--" + boundary
    keep = len(delimiter) - 1  # a delimiter may straddle two chunks: this much of a part's tail waits for the next
    buffer = b"\r\n"  # so that a body that starts with its first boundary matches the delimiter too
    state = "preamble"
    async for chunk in body:
        buffer += chunk
        while True:
            if state == "data":
                at = buffer.find(delimiter)
                if at < 0:
                    if len(buffer) > keep:
                        form.write(memoryview(buffer)[:-keep])
                        buffer = buffer[-keep:]
                    break
                form.write(memoryview(buffer)[:at])
                form.end()
                buffer = buffer[at + len(delimiter):]
                state = "after"
            elif state == "preamble":
                at = buffer.find(delimiter)
                if at < 0:
                    buffer = buffer[-keep:]
                    break
                buffer = buffer[at + len(delimiter):]
                state = "after"
            elif state == "after":  # "--" closes the body; else the rest of the boundary's line, then headers
                if len(buffer) < 2:
                    break
                if buffer[:2] == b"--":
                    return  # the epilogue, if any, is ignored
                at = buffer.find(b"\r\n")
                if at < 0 or buffer[:at].strip(b" \t"):
                    if at < 0 and len(buffer) < 1024:
                        break
                    raise _problem(None, "malformed multipart body: bad boundary line", "multipart_invalid")
                buffer = buffer[at + 2:]
                state = "headers"
            else:  # headers
                if buffer[:2] == b"\r\n":
                    at = -2  # a part with no headers at all
                else:
                    at = buffer.find(b"\r\n\r\n")
                    if at < 0:
                        if len(buffer) > MAX_PART_HEADERS:
                            raise _problem(None, f"a part's headers are longer than {MAX_PART_HEADERS} bytes",
                                           "multipart_invalid")
                        break
                form.begin(buffer[:max(at, 0)])
                buffer = buffer[at + 4:]
                state = "data"
    raise _problem(None, "malformed multipart body: it ends before its closing boundary", "multipart_invalid")
