"""`client.jobs` and `Job`: endpoint jobs as trainML's SDK shapes them, against the local control plane.

    job = await client.jobs.create("sentiment", model={"source_type": "local", "source_uri": "examples/sentiment"},
                                   endpoint={"routes": [...]}, wait=True)
    print(job.url); await job.call("/predict", {"text": "great"})
    async for line in job.logs(follow=True): ...

Routes are checked here before anything is sent (RouteSpecError) and again by the server (422).
`wait_for` long-polls the server, so it learns of a status change at once; `logs(follow=True)` long-polls too
(`after=cursor&wait=...`), which survives a restart of the control plane without losing or repeating lines.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import quote

from ..environment import check_environment, check_requirements_file
from ..errors import Conflict, JobFailed, TrainMLError, Unavailable, UsageError, WaitTimeout
from ..routespec import check_route_files, parse_routes

STATUSES = ("new", "waiting for data/model download", "waiting for resources", "starting", "running", "stopping",
            "stopped", "failed")
LONG_POLL = 25.0  # seconds per wait request; the server caps it at 60
LOG_PAGE = 1000
CALL_RETRIES = 8


class Job:
    """One job; its attributes reflect the record as of the last create, get, refresh or wait."""

    def __init__(self, client, record: dict):
        self._client = client
        self.dict = record

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.name!r} {self.status}>"

    id = property(lambda self: self.dict["id"])
    name = property(lambda self: self.dict["name"])
    status = property(lambda self: self.dict["status"])
    url = property(lambda self: self.dict.get("url"))
    credits = property(lambda self: self.dict.get("credits", 0.0))
    restarts = property(lambda self: self.dict.get("restarts", 0))
    reason = property(lambda self: self.dict.get("reason"))

    @property
    def _path(self) -> str:
        return f"/api/jobs/{quote(self.id, safe='')}"

    async def connection(self) -> dict:
        """{url, routes, auth, key}: how to call the endpoint; `key` is its endpoint key (None without one)."""
        return await self._client.http.request("GET", self._path + "/connect")

    async def rotate_key(self) -> dict:
        """A new endpoint key (the old one stops working within a second); returns connection()'s answer."""
        return await self._client.http.request("POST", self._path + "/rotate-key")

    async def refresh(self) -> "Job":
        self.dict = await self._client.http.request("GET", self._path)
        return self

    async def wait_for(self, status: str, timeout: float = 300) -> "Job":
        """Return once the job has `status`. JobFailed if it fails instead, Conflict if it stops instead,
        WaitTimeout after `timeout` seconds."""
        if status not in STATUSES:
            raise UsageError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        deadline = time.monotonic() + timeout
        while True:
            if self.status == status:
                return self
            if self.status == "failed":
                raise await self._failed()
            if self.status == "stopped":
                raise Conflict(f"job {self.name} is stopped, so it will not become {status}; start it first")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(f"job {self.name} is still {self.status} after {timeout:g}s (waiting for {status})")
            poll = min(remaining, LONG_POLL)
            self.dict = await self._client.http.request(
                "GET", self._path + "/wait", params={"status": status, "timeout": poll}, timeout=poll + 15
            )

    async def _failed(self) -> JobFailed:
        lines = []
        try:
            lines = [entry["message"] async for entry in self.logs(tail=10)]
        except TrainMLError:
            pass
        return JobFailed(f"job {self.name} failed: {self.reason or 'no reason recorded'}", details=lines)

    async def stop(self, wait: bool = True) -> None:
        self.dict = await self._client.http.request("POST", self._path + "/stop")
        if wait and self.status not in ("stopped", "failed"):
            await self.wait_for("stopped", timeout=120)

    async def start(self) -> None:
        self.dict = await self._client.http.request("POST", self._path + "/start")

    async def remove(self, force: bool = False) -> None:
        await self._client.http.request("DELETE", self._path, params={"force": "true" if force else "false"}, timeout=120)

    async def logs(self, follow: bool = False, tail: int | None = None) -> AsyncIterator[dict]:
        """Log entries {id, time, stream, message}, oldest first: the last `tail` (all when None), then with
        `follow` each new one as it comes, until the job is stopped or failed (or removed)."""
        http, path = self._client.http, self._path + "/logs"
        history: list[dict] = []
        before = None
        while tail is None or len(history) < tail:
            limit = LOG_PAGE if tail is None else min(LOG_PAGE, tail - len(history))
            params = {"limit": limit, **({"before": before} if before is not None else {})}
            page = await http.request("GET", path, params=params)
            history += page["logs"]
            before = page["next"]
            if before is None:
                break
        history.reverse()
        cursor = history[-1]["id"] if history else 0
        for entry in history:
            yield entry
        if not follow:
            return
        if tail == 0:  # no history wanted: follow from the newest line on
            page = await http.request("GET", path, params={"limit": 1})
            cursor = page["logs"][0]["id"] if page["logs"] else 0
        while True:
            try:
                page = await http.request("GET", path, params={"after": cursor, "wait": LONG_POLL, "limit": LOG_PAGE},
                                          timeout=LONG_POLL + 15)
            except TrainMLError as exc:
                if exc.http_status == 404:  # removed while followed
                    return
                raise
            for entry in page["logs"]:
                yield entry
            cursor = page["last"]
            if page["done"]:
                return

    async def call(self, route_path_or_label: str, data: dict | None = None, verb: str | None = None) -> Any:
        """Call one of the endpoint's routes ("/predict" or "POST /predict") with `data`; its decoded answer.
        503 (busy, restarting) is retried with backoff."""
        route = self._route(route_path_or_label, verb)
        if not self.url:
            await self.refresh()
        if not self.url:
            raise Conflict(f"job {self.name} is {self.status}; it has a URL only while running")
        url = self.url
        key = None
        if (self.dict.get("endpoint") or {}).get("auth"):
            key = (await self.connection()).get("key")
        try:
            return await asyncio.to_thread(_call, self._client.http, url, route, data or {}, key)
        except Unavailable:
            # A control plane restart may have had to move the endpoint to another port.
            if (await self.refresh()).url in (None, url):
                raise
            return await asyncio.to_thread(_call, self._client.http, self.url, route, data or {}, key)

    def _route(self, text: str, verb: str | None):
        raws = (self.dict.get("endpoint") or {}).get("routes") or []
        routes = parse_routes(raws) if raws else []
        wanted_verb, _, wanted_path = text.strip().rpartition(" ")
        wanted_verb = (wanted_verb or verb or "").upper()
        found = [r for r in routes if r.path == wanted_path and (not wanted_verb or r.verb == wanted_verb)]
        if len(found) == 1:
            return found[0]
        labels = ", ".join(r.label for r in routes) or "none"
        if not found:
            raise UsageError(f"job {self.name} has no route {text!r} (its routes: {labels})")
        raise UsageError(f"{wanted_path} has several verbs ({', '.join(r.verb for r in found)}); give one, e.g. 'POST {wanted_path}'")


