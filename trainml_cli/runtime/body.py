"""A request's body as it arrives: its length and media type from the headers, then its bytes within the limit.

A JSON body is read whole (it is parsed whole anyway); a multipart body is handed on chunk by chunk (uploads.py),
so a large file goes to disk as it comes. Either way the endpoint's --max-body-size is counted as the bytes
arrive, whatever the Content-Length said (a chunked body has none).
"""

from __future__ import annotations

from .replies import JSON

MULTIPART = b"multipart/form-data"


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


def body_headers(headers) -> tuple[int | None, bytes | None]:
    """(content-length, content-type) in one pass over the headers."""
    length = content_type = None
    for name, value in headers:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                pass
        elif name == b"content-type":
            content_type = value
    return length, content_type


def media_type(content_type: bytes) -> bytes:
    return content_type.partition(b";")[0].strip().lower()


def is_multipart(content_type: bytes | None) -> bool:
    return content_type is not None and media_type(content_type) == MULTIPART


def unsupported_type(content_type: bytes | None, takes_files: bool) -> str:
    """Why a body's Content-Type is refused (415), for a route that takes JSON only or files too."""
    given = f"Content-Type {content_type.decode('latin-1')!r}" if content_type is not None else "no Content-Type"
    if not takes_files:
        wanted = "the body must be JSON, sent with Content-Type: application/json (or another */*+json type)"
    elif is_multipart(content_type):
        wanted = "a form posted from a page of another site (its Origin is not this endpoint) is refused"
    else:
        wanted = "the body must be multipart/form-data or JSON (Content-Type: application/json)"
    return f"{wanted}; this request has {given}"


def is_json(content_type: bytes) -> bool:
    """application/json or any */*+json, with or without parameters. Refusing the rest closes the door on blind
    cross-site POSTs: a web page can send text/plain or a form to a local endpoint without asking, never JSON.
    (Routes with file params take multipart/form-data too, guarded by uploads.cross_site.)"""
    known = _verdicts.get(content_type)
    if known is None:
        media = media_type(content_type)
        known = media == JSON or media.endswith(b"+json")
        if len(_verdicts) < 64:  # the few types callers send, not one per hostile variant
            _verdicts[content_type] = known
    return known


_verdicts: dict[bytes, bool] = {}  # Content-Type header -> is_json: a dict lookup instead of a parse per request


async def chunks(receive, limit: int):
    """The body's chunks as they arrive; BodyTooLarge as soon as they pass `limit` bytes, ClientGone if the caller
    leaves first."""
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def read_body(receive, limit: int) -> bytes:
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone()
    body = message.get("body", b"")
    if len(body) > limit:
        raise BodyTooLarge()
    if not message.get("more_body", False):  # the usual case: the whole body in one message
        return body
    return b"".join([body, *[chunk async for chunk in chunks(receive, limit - len(body))]])
