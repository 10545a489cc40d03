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
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..actoroptions import check_actor_options
from ..credentials import credential_env
from ..environment import check_environment, check_requirements_file
from ..errors import Conflict, JobFailed, NotFound, RevisionFailed, TrainMLError, Unavailable, UsageError, WaitTimeout
from ..hints import failure_headline, failure_message, shell_quote
from ..replicaspec import check_scaling
from ..routecalls import streaming_labels
from ..routespec import check_route_files, parse_routes
from ..states import STATUSES, JobStatus
from .models import git_uri

UPDATE_TIMEOUT = 1800.0  # seconds an update may take: fetching and building an environment can be long
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
        """A new endpoint key, once the endpoint takes it and refuses the old one (on Ray, the old one works until
        Serve has replaced the replicas); returns connection()'s answer."""
        return await self._client.http.request("POST", self._path + "/rotate-key")

    async def refresh(self) -> Job:
        self.dict = await self._client.http.request("GET", self._path)
        return self

    async def wait_for(self, status: str, timeout: float = 300, on_status=None) -> Job:
        """Return once the job has `status`. JobFailed if it fails instead, Conflict if it stops instead,
        WaitTimeout after `timeout` seconds. `on_status(job)` is called at each status the job passes."""
        if status not in STATUSES:
            raise UsageError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        deadline = time.monotonic() + timeout
        while True:
            if self.status == status:
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
            params = {"status": str(status), "timeout": poll}
            if on_status is not None:
                params["since"] = self.status
            before = self.status
            self.dict = await self._client.http.request("GET", self._path + "/wait", params=params, timeout=poll + 15)
            if on_status is not None and self.status != before:
                on_status(self)

    async def connect(self, timeout: float = 300) -> str:
        """trainML's `connect()` for an endpoint: its URL, once it is running."""
        await self.wait_for(JobStatus.RUNNING, timeout)
        return self.url

    async def attach(self, callback=None, tail: int | None = 20) -> None:
        """trainML's `attach()`: print (or hand to `callback`) the job's log lines until it stops or fails;
        JobFailed if it failed."""
        async for entry in self.logs(follow=True, tail=tail):
            (callback or print)(entry.get("message", "") if callback is None else entry)
        try:
            await self.refresh()
        except NotFound:  # removed while attached: nothing failed
            return
        if self.status == JobStatus.FAILED:
            raise JobFailed(f"job {self.name} failed: {failure_headline(self.reason)}")

    async def failure(self, lines: int = 10) -> JobFailed:
        """The JobFailed for this failed job: its reason's headline, then its last `lines` log lines (also in
        `details`). What the CLI prints when a job fails."""
        tail = []
        try:
            tail = [entry.get("message", "") async for entry in self.logs(tail=lines)]
        except TrainMLError:  # the reason alone still says what happened
            pass
        return JobFailed(failure_message(self.name, self.reason, tail), details=tail)

    async def stop(self, wait: bool = True) -> None:
        self.dict = await self._client.http.request("POST", self._path + "/stop")
        if wait and self.status not in (JobStatus.STOPPED, JobStatus.FAILED):
            await self.wait_for("stopped", timeout=120)

    async def start(self) -> None:
        self.dict = await self._client.http.request("POST", self._path + "/start")

    async def revisions(self) -> list[dict]:
        """The job's revisions, oldest first: {revision, status (starting, serving, retired, failed), created,
        source, reason, ...}; revision 1 is what create made."""
        return await self._client.http.request("GET", self._path + "/revisions")

    async def update(self, *, model: dict | None = None, endpoint: dict | None = None,
                     environment: dict | None = None, resources: dict | None = None,
                     timeout: float = UPDATE_TIMEOUT, if_changed: bool = False) -> dict:
        """Deploy a new revision on the same URL without a failed call and return it once it serves: what is
        given replaces the serving revision's (model, endpoint fields such as routes, environment fields,
        resources); nothing given redeploys the same spec (a git branch's head fetched again). Raises
        RevisionFailed (the serving revision goes on) with the reason and the job's last log lines. With
        `if_changed`, code and spec the same as the serving revision's deploy nothing: the answer is the serving
        revision with `unchanged: true`."""
        payload = await _update_payload(self._client, model, endpoint, environment, resources)
        if if_changed:
            payload["if_changed"] = True
        revision = await self._client.http.request("POST", self._path + "/revisions", json=payload, timeout=timeout)
        return await self._served(revision)

    async def rollback(self, to: int | None = None, timeout: float = UPDATE_TIMEOUT) -> dict:
        """Serve revision `to` again (default: the newest retired one before the serving one), with its code."""
        body = {"to": to} if to is not None else {}
        revision = await self._client.http.request("POST", self._path + "/rollback", json=body, timeout=timeout)
        return await self._served(revision)

    async def _served(self, revision: dict) -> dict:
        if revision.get("status") != "failed":
            return revision
        tail = []
        try:
            tail = [entry.get("message", "") async for entry in self.logs(tail=10)]
        except TrainMLError:
            pass
        head = (revision.get("reason") or "").splitlines()[0] if revision.get("reason") else "no reason given"
        message = (f"revision {revision['revision']} of job {self.name} failed: {head}\n"
                   "the serving revision goes on serving")
        if tail:
            message += "\nlast log lines:\n" + "\n".join(f"  {line}" for line in tail)
        raise RevisionFailed(message, details=tail)

    async def remove(self, force: bool = False) -> None:
        params = {"force": "true" if force else "false"}
        await self._client.http.request("DELETE", self._path, params=params, timeout=120)

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
            loop.call_soon_threadsafe(items.put_nowait, (kind, value))

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

    async def create(self, name: str, type: str = "endpoint", gpu_types: list[str] | str | None = None,
                     gpu_count: int | None = None, cpu_count: int | None = None, disk_size: int | None = None,
                     max_price: float | None = None, *, model: dict, endpoint: dict,
                     environment: dict | None = None, resources: dict | None = None, gpu_type: str | None = None,
                     python: str | None = None, wait: bool = False, data: dict | None = None,
                     workers: list | None = None, **unsupported) -> Job:
        """Create an endpoint job, with trainML's signature (positional as trainML's: name, type, gpu_types,
        gpu_count, cpu_count, disk_size, max_price): `gpu_types` (or older trainML's `gpu_type`), `gpu_count`,
        `cpu_count`, `disk_size`, `max_price` (or the same as `resources={...}`); `model`: {source_type:
        local|git|trainml, source_uri, git_ref?}; `endpoint`: {routes, max_concurrency?, max_queue?, timeout?,
        replicas?, min_replicas?, max_replicas?, upscale_delay?, downscale_delay?, target_ongoing?,
        ray_actor_options?};
        `environment`: {env: [{key, value}], packages: {pip: [...]}, requirements?, python?, type?, secrets:
        [names], worker_key_types: [aws|gcp|kaggle|azure|wasabi]}; `python`: short for environment.python.
        With `wait`, returns once it is running."""
        _refuse_unsupported(data, workers, unsupported, model)
        resources = dict(resources or {})
        if gpu_type is not None:
            resources["gpu_types"] = [gpu_type]
        for key, value in (("gpu_types", gpu_types), ("gpu_count", gpu_count), ("cpu_count", cpu_count),
                           ("disk_size", disk_size), ("max_price", max_price)):
            if value is not None:
                resources[key] = ([value] if isinstance(value, str) else list(value)) if key == "gpu_types" else value
        environment = dict(environment or {})
        if python is not None:
            environment["python"] = python
        kinds = [*(environment.pop("worker_key_types", None) or []), *(environment.pop("credentials", None) or [])]
        if kinds:  # the user's own credential files, found here, handed over by path (credentials.py)
            found = credential_env(kinds, "environment.worker_key_types", ("environment", "worker_key_types"))
            environment["env"] = list(environment.get("env") or []) + found
        check_environment(environment)  # refused packages and malformed requirements, before anything is sent
        endpoint = dict(endpoint or {})
        routes = parse_routes(endpoint.get("routes") or [])  # RouteSpecError before anything is sent
        check_scaling(endpoint)  # replicas, autoscaling settings and Ray's replica options: UsageError before sending
        check_actor_options(endpoint.get("ray_actor_options"))
        model = dict(model or {})
        model.pop("checkpoints", None)  # trainML's default []; anything in it was refused above
        http = self._client.http
        if model.get("source_type") == "local":
            folder = Path(model.get("source_uri") or "").expanduser()
            check_route_files(routes, folder)
            check_requirements_file(environment, folder)
            upload = await self._client.upload(folder)
            model = {"source_type": "local", "source_uri": str(folder.resolve()), "upload_id": upload["id"]}
        elif model.get("source_type") == "git":
            model["source_uri"] = git_uri(model.get("source_uri"))
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


