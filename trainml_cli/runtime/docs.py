"""The endpoint's own documentation: an OpenAPI document and a /docs page that needs no internet.

Built at the first ask from the routes and their body models (pydantic's, for their JSON schema: the same
template binding.py validates with pydantic-core), then served as bytes.
"""

from __future__ import annotations

import html
import json
from typing import Annotated, Any, Optional

from .. import __version__
from ..paramspec import Param
from ..routecalls import STREAM_FLAG
from ..routespec import Route
from .binding import choice_check

ANNOTATIONS: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "dict": dict[str, Any],
    "list": list[Any],
    "file": str,
}
_SCHEMA_TYPES = {"str": "string", "int": "integer", "float": "number"}


def annotation(param: Param) -> Any:
    """The pydantic type of a param's value (binding.value_schema's counterpart)."""
    from pydantic import AfterValidator, WithJsonSchema

    if param.items is not None:
        return list[ANNOTATIONS[param.items]]  # type: ignore[misc]
    if param.choices is None:
        return ANNOTATIONS[param.type]
    schema = {"type": _SCHEMA_TYPES[param.type], "enum": list(param.choices)}
    return Annotated[ANNOTATIONS[param.type], AfterValidator(choice_check(param)), WithJsonSchema(schema)]


def body_model(route: Route):
    """The route's body as a pydantic model (binding.body_schema's counterpart). Fields use internal names with
    the user's names as aliases, so a param called `model_config` or `schema` cannot collide with pydantic's own
    attributes."""
    from pydantic import ConfigDict, Field, create_model

    fields: dict[str, Any] = {}
    for index, param in enumerate(route.body):
        kind = annotation(param)
        if param.optional:
            fields[f"p{index}"] = (Optional[kind], Field(default=param.default, alias=param.name))
        else:
            fields[f"p{index}"] = (kind, Field(alias=param.name))
    name = "".join(part.capitalize() for part in route.function.split("_")) + "Body"
    return create_model(name, __config__=ConfigDict(extra="forbid", allow_inf_nan=False), **fields)


def body_json_schema(route: Route) -> dict:
    return body_model(route).model_json_schema(by_alias=True)


ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
    "required": ["error", "message"],
}
INVALID_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {"const": "invalid_request"},
        "message": {"type": "string", "description": "every problem listed, at most 20, then '... and N more'"},
        "detail": {"type": "array", "maxItems": 20, "items": {
            "type": "object", "required": ["loc", "msg", "type"],
            "properties": {"loc": {"type": "array"}, "msg": {"type": "string"}, "type": {"type": "string"}},
        }},
    },
    "required": ["error", "message", "detail"],
}
READY_SCHEMA = {"type": "object", "properties": {"status": {"type": "string"}}, "required": ["status"]}


def _responses(route: Route, auth: bool) -> dict:
    """Every status the runtime answers for a route, so a client (or a fuzzer) knows them all."""
    error = {"content": _json_ref("Error")}
    responses = {
        "200": _ok(route),
        "422": {"description": "The request does not fit the body template, or holds a non-finite number",
                "content": _json_ref("InvalidRequest")},
        "500": {"description": "The function raised (error: model_error, with the exception's type)", **error},
        "503": {"description": "Overloaded or still loading; retry after Retry-After seconds", **error},
        "504": {"description": "The call ran longer than the endpoint's timeout", **error},
    }
    if route.takes_body:
        responses["413"] = {"description": "The body is larger than the endpoint's --max-body-size", **error}
        responses["415"] = {"description": "The body is not sent as application/json (or */*+json), or as "
                            "multipart/form-data for a route with file params", **error}
    if auth:
        responses["401"] = {"description": "No 'Authorization: Bearer KEY' with the endpoint's key", **error}
    return responses


def _ok(route: Route) -> dict:
    if route.content_type is not None:
        return {"description": f"The function's bytes (or the file at the Path it returned) as {route.content_type}",
                "content": {route.content_type: {"schema": {"type": "string", "format": "binary"}}}}
    return {"description": "The function's return value as JSON; bytes as application/octet-stream; a returned "
                           "Path as that file, with the content type its suffix implies"}


STREAM_DESCRIPTION = (
    "Streams: the function is a generator, and each item it yields is sent as soon as it is yielded. "
    "With 'Accept: text/event-stream', Server-Sent Events: one 'data: <JSON>' event per item, then 'event: end'. "
    "Otherwise NDJSON (application/x-ndjson): one JSON value per line; the response ends after the last item. "
    "A failure after the first item ends the stream with 'event: error' (SSE) or a last line "
    '{"error": "model_error", ...} (NDJSON); before it, the usual JSON 500.'
)