def _call(http, url: str, route, data: dict, key: str | None = None) -> Any:
    import requests

    from .http import backoff, raise_for

    target = url.rstrip("/") + route.path
    if route.takes_body:
        request = {"json": data}
    else:  # the runtime reads query values as text: JSON for dicts, lists and booleans
        request = {"params": {k: json.dumps(v) if isinstance(v, (dict, list, bool)) else v for k, v in data.items()}}
    if key:
        request["headers"] = {"Authorization": f"Bearer {key}"}
    session = http.session
    for attempt in range(CALL_RETRIES):
        try:
            response = session.request(route.verb, target, timeout=(http.settings.connect_timeout, None),
                                       verify=http.verify, **request)
        except requests.exceptions.SSLError as exc:
            from .http import untrusted

            raise Unavailable(untrusted(f"the endpoint of job {route.label}", url, exc)) from None
        except requests.ConnectionError as exc:
            if attempt == CALL_RETRIES - 1:
                raise Unavailable(f"{route.label}: cannot reach the endpoint at {url}: {exc}") from None
            time.sleep(backoff(attempt + 2))
            continue
        if response.status_code == 503 and attempt < CALL_RETRIES - 1:
            time.sleep(backoff(attempt + 2, response.headers.get("Retry-After")))
            continue
        break
    raise_for(response, route.label)
    if "json" in response.headers.get("content-type", ""):
        return response.json()
    return response.content


class Jobs:
    def __init__(self, client):
        self._client = client

    async def create(self, name: str, type: str = "endpoint", *, model: dict, endpoint: dict,
                     resources: dict | None = None, environment: dict | None = None, python: str | None = None,
                     wait: bool = False) -> Job:
        """Create an endpoint job. `model`: {source_type: local|git|trainml, source_uri, git_ref?};
        `endpoint`: {routes, max_concurrency?, max_queue?}; `environment`: {env: [{key, value}],
        packages: {pip: [...]}, requirements?, python?, type?}; `python`: the interpreter ("3.12" or a path),
        short for environment.python. With `wait`, returns once it is running."""
        environment = dict(environment or {})
        if python is not None:
            environment["python"] = python
        check_environment(environment)  # refused packages and malformed requirements, before anything is sent
        endpoint = dict(endpoint or {})
        routes = parse_routes(endpoint.get("routes") or [])  # RouteSpecError before anything is sent
        model = dict(model or {})
        http = self._client.http
        if model.get("source_type") == "local":
            folder = Path(model.get("source_uri") or "").expanduser()
            check_route_files(routes, folder)
            check_requirements_file(environment, folder)
            upload = await self._client.upload(folder)
            model = {"source_type": "local", "source_uri": str(folder.resolve()), "upload_id": upload["id"]}
        elif model.get("source_type") == "git":
            model["source_uri"] = _file_uri(model.get("source_uri"))
        payload = {"name": name, "type": type, "model": model, "endpoint": endpoint}
        if resources:
            payload["resources"] = resources
        if environment:
            payload["environment"] = environment
        job = Job(self._client, await http.request("POST", "/api/jobs", json=payload))
        if wait:
            await job.wait_for("running")
        return job

    async def get(self, id_or_name: str) -> Job:
        return Job(self._client, await self._client.http.request("GET", f"/api/jobs/{quote(id_or_name, safe='')}"))

    async def list(self) -> list[Job]:
        return [Job(self._client, record) for record in await self._client.http.request("GET", "/api/jobs")]

    async def remove(self, id_or_name: str, force: bool = False) -> None:
        await (await self.get(id_or_name)).remove(force=force)


def _file_uri(uri):
    """A repository given as a local path is cloned by the server as a file:// URI."""
    if isinstance(uri, str) and uri.startswith("/") and Path(uri).exists():
        return Path(uri).resolve().as_uri()
    return uri
