"""The control plane's JSON bodies against hostile clients: the endpoint runtime's rules (jsonbody.py), for the API.

Every route of the API's and the dashboard's routers but the upload is a JsonRoute. Before FastAPI sees a body:

- the caller is authenticated (as the routers' dependency would, later): a stranger's body is never read;
- the body is read up to MAX_JSON_BODY (1 MiB) and refused past it with 413, from its Content-Length when it
  says so, before a byte is read; uploads (POST /api/uploads) keep their own cap (archives.py);
- it is parsed, refused past jsonbody.MAX_DEPTH levels of nesting (422 naming the bound, never a
  RecursionError) or past MAX_MEMBERS keys and array items, and checked against the route's request model,
  on a thread of its own when it is larger than 64 KiB, so the event loop keeps answering (/api/health
  within 1 s) while a hostile body is checked;
- a 422 lists the first 20 problems and counts the rest (`bounded`, also for every other error answer).

FastAPI then takes the parsed body as it is (Starlette keeps it on the request) and validates a valid body again
on the loop, which costs little; what fails does so on the thread, with its error list bounded there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.message
import typing
from typing import Callable

from fastapi import Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from .. import jsonbody
from ..errors import FieldProblem, TooLarge, UsageError, field_name

MAX_JSON_BODY = 1024 * 1024  # a job payload is a few KiB; 1 MiB leaves room for hundreds of routes
# Keys and array items in one body. A job of a hundred routes has a few thousand; past this a body is refused
# from a count, and whatever pydantic checks makes a short list of errors, quickly.
MAX_MEMBERS = 10_000
_MAX_MESSAGE = 16 * 1024  # characters of one error message: an answer stays far under 64 KiB
_NOT_PARSED = object()


class JsonRoute(APIRoute):
    """An API route whose JSON body is capped, bounded in depth and checked as described above."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()
        model = _request_model(self.endpoint)

        async def guarded(request: Request):
            if request.method in ("POST", "PUT", "PATCH"):
                request.app.state.auth.authenticate(request)  # 401 before the body is read
                body = await _read(request)
                if body.strip():
                    check = _Check(body, model if _is_json(request) else None)
                    if len(body) > jsonbody.OFF_LOOP_BYTES:
                        value = await asyncio.get_running_loop().run_in_executor(_executor(request), check)
                    else:
                        value = check()
                    if value is not _NOT_PARSED:
                        request._json = value  # what Request.json() returns; FastAPI does not parse again
            return await handler(request)

        return guarded


class _Check:
    """Parse, bound the depth and validate one body: the part of a request that may run on a thread."""

    def __init__(self, body: bytes, model: type[BaseModel] | None):
        self.body = body
        self.model = model

    def __call__(self):
        try:
            value = jsonbody.loads(self.body, MAX_MEMBERS)
        except jsonbody.TooDeep:
            raise UsageError.at(("body",), jsonbody.TOO_DEEP) from None
        except jsonbody.TooMany as exc:
            raise self._too_many(exc) from None
        except ValueError:  # not JSON: FastAPI (or the dashboard's form reader) says so in its words
            return _NOT_PARSED
        if self.model is not None:
            try:
                self.model.model_validate(value)
            except ValidationError as exc:
                errors = exc.errors(include_url=False, include_context=False, include_input=False)
                raise invalid([("body", *e["loc"]) for e in errors[:jsonbody.MAX_ERRORS]],
                              [e["msg"] for e in errors[:jsonbody.MAX_ERRORS]], exc.error_count()) from None
        return value

    def _too_many(self, exc: jsonbody.TooMany) -> UsageError:
        """Past MAX_MEMBERS: never given to pydantic, whose list of errors for 70,000 unknown keys takes the GIL
        for half a second. When the top level has unknown keys, the first 20 are named, as pydantic would."""
        if self.model is not None and isinstance(exc.value, dict):
            fields = {field.alias or name: field for name, field in self.model.model_fields.items()}
            unknown = [key for key in exc.value if key not in fields]  # a Python loop: it yields the GIL
            if unknown:
                missing = [name for name, field in fields.items() if field.is_required() and name not in exc.value]
                shown = missing + unknown[:jsonbody.MAX_ERRORS]
                messages = ["Field required"] * len(missing) + ["Extra inputs are not permitted"] * len(unknown)
                return invalid([("body", key) for key in shown[:jsonbody.MAX_ERRORS]],
                               messages[:jsonbody.MAX_ERRORS], len(missing) + len(unknown))
        return UsageError.at(("body",), str(exc))


