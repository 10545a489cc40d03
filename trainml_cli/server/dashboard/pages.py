"""The dashboard's pages: server-rendered HTML, one route per page, each guarded by the session cookie.

Pages render what the platform's services return (the same job records the REST API sends), so the first paint
is complete without JavaScript; each page's script then keeps it live through the API. A request without a
valid session is sent to a page that says how to get one (`trainml server dashboard`).

Every page is sent with a Content-Security-Policy that allows only our own scripts, styles and connections:
with autoescaping in the templates and textContent in the scripts, user text (job names, log lines) can never
become markup or code.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from ...contracts import SKIPPED_FOLDERS
from ...credentials import KINDS as CREDENTIAL_KINDS
from ...environment import DEFAULT_REQUIREMENTS_FILE
from ...errors import NotFound, UsageError
from ...paramspec import ITEM_TYPES, TYPES
from ...routespec import VERBS, parse_routes
from ...states import FINAL, LIVE, JobStatus
from .. import resources as res
from ..archives import MAX_UPLOAD_BYTES
from .history import status_history
from .sessions import COOKIE, cookie_options

ROOT = "/dashboard"
HERE = Path(__file__).parent
STATIC = HERE / "static"
TYPE_LABELS = {"str": "String", "int": "Integer", "float": "Float", "bool": "Boolean", "dict": "Object", "list": "List",
               "file": "File"}

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the login link's token must not leak to the next page
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}

router = APIRouter(prefix=ROOT, include_in_schema=False)


def _versions() -> dict[str, str]:
    """A content hash per static file, added to its URL so browsers never run a stale script after an upgrade."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:10] for p in STATIC.iterdir() if p.is_file()}


_VERSIONS = _versions()


def static_url(name: str) -> str:
    return f"{ROOT}/static/{name}?v={_VERSIONS.get(name, '0')}"


