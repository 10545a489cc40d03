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
import threading
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from ..errors import Conflict, NotFound, TrainMLError, Unavailable, UsageError, WaitTimeout
from ..hints import shell_quote
from ..routecalls import streaming_labels
from ..routespec import parse_routes
from ..states import JobStatus
from .captures import JobRequests
from .joblogs import JobLog
from .jobpayload import create_payload
from .revisions import JobRevisions
from .waits import ARCHIVED, job_target, reached, server_target

LONG_POLL = 25.0  # seconds per wait request; the server caps it at 60
CALL_RETRIES = 8


class Job(JobLog, JobRevisions, JobRequests):
    """One job; its attributes reflect the record as of the last create, get, refresh or wait."""

    def __init__(self, client, record: dict):
        self._client = client
        self.dict = record

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.name!r} {self.status}>"

    def __str__(self) -> str:  # trainML's: the record as JSON
        return json.dumps(self.dict)

    id = property(lambda self: self.dict["id"])
    name = property(lambda self: self.dict["name"])
    status = property(lambda self: self.dict["status"])
    type = property(lambda self: self.dict.get("type", "endpoint"))
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
        """A new endpoint key, once the endpoint takes it and refuses the old one (on Ray, the old one works until
        Serve has replaced the replicas); returns connection()'s answer."""
        return await self._client.http.request("POST", self._path + "/rotate-key")

    async def refresh(self) -> Job:
        self.dict = await self._client.http.request("GET", self._path)
        return self

    async def wait_for(self, status: str, timeout: float = 300, on_status=None) -> Job:
        """Return once the job has reached `status` or passed it, as trainML counts it (waits.py): at once when
        it already has; `finished` once stopped; `archived` once removed. JobError (JobFailed) if it fails,
        Conflict if it stops short of `status`, WaitTimeout after `timeout` seconds (at most a day).
        `on_status(job)` is called at each status the job passes."""
        target = job_target(status, timeout)
        deadline = time.monotonic() + timeout
        while True:
            if target != ARCHIVED:
                if reached(target, self.status):
                    return self
                if self.status == JobStatus.FAILED:
                    raise await self.failure()
                if self.status == JobStatus.STOPPED:
                    raise Conflict(f"job {self.name} is stopped, so it will not become {status}; "
                                   f"start it with `trainml job start {shell_quote(self.name)}`")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(f"job {self.name} is still {self.status} after {timeout:g}s (waiting for {status})")
            poll = min(remaining, LONG_POLL)
            # `since`: the answer comes at any change, and the rule above says whether it counts.
            params = {"status": server_target(target), "timeout": poll, "since": self.status}
            before = self.status
            try:
                self.dict = await self._client.http.request("GET", self._path + "/wait", params=params,
                                                            timeout=poll + 15)
            except NotFound:
                if target == ARCHIVED:
                    return self
                raise
            if on_status is not None and self.status != before:
                on_status(self)

    async def connect(self, timeout: float = 300) -> str:
        """trainML's `connect()` for an endpoint: its URL, once it is running (the local model was uploaded by
        create already)."""
        await self.wait_for(JobStatus.RUNNING, timeout)
        return self.url

    async def stop(self, wait: bool = True) -> Job:
        self.dict = await self._client.http.request("POST", self._path + "/stop")
        if wait and self.status not in (JobStatus.STOPPED, JobStatus.FAILED):
            await self.wait_for("stopped", timeout=120)
        return self

    async def start(self) -> Job:
        self.dict = await self._client.http.request("POST", self._path + "/start")
        return self

    async def remove(self, force: bool = False) -> None:
        params = {"force": "true" if force else "false"}
        await self._client.http.request("DELETE", self._path, params=params, timeout=120)

    async def call(self, route_path_or_label: str, data: dict | None = None, verb: str | None = None,
                   files: dict | None = None) -> Any:
        """Call one of the endpoint's routes ("/predict" or "POST /predict") with `data`; its decoded answer.
        `files` ({"image": "cat.jpg"}) fills a route's file params: the call is then a multipart upload (forms.py).
        503 (busy, restarting) is retried with backoff. A failure raises the class of errors.py its kind names:
        ModelError (the function raised), CallTimeout, Overloaded, InvalidRequest (with `fields`), ..."""
        route = self._route(route_path_or_label, verb)
        body = _form(route, data, files)
        url, key = await self._target()
        try:
            return await asyncio.to_thread(_call, self._client.http, url, route, body or data or {}, key)
        except Unavailable:
            # A control plane restart may have had to move the endpoint to another port.
            if (await self.refresh()).url in (None, url):
                raise
            return await asyncio.to_thread(_call, self._client.http, self.url, route, body or data or {}, key)

    async def stream(self, route_path_or_label: str, data: dict | None = None,
                     verb: str | None = None, files: dict | None = None) -> AsyncIterator[Any]:
        """Call a streaming route (its function yields) and yield each item as it arrives:

            async for item in job.stream("/generate", {"prompt": "hi"}): ...

        A failure before the first item raises as `call` does; one after it (the function raised, or the wait for
        an item passed the endpoint's timeout) raises its class (ModelError, CallTimeout) after the items before
        it. Leaving the loop early closes the connection, and the endpoint closes the generator."""
        route = self._route(route_path_or_label, verb)
        body = _form(route, data, files)
        url, key = await self._target()
        loop = asyncio.get_running_loop()
        items: asyncio.Queue = asyncio.Queue()
        held: list = []  # the response, once the thread has it: closed from here when the caller stops early

        def put(kind, value=None):
            try:
                loop.call_soon_threadsafe(items.put_nowait, (kind, value))
            except RuntimeError:  # the caller's loop has ended (it stopped at an error): nobody to hand this to
                pass

        def pump():
            try:
                response = _send(self._client.http, url, route, body or data or {}, key, stream=True)
                held.append(response)
                with response:
                    from .http import raise_for

                    raise_for(response, route.label)
                    for event, payload in _events(response.iter_lines(chunk_size=None, decode_unicode=True)):
                        put(event, payload)
            except BaseException as exc:  # handed to the caller's task, raised there
                put("failed", exc)
            else:
                put("end")

        threading.Thread(target=pump, name="job-stream", daemon=True).start()
        try:
            while True:
                kind, value = await items.get()
                if kind == "message":
                    yield value
                elif kind == "end":
                    return
                elif kind == "failed":
                    raise value
                elif kind == "error":
                    raise TrainMLError.from_dict(value, 500, route.label)
        finally:
            if held:
                held[0].close()

    async def streaming_routes(self) -> set[str]:
        """The labels ("POST /generate") of the routes whose function yields, as the running endpoint's
        /openapi.json says once its code has loaded; empty when the endpoint cannot be asked."""
        if not self.url:
            return set()
        url, key = await self._target()
        return await asyncio.to_thread(_streaming_routes, self._client.http, url, key)

    async def _target(self) -> tuple[str, str | None]:
        """(URL, endpoint key or None) of the running endpoint."""
        if not self.url:
            await self.refresh()
        if not self.url:
            raise Conflict(f"job {self.name} is {self.status}; it has a URL only while running")
        key = None
        if (self.dict.get("endpoint") or {}).get("auth"):
            key = (await self.connection()).get("key")
        return self.url, key

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
        raise UsageError(f"{wanted_path} has several verbs ({', '.join(r.verb for r in found)}); give one, "
                         f"e.g. '{found[0].verb} {wanted_path}'")


