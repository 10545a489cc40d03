"""The control plane's ASGI app: the platform's services, the API routes, and the one place errors become JSON.

`create_app(settings, options)` builds a FastAPI app whose lifespan opens the platform (store, logs, GPUs,
uploads, models, jobs), reconciles the jobs an earlier run left (adopting the endpoints still serving), and on
shutdown stops every endpoint, or leaves them serving when `app.state.detach` is set (`trainml server restart`).

Extending it: a package `trainml_cli.server.dashboard` that defines `install(app)` is installed automatically;
it may add routes, mount static files, and add a way to authenticate (`app.state.auth.add_check`, see auth.py).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from contextlib import asynccontextmanager
from typing import Callable
from urllib.parse import unquote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__, serveroptions, tls
from ..endpointenv import parse_names
from ..errors import MethodNotAllowed, NotFound, ServerError, TooLarge, TrainMLError, Unauthorized, UsageError
from ..jsonbody import MAX_ERRORS
from ..settings import Settings
from . import api, bodies, openapi, prometheus, requestsapi, resources as res
from .archives import Uploads
from .auth import Authenticator, ensure_token
from .backends.base import Policy
from .environments import Environments
from .gitcredentials import GitCredentials
from .interpreters import Interpreters
from .jobs import Jobs, job_not_found
from .logs import LogBook
from .models import Models, model_not_found
from .private import secure_home
from .store import Store
from .tracing import OFF, Tracing
from .vault import Vault

log = logging.getLogger("trainml.server")


class ServerOptions(serveroptions.record("ServerOptionFields")):
    """What `trainml server run` decides beyond Settings: a field per row of serveroptions.OPTIONS, at its
    default (gpus, python, pass_env, stop_grace, ..., ray_deploy_timeout)."""

    @property
    def pass_env_names(self) -> tuple[str, ...]:
        try:
            return parse_names(self.pass_env)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    @property
    def policy(self) -> Policy:
        return Policy(stop_grace=self.stop_grace, unresponsive_after=self.unresponsive_after)

    def make_backend(self, host: str, pool: res.GpuPool):
        """The backend these options name; a usage error says what is missing."""
        if self.backend == "local":
            from .backends.local import LocalBackend

            return LocalBackend(host, self.policy, pool, tls=self.tls_certfile is not None)
        if self.backend != "ray":
            raise UsageError(f"--backend: {self.backend!r} is not one of local, ray")
        from .backends.ray import RayBackend
        from .backends.rayhead import RayOptions

        if not self.ray_address:
            raise UsageError("--backend ray needs --ray-address http://HEAD:8265 (the Ray head's dashboard)")
        token = None
        if self.ray_token_file:
            try:
                token = open(self.ray_token_file).read().strip()
            except OSError as exc:
                raise UsageError(f"--ray-token-file {self.ray_token_file}: {exc.strerror}") from None
        return RayBackend(RayOptions(self.ray_address, token, self.ray_serve_host, self.ray_serve_port,
                                     self.ray_deploy_timeout, stop_grace=self.stop_grace))


class Platform:
    """The control plane's services, opened once per process."""

    def __init__(self, settings: Settings, options: ServerOptions, tracing: Tracing = OFF):
        self.settings = settings
        self.options = options
        self.url: str | None = None
        secure_home(settings)
        self.store = Store(settings.database_path)
        self.logs = LogBook(self.store)
        self.gpus = res.detect_gpus(options.gpus)
        self.pool = res.GpuPool(self.gpus)
        self.uploads = Uploads(settings.home / "uploads")
        self.uploads.collect_garbage()
        self.models = Models(self.store, settings.models_dir, self.uploads)
        self.environments = Environments(settings.envs_dir, Interpreters(options.python), settings.uv_cache_dir,
                                         pass_env=options.pass_env_names)
        self.vault = Vault(settings.secrets_dir)
        git_credentials = GitCredentials(settings.git_credentials_dir)
        git_credentials.migrate(self.store, [*settings.jobs_dir.glob("*/model"), *settings.models_dir.glob("*")])
        self.backend = options.make_backend(settings.host, self.pool)
        self.tracing = tracing  # made with the app: its middleware wraps the API before the lifespan runs
        self.jobs = Jobs(self.store, self.logs, self.models, self.uploads, settings.jobs_dir, self.environments,
                         backend=self.backend, python=options.python, vault=self.vault,
                         git_credentials=git_credentials, tls=tls.check_pair(options.tls_certfile, options.tls_keyfile),
                         pass_env=options.pass_env_names)
        self.jobs.tracing = tracing

    async def close(self, detach: bool = False) -> None:
        await self.jobs.shutdown(detach=detach)
        await self.logs.close()
        self.store.close()
        self.tracing.close()


