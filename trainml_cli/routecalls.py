"""How a route is called from outside: the ready-to-paste curl line printed for a running endpoint (by `job
create`, `job connect` and the dashboard's Connect page), the same call in Python (requests) and through `trainml
job call` (the Connect page shows the three), and the mark by which an endpoint's /openapi.json says
a route streams. A leaf: the CLI, the SDK, the dashboard and the runtime share it.
"""

from __future__ import annotations

import json

from .routespec import Route

# On an operation of an endpoint's /openapi.json whose function is a generator (known once its code has loaded):
# clients read it to stream (curl -N in the examples printed for a running endpoint).
STREAM_FLAG = "x-trainml-stream"


def streaming_labels(document) -> set[str]:
    """The labels ("POST /generate") of the operations an endpoint's /openapi.json flags as streaming."""
    paths = document.get("paths", {}) if isinstance(document, dict) else {}
    return {f"{verb.upper()} {path}" for path, operations in paths.items() if isinstance(operations, dict)
            for verb, operation in operations.items() if isinstance(operation, dict) and operation.get(STREAM_FLAG)}


def curl_command(url: str, route: Route, key: str | None = None, streams: bool = False) -> str:
    """A ready-to-paste curl call with an example value of the right type for every param (and the endpoint's
    key, for an endpoint that has one); `curl -N` for a streaming route, so each item shows as it comes."""
    import shlex
    from urllib.parse import urlencode

    target = url.rstrip("/") + route.path
    example = route.example_body()
    auth = f" -H {shlex.quote('Authorization: Bearer ' + key)}" if key else ""
    if route.takes_body and any(p.type == "file" for p in route.body):  # multipart: -F name=@file per file
        parts = []
        for p in route.body:
            value = example[p.name]
            if p.type == "file":
                parts.append(f"-F {shlex.quote(f'{p.name}=@{p.name}.bin')}")
            else:
                text = json.dumps(value) if isinstance(value, (dict, list, bool)) else str(value)
                flag = "--form-string" if text[:1] in "@<" else "-F"  # -F would read a file for @ and <
                parts.append(f"{flag} {shlex.quote(f'{p.name}={text}')}")
        return f"curl {'-N ' if streams else ''}-X {route.verb} {shlex.quote(target)}{auth} {' '.join(parts)}"
    if route.takes_body:
        body = json.dumps(example)
        return (f"curl {'-N ' if streams else ''}-X {route.verb} {shlex.quote(target)}{auth} "
                "-H 'Content-Type: application/json' "
                f"-d {shlex.quote(body)}")
    if example:
        target += "?" + urlencode(query_values(example))
    verb = "" if route.verb == "GET" else f"-X {route.verb} "
    return f"curl {'-N ' if streams else ''}{verb}{shlex.quote(target)}{auth}"


def query_values(example: dict) -> dict:
    # The runtime reads query values as text: JSON for dict/list, lower-case true/false for bool.
    return {k: json.dumps(v) if isinstance(v, (dict, list, bool)) else v for k, v in example.items()}


def python_snippet(url: str, route: Route, key: str | None = None, streams: bool = False) -> str:
    """The same call as `curl_command`, in Python with requests: ready to paste into a script."""
    target = url.rstrip("/") + route.path
    example = route.example_body()
    args = [repr(target)]
    opened = []
    if route.takes_body and any(p.type == "file" for p in route.body):
        files = {p.name: f"{p.name}.bin" for p in route.body if p.type == "file"}
        fields = {p.name: example[p.name] if isinstance(example[p.name], str) else json.dumps(example[p.name])
                  for p in route.body if p.type != "file"}
        opened = [f"    {name!r}: open({path!r}, 'rb')," for name, path in files.items()]
        if fields:
            args.append(f"data={fields!r}")
        args.append("files=files")
    elif route.takes_body:
        args.append(f"json={example!r}")
    elif example:
        args.append(f"params={query_values(example)!r}")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if streams:
        headers["Accept"] = "text/event-stream"
    if headers:
        args.append(f"headers={headers!r}")
    args.append("stream=True" if streams else "timeout=60")
    lines = ["import requests", ""]
    if opened:
        lines += ["files = {", *opened, "}"]
    call = f"requests.{route.verb.lower()}("
    lines.append(f"response = {call}" + f",\n{' ' * (len(call) + 11)}".join(args) + ")")
    lines.append("response.raise_for_status()")
    if streams:
        lines += ["for line in response.iter_lines():", "    print(line.decode())"]
    else:
        lines.append("print(response.json())")
    return "\n".join(lines)


def cli_command(job: str, route: Route, streams: bool = False) -> str:
    """The same call as `curl_command` through the CLI (`trainml job call`), which finds the URL and the key."""
    import shlex

    example = route.example_body()
    parts = ["trainml job call", shlex.quote(job), shlex.quote(f"{route.verb} {route.path}")]
    files = [p.name for p in route.body if p.type == "file"] if route.takes_body else []
    data = {k: v for k, v in example.items() if k not in files}
    if data:
        parts.append(f"-d {shlex.quote(json.dumps(data))}")
    parts += [f"-f {shlex.quote(f'{name}=@{name}.bin')}" for name in files]
    if streams:
        parts.append("--stream")
    return " ".join(parts)