def _refuse_unsupported(data, workers, unsupported: dict, model: dict) -> None:
    """trainML arguments that mean nothing for a local endpoint are accepted when empty, refused otherwise."""
    if data and any(v not in (None, [], "", {}) for v in data.values()):
        raise UsageError(f"data: {sorted(k for k, v in data.items() if v)} is not supported: endpoints read "
                         "their data themselves (datasets and outputs are training-job features)")
    if workers:
        raise UsageError("workers: worker commands are for training jobs; an endpoint serves its routes")
    for key in ("checkpoints", "checkpoint"):
        if (model or {}).get(key):
            raise UsageError(f"model.{key}: checkpoints are not supported; put the files in the model code")
    given = sorted(k for k, v in unsupported.items() if v is not None)
    if given:
        raise UsageError(f"jobs.create: {', '.join(given)} {'is' if len(given) == 1 else 'are'} not supported here")


async def _update_payload(client, model: dict | None, endpoint: dict | None, environment: dict | None,
                          resources: dict | None) -> dict:
    """An update's payload, checked here as create's is (routes, environment) and a local folder uploaded."""
    payload: dict = {}
    endpoint = dict(endpoint or {})
    routes = parse_routes(endpoint["routes"]) if endpoint.get("routes") else None
    if endpoint:
        check_scaling(endpoint)
        payload["endpoint"] = endpoint
    if environment:
        check_environment(environment)
        payload["environment"] = dict(environment)
    if resources:
        payload["resources"] = dict(resources)
    if model:
        model = dict(model)
        if model.get("source_type") == "local":
            folder = Path(model.get("source_uri") or "").expanduser()
            if routes:
                check_route_files(routes, folder)
            check_requirements_file(environment or {}, folder)
            upload = await client.upload(folder)
            model = {"source_type": "local", "source_uri": str(folder.resolve()), "upload_id": upload["id"]}
        elif model.get("source_type") == "git":
            model["source_uri"] = git_uri(model.get("source_uri"))
        payload["model"] = model
    return payload
