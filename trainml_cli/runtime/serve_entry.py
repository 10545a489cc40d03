"""The Ray Serve deployment that hosts the endpoint: the same ASGI app as the local backend, one per replica.

The control plane (server/backends/ray.py) deploys each job as a Serve application whose import path is
`trainml_cli.runtime.serve_entry:build`, with the model folder and this very package in its working_dir zip and
the runtime's command line (launchspec.LaunchSpec.to_argv) as the build arguments:

    args = {"argv": ["--model-dir", "model", "--route-file", "routes.json", ...], "revision": 2,
            "deployment": {...options}}

Nothing is pickled: `@serve.ingress()` without an app plus `__serve_build_asgi_app__` builds our app on the
replica, after `__init__`. `__init__` imports the model code first, so a model that cannot load fails the
replica's start with its traceback (Serve then reports the application DEPLOY_FAILED with that message)
instead of a replica that answers 503 forever. Serve calls `check_health` every few seconds; it raises once
our app's health is failed, and Serve replaces the replica.

A rotated endpoint key reaches running replicas without replacing them: the control plane uploads the key in a
package of its own and sets the deployment's `user_config` to that package's name (a digest: the key itself is
never in Serve's config, which Ray's dashboard shows). Serve calls `reconfigure` with it on every replica, and on
each new one before it serves; the replica reads the package from the cluster's store and writes the key over its
key file, which the runtime re-reads within a second (runtime/auth.py), as a local endpoint's workers do.

Each replica writes its revision first on stdout and stderr (contracts.replica_revision_record): Ray gives every
replica a process and files of its own, so the control plane (server/backends/raylogs.py) tags each line it reads
from them with the revision that printed it, old and new replicas side by side during a rolling update. The
revision is in the application's args, so every revision runs on replicas of its own (as a local revision runs in
processes of its own), even one whose code and options are the same as the serving one's.

Each replica also publishes its metric totals (flatten_totals) as one Ray gauge, tagged with the application
and the replica, every PUBLISH_INTERVAL seconds. Ray's metrics agent on each node exports it with the node's
other metrics, and the control plane sums the replicas of an application from there: a scrape through Serve's
proxy would reach one replica only.

With `--capture`, each replica's writer (runtime/capture.py) puts its segments in its node's Ray log folder,
`trainml-capture/<application>/`, sealing one at least every SEAL_AFTER seconds; the control plane drains the
sealed ones through the head's log API into the job's folder (server/backends/raycaptures.py). The entries are
redacted here, as a local endpoint's are.

One more deployment, `FallbackReplica` (`build_fallback`), is the control plane's shared application at `/e`: it
answers a job's URL while no application of that job serves it (runtime/fallback.py), from the map of job states
its user_config holds.

Only this module imports ray, and only on the cluster's replicas.
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
import zipfile

from ray import serve

from ..capturefiles import RAY_CAPTURE_FOLDER
from ..contracts import REPLICA_TOTALS_GAUGE, LoadFailure, flatten_totals, replica_revision_record
from ..errors import ModelCodeError, UsageError
from ..launchspec import FALLBACK_DEPLOYMENT, FALLBACK_STATES_FIELD, KEY_PACKAGE_FIELD, KEY_PACKAGE_MEMBER
from .app import EndpointApp
from .config import config_from_args
from .fallback import Fallback
from .loader import enter_model_dir, load_routes
from .ownpaths import Health
from .replies import HEADER as REQUEST_ID

SEAL_AFTER = 1.0  # seconds: a captured call reaches the control plane's next drain within about this
PUBLISH_INTERVAL = 2.0  # seconds; Ray's agent exports what was set at its own interval (10 s by default)


@serve.deployment(name="endpoint")
@serve.ingress()
class Replica:
    def __init__(self, argv: list[str], revision: int | None = None):
        if revision is not None:  # first on both streams: every later line of this process is this revision's
            record = replica_revision_record(revision)
            print(record, flush=True)
            print(record, file=sys.stderr, flush=True)
        try:
            config = config_from_args(argv)
            if config.key_file:  # in the package, beside model/: resolved before we enter the model folder
                config.key_file = os.path.abspath(config.key_file)
            if config.capture:  # in this node's log folder, where the control plane drains it from
                try:
                    config.capture_dir = _capture_folder()
                except Exception as exc:  # a private Ray call: serving matters more than capturing
                    print(f"warning: capture is off on this replica: its node's log folder is unknown ({exc!r})",
                          file=sys.stderr, flush=True)
                    config.capture = 0
            root = enter_model_dir(config.model_dir)
            load_routes(root, config.routes)  # the app loads again on start, from the modules imported here
        except (ModelCodeError, UsageError) as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            # Serve puts the exception's text in the application's status, where rayapps.failure_reason reads it.
            raise RuntimeError(LoadFailure.from_message(str(exc)).record()) from None
        self._key_file = config.key_file
        self._endpoint = EndpointApp(config, root)
        if self._endpoint.capture is not None:
            self._endpoint.capture.seal_after = SEAL_AFTER
        print(f"replica serving {len(config.routes)} route(s) (pid {os.getpid()})", flush=True)

    def reconfigure(self, user_config: dict) -> None:
        uri = (user_config or {}).get(KEY_PACKAGE_FIELD)
        if not uri or not self._key_file:
            return
        from ray.experimental.internal_kv import _internal_kv_get

        data = _internal_kv_get(uri)
        if data is None:  # fail closed: never keep serving a key that was rotated away
            raise RuntimeError(f"the endpoint key's package {uri} is not in the Ray cluster")
        key = zipfile.ZipFile(io.BytesIO(data)).read(KEY_PACKAGE_MEMBER)
        # Written whole under a name of this process's own, then renamed over the file the app re-reads: the
        # replicas of this job on one node share the package's folder, and each writes the same key.
        temporary = f"{self._key_file}.{os.getpid()}.new"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, key.strip() + b"\n")
        finally:
            os.close(fd)
        os.replace(temporary, self._key_file)
        if self._endpoint.keys is not None:  # at once, rather than at the app's next look at the file
            self._endpoint.keys.key = key.strip()

    def __serve_build_asgi_app__(self):
        return _Published(self._endpoint)

    async def check_health(self) -> None:
        if self._endpoint.health is Health.FAILED:
            raise RuntimeError(f"the endpoint failed: {self._endpoint.load_error}")


class _Published:
    """The endpoint app, plus a task on its own event loop (the only loop that may read its metrics) that
    publishes the replica's totals while the app runs."""

    def __init__(self, endpoint: EndpointApp):
        self.endpoint = endpoint
        self.task = None

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            send = _one_request_id(scope, send)
        elif scope["type"] == "lifespan" and self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._publish())
        await self.endpoint(scope, receive, send)

    async def _publish(self) -> None:
        from ray.util.metrics import Gauge

        context = serve.get_replica_context()
        gauge = Gauge(REPLICA_TOTALS_GAUGE, description="A trainml endpoint replica's metric totals, by field",
                      tag_keys=("application", "replica", "field"))
        tags = {"application": context.app_name, "replica": context.replica_id.unique_id}
        while True:
            try:
                for field, value in flatten_totals(self.endpoint.metrics.totals()).items():
                    gauge.set(value, tags={**tags, "field": field})
            except Exception as exc:  # the metrics are a convenience; serving goes on without them
                print(f"warning: publishing metrics failed: {exc!r}", file=sys.stderr, flush=True)
            await asyncio.sleep(PUBLISH_INTERVAL)