def _form(route, data: dict | None, files: dict | None):
    """A multipart body when there are files to send, else None."""
    if not files:
        return None
    from .forms import FormBody

    return FormBody(route, data or {}, files)


def _call(http, url: str, route, data, key: str | None = None) -> Any:
    from .http import raise_for

    response = _send(http, url, route, data, key)
    raise_for(response, route.label)
    if "json" in response.headers.get("content-type", ""):
        return response.json()
    return response.content


def _send(http, url: str, route, data, key: str | None = None, stream: bool = False):
    """The endpoint's response to one call (`data` a dict, or a FormBody), 503s and refused connections retried with
    backoff. `stream`: ask for Server-Sent Events and leave the body to be read as it comes."""
    import requests

    from .http import backoff

    target = url.rstrip("/") + route.path
    if not isinstance(data, dict):  # a FormBody: iterated afresh by each attempt
        request = {"data": data}
    elif route.takes_body:
        request = {"json": data}
    else:  # the runtime reads query values as text: JSON for dicts, lists and booleans
        request = {"params": {k: json.dumps(v) if isinstance(v, (dict, list, bool)) else v for k, v in data.items()}}
    headers = {"Accept": "text/event-stream"} if stream else {}
    if not isinstance(data, dict):
        headers["Content-Type"] = data.content_type
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request["headers"] = headers
    session = http.session
    for attempt in range(CALL_RETRIES):
        try:
            response = session.request(route.verb, target, timeout=(http.settings.connect_timeout, None),
                                       verify=http.verify, stream=stream, **request)
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
    return response