def create_app(settings: Settings, options: ServerOptions | None = None, *,
               on_ready: Callable[[Platform], None] | None = None,
               on_stopped: Callable[[Platform], None] | None = None) -> FastAPI:
    options = options or ServerOptions()
    tracing = Tracing.start(options.otlp_endpoint)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        platform = Platform(settings, options, tracing)
        app.state.platform = platform
        try:
            await platform.jobs.reconcile()
            found = ", ".join(f"{g.index}: {g.name}" for g in platform.gpus) or "none"
            log.info("control plane for %s ready (backend %s; GPUs: %s)", settings.home, platform.backend.name, found)
            if on_ready is not None:
                on_ready(platform)
            yield
        finally:
            detach = getattr(app.state, "detach", False)
            log.info("leaving the endpoints serving for the next control plane" if detach else "stopping endpoints")
            await platform.close(detach=detach)
            if on_stopped is not None:
                on_stopped(platform)

    app = FastAPI(
        title="trainML control plane",
        version=__version__,
        description=(api.__doc__ or "").strip(),
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.auth = Authenticator(ensure_token(settings.token_path))
    app.include_router(api.open_router)
    app.include_router(api.router)
    app.include_router(api.upload_router)
    app.include_router(requestsapi.router)
    app.include_router(prometheus.targets_router)
    app.include_router(prometheus.metrics_router)
    _install_error_handlers(app)
    _install_dashboard(app)
    openapi.install(app)
    if tracing.middleware is not None:  # the API's calls as spans
        app.add_middleware(tracing.middleware, tracing=tracing)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TrainMLError)
    async def trainml_error(request: Request, exc: TrainMLError):
        headers = None
        if isinstance(exc, Unauthorized):
            headers = {"WWW-Authenticate": "Bearer"}
        elif isinstance(exc, TooLarge):  # the rest of the body is not read: the connection cannot be reused
            headers = {"Connection": "close"}
        return JSONResponse(bodies.bounded(exc.to_dict()), status_code=exc.http_status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        shown = errors[:MAX_ERRORS]
        error = bodies.invalid([e.get("loc", ()) for e in shown], [e.get("msg") for e in shown], len(errors))
        return JSONResponse(bodies.bounded(error.to_dict()), status_code=error.http_status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        headers = getattr(exc, "headers", None)
        if exc.status_code == 404:
            body = (_named_with_slash(request) or NotFound(f"no such API route: {request.method} "
                                                           f"{request.url.path}")).to_dict()
        elif exc.status_code == 405:
            # Starlette's Allow names the first route matching the path only; a path served by two routes
            # (GET and DELETE /api/jobs/{job}) allows both.
            allow = _allowed(request)
            headers = {**(headers or {}), "Allow": allow}
            body = MethodNotAllowed(f"{request.url.path} accepts {allow}, not {request.method}").to_dict()
        else:
            body = {"error": "http", "message": f"{request.method} {request.url.path}: {exc.detail}"}
        return JSONResponse(bodies.bounded(body), status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        error = ServerError(f"the control plane failed on {request.method} "
                            f"{request.url.path}: {type(exc).__name__}: {exc}")
        return JSONResponse(bodies.bounded(error.to_dict()), status_code=500)


def _named_with_slash(request: Request) -> NotFound | None:
    """A job or model reference holding '/' (sent as %2F) matches no route once the path is decoded; no name has
    one, so it is that job or model that is not found, not the route."""
    parts = request.scope.get("raw_path", b"").split(b"?")[0].decode("latin-1").split("/")
    if len(parts) < 4 or parts[1] != "api" or "%2f" not in parts[3].lower():
        return None
    found = {"jobs": job_not_found, "models": model_not_found}.get(parts[2])
    return found(unquote(parts[3])) if found else None


def _allowed(request: Request) -> str:
    methods: set[str] = set()
    matching = [route for route in _route_table(request.app) if getattr(route, "methods", None)
                and getattr(route, "path_regex", None) is not None and route.path_regex.match(request.url.path)]
    # A path the API names as it is (/api/environments/prune) answers for its own methods, not for those of a
    # template it also fits (/api/environments/{key}): the OpenAPI document lists them per path.
    exact = [route for route in matching if getattr(route, "path", None) == request.url.path]
    for route in exact or matching:
        methods |= set(route.methods)
    methods.discard("HEAD")  # implied by GET; the API documents GET only
    return ", ".join(sorted(methods))


def _route_table(app: FastAPI) -> list:
    """Every route, included routers flattened: FastAPI 0.16x keeps each included router as one entry of
    app.routes (with no path or methods of its own); earlier versions copied the router's routes there."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


def _install_dashboard(app: FastAPI) -> None:
    name = __package__ + ".dashboard"
    if importlib.util.find_spec(name) is None:
        return
    install = getattr(importlib.import_module(name), "install", None)
    if install is not None:
        install(app)