def _capture_folder() -> str:
    """Where this replica's captured calls go: its application's folder in the node's Ray log folder, which the
    head's log API reads on every node (server/backends/raycaptures.py)."""
    from ray._private.worker import global_worker

    return os.path.join(global_worker.node.get_logs_dir_path(), RAY_CAPTURE_FOLDER,
                        serve.get_replica_context().app_name)


def _one_request_id(scope, send):
    """`send`, leaving out our X-Request-Id where Serve adds the same one.

    Serve's own middleware (RequestIdMiddleware, on its proxy or a replica's direct ingress in HAProxy mode) adds
    `X-Request-Id` to every answer: the request's header as it came, or an id it made and put in the request before
    our app saw it. When that id is sane our app picked the very same one, and two equal headers would reach the
    caller as `id, id`: ours is left out. An id our app replaced (over 128 characters, not printable) is not the
    request's, so the caller gets both: ours (the one in the access log and the error body) first, Serve's echo of
    theirs after it.
    """
    given = next((value.strip() for name, value in scope["headers"] if name == REQUEST_ID), None)
    if given is None:  # a Serve without that middleware: ours is the only one
        return send

    async def send_one_id(message):
        if message["type"] == "http.response.start":
            headers = [(n, v) for n, v in message.get("headers", ()) if not (n == REQUEST_ID and v == given)]
            message = {**message, "headers": headers}
        await send(message)

    return send_one_id


@serve.deployment(name=FALLBACK_DEPLOYMENT)
@serve.ingress()
class FallbackReplica:
    def __init__(self):
        self._app = Fallback()

    def reconfigure(self, user_config: dict) -> None:
        states = (user_config or {}).get(FALLBACK_STATES_FIELD)
        self._app.states = dict(states) if isinstance(states, dict) else {}

    def __serve_build_asgi_app__(self):
        app = self._app

        async def answer(scope, receive, send):
            if scope["type"] == "http":
                send = _one_request_id(scope, send)
            await app(scope, receive, send)

        return answer


def build_fallback(args: dict):
    """The control plane's fallback application at `/e` (server/backends/rayfallback.py)."""
    return FallbackReplica.options(**(args.get("deployment") or {})).bind()


def build(args: dict):
    """The application: one ingress deployment with the options the control plane chose."""
    return Replica.options(**(args.get("deployment") or {})).bind(list(args["argv"]), args.get("revision"))