def _streaming_routes(http, url: str, key: str | None) -> set[str]:
    import requests

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = http.session.get(url.rstrip("/") + "/openapi.json", headers=headers, verify=http.verify,
                                    timeout=(http.settings.connect_timeout, 10))
        return streaming_labels(response.json()) if response.ok else set()
    except (requests.RequestException, ValueError):
        return set()  # only the examples lose their -N


def _events(lines):
    """(event name, decoded data) per Server-Sent Event; "message" when unnamed."""
    name, data = "message", None
    for line in lines:
        if not line:
            if data is not None:
                yield name, json.loads(data)
            name, data = "message", None
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data = line[5:].strip()


class Jobs:
    def __init__(self, client):
        self._client = client

    async def create(self, name: str, type: str = "endpoint", gpu_type: str | None = None,
                     gpu_types: list[str] | str | None = None, gpu_count: int | None = None,
                     cpu_count: int | None = None, disk_size: int | None = None, max_price: float | None = None,
                     worker_commands: list | None = None, environment: dict | None = None, data: dict | None = None,
                     model: dict | None = None, endpoint: dict | None = None, *, resources: dict | None = None,
                     python: str | None = None, wait: bool = False, workers: list | None = None,
                     **unsupported) -> Job:
        """Create an endpoint job, with trainML's signature, positional as trainML's: name, type, gpu_type,
        gpu_types, gpu_count, cpu_count, disk_size, max_price, worker_commands, environment, data, model,
        endpoint. `gpu_types` (or trainML's `gpu_type`), `gpu_count`, `cpu_count`, `disk_size`, `max_price` are
        the same as `resources={...}`; `model`: {source_type: local|git|trainml, source_uri, git_ref?};
        `endpoint`: {routes, max_concurrency?, max_queue?, timeout?, replicas?, min_replicas?, max_replicas?,
        upscale_delay?, downscale_delay?, target_ongoing?, ray_actor_options?};
        `environment`: {env: [{key, value}], packages: {pip: [...]}, requirements?, python?, type?, secrets:
        [names], worker_key_types: [aws|gcp|kaggle|azure|wasabi]}; `python`: short for environment.python.
        `worker_commands`, `data` and `workers` are taken empty (trainML's defaults) and refused otherwise.
        With `wait`, returns once it is running."""
        payload = await create_payload(
            self._client, name, type, model=model, endpoint=endpoint, environment=environment, python=python,
            resources={**(resources or {}), **_given(gpu_type=gpu_type, gpu_types=gpu_types, gpu_count=gpu_count,
                                                      cpu_count=cpu_count, disk_size=disk_size, max_price=max_price)},
            unused={"data": data, "workers": workers, "worker_commands": worker_commands, **unsupported})
        job = Job(self._client, await self._client.http.request("POST", "/api/jobs", json=payload))
        if wait:
            await job.wait_for("running")
        return job

    async def create_json(self, payload: dict, wait: bool = False) -> Job:
        """trainML's `create_json`: a job from the payload `create` sends ({name, type, resources: {gpu_types or
        gpu_type_id, gpu_count, ...}, model, endpoint, environment, ...}); a local model is uploaded as create
        does, and trainML's project_uuid means nothing here."""
        if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
            raise UsageError.at(("name",), "the payload must be a JSON object with a name", label="create_json")
        fields = {k: v for k, v in payload.items() if k not in ("project_uuid", "source_job_uuid")}
        return await self.create(fields.pop("name"), fields.pop("type", "endpoint"), wait=wait, **fields)

    async def get(self, id_or_name: str) -> Job:
        return Job(self._client, await self._client.http.request("GET", f"/api/jobs/{quote(id_or_name, safe='')}"))

    async def list(self) -> list[Job]:
        return [Job(self._client, record) for record in await self._client.http.request("GET", "/api/jobs")]

    async def remove(self, id_or_name: str, force: bool = True, **kwargs) -> None:
        """Remove a job; as trainML's `jobs.remove`, a running one too (it is stopped first)."""
        await (await self.get(id_or_name)).remove(force=force)


def _given(**values) -> dict:
    return {key: value for key, value in values.items() if value is not None}