def duration(seconds) -> str:
    if seconds is None:
        return "—"
    total = int(float(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def filesize(size) -> str:
    size = float(size or 0)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def slashes(text):
    """A path or URI that breaks across lines after a `/` (a line break opportunity after each), not mid-name."""
    from markupsafe import Markup, escape

    return Markup("/<wbr>").join(escape(part) for part in str(text).split("/"))


# The statuses' sets, from the one enum, for the page scripts (a data attribute: the CSP allows no inline script).
STATUS_SETS = {"live": sorted(s.value for s in LIVE), "final": sorted(s.value for s in FINAL),
               "billed": [JobStatus.STARTING.value, JobStatus.RUNNING.value],
               "names": {status.name.lower(): status.value for status in JobStatus}}


@functools.cache
def templates():
    """The pages' template environment, made at the first page served: jinja2 is no part of the control plane's
    start, which every first `trainml` call waits for."""
    from jinja2 import Environment, FileSystemLoader

    environment = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, trim_blocks=True,
                              lstrip_blocks=True)
    environment.filters.update(duration=duration, filesize=filesize, slashes=slashes)
    environment.globals.update(static=static_url, root=ROOT, status_sets=STATUS_SETS,
                               skipped_folders=sorted(SKIPPED_FOLDERS))  # what upload.js leaves out, as the CLI does
    return environment


def render(request: Request, name: str, *, status: int = 200, signed_in: bool = True, **context) -> HTMLResponse:
    html = templates().get_template(name).render(signed_in=signed_in, **context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def sessions(request: Request):
    return request.app.state.dashboard_sessions


def platform(request: Request):
    return request.app.state.platform


def signed_in(request: Request) -> bool:
    return sessions(request).check_cookie(request.cookies.get(COOKIE))


def to_sign_in() -> RedirectResponse:
    return RedirectResponse(f"{ROOT}/signed-out", status_code=303, headers={"Cache-Control": "no-store"})


def find_job(request: Request, job_id: str) -> dict | None:
    try:
        return platform(request).jobs.get(job_id)
    except NotFound:
        return None


def not_found(request: Request, job_id: str) -> HTMLResponse:
    return render(request, "signed_out.html", status=404, title="Not found", page="missing",
                  heading="No such endpoint", message=f"There is no endpoint {job_id!r}; it may have been removed.",
                  show_command=False)


# -- signing in and out -------------------------------------------------------------------------------------------


@router.get("/login")
async def login(request: Request, token: str = ""):
    """The one-time link: trade its token for a session cookie, then go to the dashboard."""
    store = sessions(request)
    if not store.redeem(token):
        return render(request, "signed_out.html", status=403, signed_in=False, title="Link expired", page="signed-out",
                      heading="This sign-in link has expired or was already used",
                      message="Each link works once and only for a few minutes.", show_command=True)
    response = render(request, "signing_in.html", signed_in=False, target=f"{ROOT}/")
    response.set_cookie(value=store.new_cookie(), **cookie_options(request, int(store.session_ttl)))
    return response


@router.post("/logout")
async def logout(request: Request):
    response = RedirectResponse(f"{ROOT}/signed-out?bye=1", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/signed-out")
async def signed_out(request: Request, bye: int = 0, expired: int = 0):
    if bye:
        heading, message = "Signed out", "You are signed out of the dashboard."
    elif expired:
        heading, message = "Your session has ended", "Sign in again to keep working."
    else:
        heading, message = "Sign in to the dashboard", "The dashboard opens through a one-time sign-in link."
    return render(request, "signed_out.html", signed_in=False, title=heading, page="signed-out",
                  heading=heading, message=message, show_command=True)


# -- pages --------------------------------------------------------------------------------------------------------


@router.get("")
async def root_without_slash():
    return RedirectResponse(f"{ROOT}/", status_code=307)


@router.get("/")
async def jobs_page(request: Request):
    if not signed_in(request):
        return to_sign_in()
    jobs = platform(request).jobs.list()
    return render(request, "jobs.html", title="Endpoints", page="jobs", section="endpoints", jobs=jobs,
                  running=any(JobStatus(j["status"]) is JobStatus.RUNNING for j in jobs))


@router.get("/create")
async def create_page(request: Request, model: str = ""):
    if not signed_in(request):
        return to_sign_in()
    p = platform(request)
    models = p.models.list()
    chosen = next((m["id"] for m in models if model in (m["id"], m["name"])), "") if model else ""
    gpu_types = ["cpu"] + sorted({_gpu_type(g.name) for g in p.gpus})
    return render(request, "create.html", title="Create endpoint", page="create", section="create",
                  models=models, chosen_model=chosen, max_upload=MAX_UPLOAD_BYTES, gpu_types=gpu_types,
                  defaults=res.DEFAULT_RESOURCES, verbs=VERBS,
                  types=[(t, TYPE_LABELS[t]) for t in TYPES], item_types=[(t, TYPE_LABELS[t]) for t in ITEM_TYPES],
                  interpreters=await _interpreters(p),
                  secrets=p.vault.list(),  # names only: a value never reaches a page
                  credential_kinds=[(kind, variable) for kind, (variable, *_) in CREDENTIAL_KINDS.items()])


@router.get("/jobs/{job_id}")
async def job_page(request: Request, job_id: str):
    if not signed_in(request):
        return to_sign_in()
    job = find_job(request, job_id)
    if job is None:
        return not_found(request, job_id)
    endpoint = job["endpoint"]
    limits = [(label, endpoint.get(key)) for key, label in
              (("max_concurrency", "Max concurrency"), ("max_queue", "Max queue"), ("timeout", "Call timeout (s)"))
              if endpoint.get(key) is not None]
    p = platform(request)
    history = await status_history(p.store, job["id"])
    default = next((i for i in await _interpreters(p) if i.default), None)
    revisions = p.jobs.revisions.list(job["id"])
    return render(request, "job.html", title=job["name"], page="job", section="endpoints", job=job, limits=limits,
                  history=history, config_json=json.dumps(_configuration(job), indent=2),
                  revisions=revisions, revisions_json=json.dumps(revisions), models=p.models.list(),
                  routes_json=json.dumps(job["endpoint"]["routes"], indent=2), max_upload=MAX_UPLOAD_BYTES,
                  environment=environment_facts(job["environment"], default),
                  default_python=default.version if default else "")


@router.get("/jobs/{job_id}/connect")
async def connect_page(request: Request, job_id: str):
    if not signed_in(request):
        return to_sign_in()
    job = find_job(request, job_id)
    if job is None:
        return not_found(request, job_id)
    # Commands are written for a stand-in URL that the page swaps for the live one: a stopped endpoint has none,
    # and showing the port it last had would invite calls that cannot answer.
    # The key, for a job that has one: a signed-in user holds the control plane, which may read it anyway.
    key = platform(request).jobs.connection(job["id"])["key"]
    streaming = await streaming_routes(job, key)
    return render(request, "connect.html", title=f"Connect to {job['name']}", page="connect", section="endpoints",
                  job=job, examples=examples(URL_STAND_IN, job, key, streaming), stand_in=URL_STAND_IN,
                  status_sentence=status_sentence(JobStatus(job["status"])), key=key)


@router.get("/jobs/{job_id}/logs")
async def logs_page(request: Request, job_id: str):
    if not signed_in(request):
        return to_sign_in()
    job = find_job(request, job_id)
    if job is None:
        return not_found(request, job_id)
    return render(request, "logs.html", title=f"Logs of {job['name']}", page="logs", section="endpoints", job=job,
                  revision_count=len(platform(request).store.revisions(job["id"])) or 1)


# Installed after every other dashboard route and the static files, so it answers only what none of them does.
missing = APIRouter(prefix=ROOT, include_in_schema=False)


@missing.get("/{path:path}")
async def unknown_page(request: Request, path: str):
    if not signed_in(request):
        return to_sign_in()
    return render(request, "signed_out.html", status=404, title="Not found", page="missing",
                  heading="Page not found", message=f"There is no dashboard page at /dashboard/{path}.",
                  show_command=False)


# -- helpers ------------------------------------------------------------------------------------------------------

URL_STAND_IN = "http://ENDPOINT_URL"  # shell-safe as it is, so it is never quoted apart from the path after it


def status_sentence(status: JobStatus) -> str:
    """"The endpoint failed", "The endpoint is stopped": a sentence for a status (connect.js says the same)."""
    return {JobStatus.FAILED: "The endpoint failed",
            JobStatus.NEW: "The endpoint was just created"}.get(status, f"The endpoint is {status.value}")



def examples(url: str, job: dict, key: str | None = None, streaming: frozenset = frozenset()) -> list[dict]:
    """A ready-to-paste curl command per route, built by the same function the CLI prints them with (`curl -N` for
    the routes in `streaming`, whose function yields), the same call in Python and through `trainml job call`, and
    the body template Try it starts from."""
    from ...routecalls import cli_command, curl_command, python_snippet

    try:
        routes = parse_routes(job["endpoint"]["routes"])
    except Exception:  # a record the server accepted earlier; show no examples rather than fail the page
        return []
    return [{"label": r.label, "target": f"{r.file}:{r.function}",
             "command": curl_command(url, r, key, streams=r.label in streaming),
             "python": python_snippet(url, r, key, streams=r.label in streaming),
             "cli": cli_command(job["name"], r, streams=r.label in streaming),
             "template": json.dumps(r.example_body(), indent=2), "takes_file": any(p.type == "file" for p in r.body),
             "streams": r.label in streaming} for r in routes]


async def streaming_routes(job: dict, key: str | None) -> frozenset:
    """The routes a running endpoint's /openapi.json flags as streaming (known once its code has loaded), as the
    CLI asks it; empty when it cannot say within 2 s: the examples lose only their -N."""
    from urllib.parse import urlsplit

    import requests

    from ...routecalls import streaming_labels
    from ...tls import is_loopback

    url = job.get("url")
    if not url or job.get("status") != JobStatus.RUNNING.value:
        return frozenset()
    # Over loopback the endpoint serves the control plane's own certificate, named for the public host: encrypted,
    # not verified, as the control plane's /ping probes. Anywhere else, verified, since the key goes along.
    verify = not is_loopback(urlsplit(url).hostname or "")
    headers = {"Authorization": f"Bearer {key}"} if key else {}

    def ask() -> frozenset:
        try:
            response = requests.get(url.rstrip("/") + "/openapi.json", headers=headers, timeout=2, verify=verify)
            return frozenset(streaming_labels(response.json())) if response.ok else frozenset()
        except (requests.RequestException, ValueError):
            return frozenset()

    return await asyncio.to_thread(ask)


async def _interpreters(p) -> list:
    """The machine's Pythons, the default first (the list probes each one: in a thread, cached a minute)."""
    try:
        found = await asyncio.to_thread(p.environments.interpreters.all)
    except UsageError:  # the default interpreter does not run: the form still opens, the check will say why
        return []
    return sorted(found, key=lambda i: not i.default)


def environment_facts(environment: dict, default) -> dict:
    """What the Details page says about a job's environment (job.js says the same as the record changes).

    The record holds what was asked (packages, requirements, interpreter, note) and, once built, what was built
    (key, python_version, requirements_file); a job without a key runs on the control plane's own Python.
    """
    interpreter = environment.get("interpreter")  # None: the default one
    packages = environment.get("packages", {}).get("pip") or []
    version = (environment.get("python_version") or (interpreter or {}).get("version")
               or (default.version if default else ""))
    python = f"{version} (default)" if version and not interpreter else version or "the default"
    if environment.get("default_python") and not environment.get("python_version"):
        python = environment["default_python"]  # the backend's, not the control plane's: the Ray cluster's
    if environment.get("key"):
        key, requirements = environment["key"], environment.get("requirements_file") or "none"
    else:
        asked = packages or environment.get("requirements") or interpreter
        key = "not built yet" if asked else "none: the control plane's Python"
        requirements = (environment.get("requirements")
                        or f"{DEFAULT_REQUIREMENTS_FILE} at the model root, if there is one")
    return {"python": python, "packages": packages, "requirements": requirements, "key": key,
            "note": environment.get("note")}


def _configuration(job: dict) -> dict:
    """The job's whole configuration as submitted, without live fields and without env values (may be secrets)."""
    environment = job["environment"]
    env = [{"key": item["key"], "value": "…"} for item in environment.get("env", [])]
    asked = {k: environment[k] for k in ("requirements", "python", "type", "secrets") if environment.get(k)}
    if environment.get("packages", {}).get("pip"):
        asked["packages"] = {"pip": environment["packages"]["pip"]}
    return {"name": job["name"], "type": job["type"], "resources": job["resources"], "model": job["model"],
            "endpoint": job["endpoint"], "environment": {"env": env, **asked}}


def _gpu_type(name: str) -> str:
    """"NVIDIA GeForce RTX 3090" -> "rtx3090", the short form the price table and matching use."""
    words = name.lower().replace("nvidia", "").replace("geforce", "").split()
    return "".join(words) or name

