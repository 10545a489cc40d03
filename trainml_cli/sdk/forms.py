"""A call with files: a multipart/form-data body streamed from disk, for a route with `file` params.

    await job.call("/classify", {"threshold": 0.3}, files={"image": "cat.jpg"})

Each file goes as one part named by its param, with its file name and the media type its suffix implies; the other
params go as form fields, as the endpoint reads them (dict and list as JSON text, bool as true/false). The body is
read from disk as it is sent, never held whole, with its Content-Length known beforehand (the endpoint refuses an
upload over its limit before it arrives); it can be sent again (a retry after 503 reads the files again).
"""

from __future__ import annotations

import json
import mimetypes
import os
from pathlib import Path

from ..errors import UsageError

CHUNK = 256 * 1024


class FormBody:
    """An iterable body of known length (requests sends it with Content-Length, chunk by chunk)."""

    def __init__(self, route, data: dict, files: dict):
        self.boundary = os.urandom(16).hex()
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        names = {p.name: p.type for p in route.body}
        file_params = [name for name, kind in names.items() if kind == "file"]
        self.pieces: list[bytes | Path] = []
        for name, value in data.items():
            if names.get(name) == "file":
                raise UsageError(f"{route.label}: {name} is a file param: give it in files (--file {name}=@PATH)")
            if value is None:
                continue
            text = json.dumps(value) if isinstance(value, (dict, list, bool)) else str(value)
            self.pieces.append(self._head(name) + b"\r\n\r\n" + text.encode() + b"\r\n")
        for name, path in files.items():
            if name not in file_params:
                have = ", ".join(file_params) or "none"
                raise UsageError(f"{route.label} has no file param {name!r} (its file params: {have})")
            path = Path(path)
            if not path.is_file():
                raise UsageError(f"file for {name}: {path} is not a readable file")
            media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            filename = path.name.replace('"', "%22").replace("\r", "").replace("\n", "")
            self.pieces += [self._head(name) + f'; filename="{filename}"\r\nContent-Type: {media}\r\n\r\n'.encode(),
                            path, b"\r\n"]
        self.pieces.append(f"--{self.boundary}--\r\n".encode())
        self.length = sum(len(p) if isinstance(p, bytes) else p.stat().st_size for p in self.pieces)

    def _head(self, name: str) -> bytes:
        return f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"'.encode()

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        for piece in self.pieces:
            if isinstance(piece, bytes):
                yield piece
                continue
            with open(piece, "rb") as file:
                while True:
                    chunk = file.read(CHUNK)
                    if not chunk:
                        break
                    yield chunk