def invalid(locs: list[tuple], messages: list[str], total: int) -> UsageError:
    """The 422 of a request that does not fit its model: the first MAX_ERRORS problems, one line each, and how
    many more, with `fields` as every other 422 has them; `locs` as FastAPI writes them (("body", "resources",
    "cpu_count"): the body's own name left out, "query" and "path" kept)."""
    found = [(tuple(part for part in loc if part != "body"), str(message)) for loc, message in zip(locs, messages)]
    problems = [f"{field_name(loc)}: {message}" if loc else message for loc, message in found]
    fields = [FieldProblem(loc, message) for loc, message in found]
    if total == 1:
        return UsageError(problems[0], details=problems, fields=fields)
    shown = problems[:jsonbody.MAX_ERRORS]
    details = shown + ([f"... and {total - len(shown):,} more"] if total > len(shown) else [])
    return UsageError(f"{total:,} problems in the request:\n" + jsonbody.summary(shown, total, "\n"), details=details,
                      fields=fields[:jsonbody.MAX_ERRORS])


def bounded(body: dict) -> dict:
    """An error answer cut to size: at most MAX_ERRORS details and fields (and the count of the rest), a message
    of at most MAX_ERRORS lines and 16 KiB. Whatever a request holds, its error answer stays small."""
    body = dict(body)
    message = body.get("message")
    if isinstance(message, str):
        lines = message.split("\n")
        if len(lines) > jsonbody.MAX_ERRORS + 1:  # a heading ("N problems ...:") and 20 problems
            kept = jsonbody.MAX_ERRORS + 1
            message = "\n".join(lines[:kept]) + f"\n... and {len(lines) - kept:,} more"
        if len(message) > _MAX_MESSAGE:
            message = message[:_MAX_MESSAGE] + f"... ({len(message) - _MAX_MESSAGE:,} more characters)"
        body["message"] = message
    for key in ("details", "fields"):
        items = body.get(key)
        if isinstance(items, list) and len(items) > jsonbody.MAX_ERRORS + 1:  # one more: an "... and N more"
            body[key] = items[:jsonbody.MAX_ERRORS]
            if key == "details":
                body[key].append(f"... and {len(items) - jsonbody.MAX_ERRORS:,} more")
    return body


async def _read(request: Request) -> bytes:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_JSON_BODY:
        raise _too_large()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_JSON_BODY:
            raise _too_large()
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # Request.body() and .stream() give it again, as Starlette caches it itself
    return body


def _too_large() -> TooLarge:
    return TooLarge(f"request body is larger than the API's limit of {MAX_JSON_BODY:,} bytes "
                    "(a model folder goes to POST /api/uploads, which takes archives of up to 10 GiB)")


def _is_json(request: Request) -> bool:
    """Whether FastAPI reads this body as JSON: no Content-Type, or application/json or */*+json."""
    content_type = request.headers.get("content-type")
    if not content_type:
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def _request_model(endpoint: Callable) -> type[BaseModel] | None:
    """The pydantic model a route takes as its body (the one parameter annotated with one), or None."""
    try:
        hints = typing.get_type_hints(endpoint)
    except Exception:  # an annotation that does not resolve here: FastAPI alone validates that route
        return None
    for name, hint in hints.items():
        if name != "return" and isinstance(hint, type) and issubclass(hint, BaseModel):
            return hint
    return None


def _executor(request: Request) -> concurrent.futures.ThreadPoolExecutor:
    """One thread per app for large bodies: hostile bodies wait for each other instead of taking every core."""
    state = request.app.state
    executor = getattr(state, "body_checks", None)
    if executor is None:
        executor = state.body_checks = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="body-check")
    return executor

