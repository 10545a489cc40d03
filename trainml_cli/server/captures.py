"""A job's captured calls, read from the JSONL segments its endpoint writes (runtime/capture.py), and replayed.

The endpoint's processes write `<job folder>/requests/*.jsonl`; the control plane only reads them, so what was
captured survives a control-plane restart and goes away with the job's folder. Entries come oldest first (by
their time), filtered by status (`200`, `4xx`, `5xx`), route (`/predict` or `POST /predict`) and age (`10m`,
`2h`, `1d`, or an ISO time); `{"dropped": N}` lines (the writer was behind) are summed, not listed.

A replay sends a captured JSON request again to the serving endpoint (with its key, when it has one) and answers
both the captured answer and the new one, and whether they differ. A request whose body was cut, or a multipart
one (its files were never kept), cannot be sent again: 409 saying why.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from ..capturequery import check_status, matches, since_time
from ..errors import Conflict, NotFound
from ..launchspec import CAPTURE_FOLDER

MAX_PAGE = 1000


def folder(workdir: Path) -> Path:
    return workdir / CAPTURE_FOLDER


def read(workdir: Path, *, status: str | None = None, route: str | None = None, since: str | None = None,
         tail: int = 100) -> dict:
    """{requests: the last `tail` entries that match, oldest first; dropped: calls the writer could not keep}."""
    status, since = check_status(status), since_time(since)
    found: list[dict] = []
    dropped = 0
    where = folder(workdir)
    segments = sorted(where.glob("*.jsonl")) if where.is_dir() else []
    for segment in segments:
        try:
            lines = segment.read_text(encoding="utf-8", errors="replace").split("\n")  # JSONL: only \n ends a line
        except FileNotFoundError:  # removed as the oldest while we listed
            continue
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:  # a line being written
                continue
            if not isinstance(entry, dict):  # a piece of a line an older writer let a body split (U+2028)
                continue
            if "dropped" in entry and "id" not in entry:
                dropped += int(entry["dropped"])
            elif matches(entry, status, route, since):
                found.append(entry)
    found.sort(key=lambda entry: entry.get("time", ""))
    return {"requests": found[-tail:] if tail else found, "dropped": dropped}


def find(workdir: Path, request_id: str) -> dict:
    for entry in read(workdir, tail=0)["requests"]:
        if entry.get("id") == request_id:
            return entry
    raise NotFound(f"no captured call has the id {request_id!r} (capture keeps the calls sampled by --capture)")


def replay_request(entry: dict) -> tuple[str, str, bytes | None]:
    """(verb, path with its query, JSON body) to send again; Conflict when the capture cannot be sent."""
    verb, _, path = entry["route"].partition(" ")
    request = entry.get("request")
    if isinstance(request, dict) and "files" in request and "fields" in request:
        raise Conflict(f"call {entry['id']} was a multipart upload: its files were not kept, so it cannot be sent "
                       "again")
    if isinstance(request, str) and "…[cut at " in request:
        raise Conflict(f"call {entry['id']}'s body was cut at --capture-max-bytes, so it cannot be sent again")
    query = entry.get("query")
    body = None if request is None else json.dumps(request).encode()
    return verb, path + (f"?{query}" if query else ""), body


# What "Copy as curl" puts where a keyed endpoint's key goes: a shell variable the reader sets, never the key.
KEY_VARIABLE = "ENDPOINT_KEY"


def curl_command(entry: dict, url: str, keyed: bool) -> str:
    """The captured call as a curl command line, sending what a replay sends; a keyed endpoint's key as
    $ENDPOINT_KEY (double-quoted, so the shell fills it in). Conflict when the call cannot be sent again."""
    import shlex

    verb, path, body = replay_request(entry)
    parts = ["curl"] + ([] if verb == "GET" and body is None else ["-X", verb]) + [shlex.quote(url.rstrip("/") + path)]
    if keyed:
        parts += ["-H", f'"Authorization: Bearer ${KEY_VARIABLE}"']
    if body is not None:
        parts += ["-H", "'Content-Type: application/json'", "-d", shlex.quote(body.decode())]
    return " ".join(parts)


async def replay(entry: dict, url: str, key: str | None, verify) -> dict:
    """Send a captured call again; {id, route, request, old: {status, response}, new: {status, response, id},
    differ}."""
    verb, path, body = replay_request(entry)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if key:
        headers["Authorization"] = f"Bearer {key}"

    def send():
        import requests

        return requests.request(verb, url.rstrip("/") + path, data=body, headers=headers, timeout=120,
                                verify=verify)

    try:
        answer = await asyncio.to_thread(send)
    except Exception as exc:  # the endpoint is not answering: say so, as one line
        raise Conflict(f"the endpoint at {url} did not answer the replay: {type(exc).__name__}: {exc}") from None
    try:
        response = answer.json()
    except ValueError:
        response = answer.text
    if isinstance(response, dict):
        response.pop("request_id", None)  # a new call's id, not part of what it answered
    old = entry.get("response")
    if isinstance(old, dict):
        old = {k: v for k, v in old.items() if k != "request_id"}
    new = {"status": answer.status_code, "response": response, "id": answer.headers.get("x-request-id")}
    return {"id": entry["id"], "route": entry["route"], "request": entry.get("request"),
            "old": {"status": entry.get("status"), "response": old}, "new": new,
            "differ": (entry.get("status"), old) != (answer.status_code, response)}