def openapi_document(title: str, routes: list[tuple[Route, dict]], auth: bool = False,
                     streaming: frozenset = frozenset()) -> dict:
    """`routes` pairs each Route with the JSON Schema of its body model; `streaming` holds the labels of the routes
    whose function is a generator (known once the code has loaded)."""
    paths: dict = {}
    components: dict = {"Error": ERROR_SCHEMA, "InvalidRequest": INVALID_SCHEMA}
    for route, schema in routes:
        defs = schema.pop("$defs", {})
        components.update(defs)
        operation_id = f"{route.verb.lower()}_{route.path.strip('/').replace('/', '_') or 'root'}"
        name = schema.get("title", route.function)
        if name in components:  # two routes may call the same function with different templates
            name = f"{name}_{operation_id}"
        components[name] = schema
        operation: dict = {
            "summary": f"{route.function}() from {route.relative_file}",
            "operationId": operation_id,
            "responses": _responses(route, auth),
        }
        if route.batch is not None:  # clients send one request's body; batching is the server's business
            operation["description"] = (
                f"Batched: up to {route.batch.max_size} requests are answered by one call of the function "
                f"(waiting up to {route.batch.max_wait_ms:g} ms to fill a batch). Each request has its own body "
                "and gets its own answer."
            )
        if route.label in streaming:
            operation[STREAM_FLAG] = True
            operation["description"] = STREAM_DESCRIPTION
            operation["responses"]["200"] = {
                "description": "The items, one at a time, as they are yielded",
                "content": {
                    "text/event-stream": {"schema": {"type": "string"}},
                    "application/x-ndjson": {"schema": {"type": "string"}},
                },
            }
        if route.takes_body:
            operation["requestBody"] = {"required": bool(route.body), "content": _json_ref(name)}
            if any(p.type == "file" for p in route.body):
                for param in route.body:
                    if param.type == "file":
                        schema["properties"][param.name].update(FILE_IN_JSON)
                operation["requestBody"]["content"] = {"multipart/form-data": {"schema": _form_schema(route)},
                                                       **_json_ref(name)}
        else:
            operation["parameters"] = [_query_parameter(p, schema) for p in route.body]
        paths.setdefault(route.path, {})[route.verb.lower()] = operation
    ready = {"description": "ready", "content": {"application/json": {"schema": READY_SCHEMA}}}
    loading = {"description": "loading", "content": {"application/json": {"schema": READY_SCHEMA}}}
    paths["/ping"] = {
        "get": {
            "summary": "Readiness: 200 once the model code is loaded, 503 while loading (never needs a key)",
            "responses": {"200": ready, "503": loading},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": __version__},
        "paths": paths,
        "components": {"schemas": components},
    }


FILE_IN_JSON = {"contentEncoding": "base64",
                "description": "The file's bytes in base64, or a data: URL (data:image/png;base64,...)"}
_FORM_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}


def _form_schema(route: Route) -> dict:
    """A multipart/form-data body: one part per file param (binary), the others as form fields (text; dict and
    list params as JSON text)."""
    properties = {}
    for param in route.body:
        if param.type == "file":
            properties[param.name] = {"type": "string", "format": "binary"}
        elif param.type in _FORM_TYPES:
            properties[param.name] = {"type": _FORM_TYPES[param.type]}
        else:
            properties[param.name] = {"type": "string", "contentMediaType": "application/json"}
        if param.optional and param.default is not None:
            properties[param.name]["default"] = param.default
    required = [p.name for p in route.body if not p.optional]
    return {"type": "object", "properties": properties, **({"required": required} if required else {})}


def _upload_form(path: str, verb: str, form: dict) -> str:
    """A form that sends a file route's multipart body from this page (an endpoint with a key answers it 401:
    a form cannot send the Authorization header)."""
    inputs = []
    for name, spec in form.get("properties", {}).items():
        kind = "file" if spec.get("format") == "binary" else "text"
        label = html.escape(name) + ("" if name in form.get("required", ()) else " (optional)")
        inputs.append(f'<label>{label} <input type="{kind}" name="{html.escape(name)}"></label><br>')
    return (f'<form method="post" action="{html.escape(path)}" enctype="multipart/form-data">'
            + "".join(inputs) + f'<button type="submit">Send ({verb.upper()} as a form)</button></form>')


def _query_parameter(param, schema: dict) -> dict:
    """A query parameter; dict and list params travel as JSON text, which OpenAPI says with `content`."""
    spec = {"name": param.name, "in": "query", "required": not param.optional}
    property_schema = schema.get("properties", {}).get(param.name, {})
    if param.type in ("dict", "list"):
        spec["content"] = {"application/json": {"schema": property_schema}}
    else:
        spec["schema"] = property_schema
    return spec


def _json_ref(name: str) -> dict:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}


def docs_page(document: dict) -> str:
    """A plain page listing every operation with its schema (Swagger UI would need a CDN)."""
    sections = []
    for path, operations in document["paths"].items():
        for verb, op in operations.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                ref = body["$ref"].rsplit("/", 1)[-1]
                detail = json.dumps(document["components"]["schemas"][ref], indent=2)
            elif op.get("parameters"):
                detail = json.dumps(op["parameters"], indent=2)
            else:
                detail = ""
            sections.append(
                f"<section><h2><code>{verb.upper()} {html.escape(path)}</code></h2>"
                f"<p>{html.escape(op.get('summary', ''))}</p>"
                + (f"<p><strong>{html.escape(op['description'])}</strong></p>" if op.get(STREAM_FLAG) else "")
                + (f"<pre>{html.escape(detail)}</pre>" if detail else "")
                + (_upload_form(path, verb, op["requestBody"]["content"]["multipart/form-data"]["schema"])
                   if verb == "post" and "multipart/form-data" in op.get("requestBody", {}).get("content", {}) else "")
                + "</section>"
            )
    title = html.escape(document["info"]["title"])
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{title}</title><style>body{{font:15px system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
        "padding:0 1rem}pre{background:#f4f4f4;padding:1rem;overflow:auto}</style></head><body>"
        f"<h1>{title}</h1><p>OpenAPI document: <a href='/openapi.json'>/openapi.json</a></p>"
        + "".join(sections)
        + "</body></html>"
    )
