"""The control plane's /openapi.json, with every error status an operation can answer.

FastAPI documents what a route declares (its 2xx and the 422 of its own validation), but the error handlers in
app.py answer 401, 404, 409, 413, 422 and 503 for any route: a missing token, an unknown job, a job in the wrong
status. A client generated from the document, and the schemathesis run in CI (tests/test_fuzz.py), need them
all, each with the one error body `{"error", "message", "details"?, "fields"?}` (errors.py). Added once here,
when the document is first built, instead of on every route.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from .bodies import MAX_JSON_BODY

ERROR = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "the kind: unauthorized, not_found, conflict, invalid, ..."},
        "message": {"type": "string"},
        "details": {"type": "array"},
        "fields": {"type": "array", "description": "a 422's problems with where each is: {field, message}, and "
                                                   "route (its index) for a route's",
                   "items": {"type": "object"}},
    },
    "required": ["error", "message"],
}
_REF = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
COMMON = {
    "400": "The request could not be read",
    "404": "No such job, model or environment (or no such route)",
    "409": "The job, model or environment is in a state that does not allow this (e.g. running), or a name "
           "matches several jobs",
    "422": "The request does not fit: every problem named",
    "503": "The control plane is not ready, or a resource it needs is busy",
}
NEEDS_TOKEN = "401"
TOO_LARGE = f"The JSON body is larger than the API's limit of {MAX_JSON_BODY:,} bytes (bodies.py)"
OPEN = frozenset({"/api/health", "/metrics"})


def install(app: FastAPI) -> None:
    def openapi() -> dict:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description,
                                   routes=app.routes)
            document.setdefault("components", {}).setdefault("schemas", {})["ErrorBody"] = ERROR
            for path, operations in document.get("paths", {}).items():
                for operation in operations.values():
                    responses = operation.setdefault("responses", {})
                    if path in OPEN:
                        continue
                    for status, description in COMMON.items():
                        responses.setdefault(status, {"description": description, "content": _REF})
                    responses.setdefault(NEEDS_TOKEN, {"description": "No valid 'Authorization: Bearer TOKEN' "
                                                       "(the API token, TRAINML_HOME/token)", "content": _REF})
                    if operation is operations.get("post") and path == "/api/uploads":
                        responses.setdefault("413", {"description": "The upload is larger than allowed",
                                                     "content": _REF})
                    elif any(operation is operations.get(verb) for verb in ("post", "put", "patch")):
                        responses.setdefault("413", {"description": TOO_LARGE, "content": _REF})
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi
