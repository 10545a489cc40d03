"""The endpoint's own documentation: an OpenAPI document and a /docs page that needs no internet.

Built once at start from the routes and their body models, then served as bytes.
"""

from __future__ import annotations

import html
import json

from .. import __version__
from ..routespec import Route

ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
    "required": ["error", "message"],
}


def openapi_document(title: str, routes: list[tuple[Route, dict]]) -> dict:
    """`routes` pairs each Route with the JSON Schema of its body model."""
    paths: dict = {}
    components: dict = {"Error": ERROR_SCHEMA}
    for route, schema in routes:
        defs = schema.pop("$defs", {})
        components.update(defs)
        name = schema.get("title", route.function)
        components[name] = schema
        operation: dict = {
            "summary": f"{route.function}() from {route.relative_file}",
            "operationId": f"{route.verb.lower()}_{route.path.strip('/').replace('/', '_') or 'root'}",
            "responses": {
                "200": {"description": "The function's return value as JSON"},
                "422": {"description": "The request does not fit the body template"},
                "500": {"description": "The function raised", "content": _json_ref("Error")},
                "503": {"description": "Overloaded or still loading; retry after Retry-After seconds"},
                "504": {"description": "The call ran longer than the endpoint's timeout"},
            },
        }
        if route.batch is not None:  # clients send one request's body; batching is the server's business
            operation["description"] = (
                f"Batched: up to {route.batch.max_size} requests are answered by one call of the function "
                f"(waiting up to {route.batch.max_wait_ms:g} ms to fill a batch). Each request has its own body "
                "and gets its own answer."
            )
        if route.takes_body:
            operation["requestBody"] = {"required": bool(route.body), "content": _json_ref(name)}
        else:
            operation["parameters"] = [
                {
                    "name": p.name,
                    "in": "query",
                    "required": not p.optional,
                    "schema": schema.get("properties", {}).get(p.name, {}),
                }
                for p in route.body
            ]
        paths.setdefault(route.path, {})[route.verb.lower()] = operation
    paths["/ping"] = {
        "get": {
            "summary": "Readiness: 200 once the model code is loaded, 503 while loading",
            "responses": {"200": {"description": "ready"}, "503": {"description": "loading"}},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": __version__},
        "paths": paths,
        "components": {"schemas": components},
    }


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
                + (f"<pre>{html.escape(detail)}</pre>" if detail else "")
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
