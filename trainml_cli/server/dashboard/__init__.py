"""The web dashboard, served by the control plane: pages under /dashboard, its API under /api/dashboard.

The control plane calls `install(app)` when it builds its app (see server/app.py). Installing adds:

- the pages (pages.py) and their static assets (static/, served by us: no CDN, no build step);
- the dashboard's API routes (api.py), behind the same `require_auth` dependency as the REST API;
- a way in for browsers: `app.state.auth.add_check` accepts a valid session cookie (sessions.py), so the pages'
  scripts call the REST API itself for stop, start, remove and logs; the API token never reaches the browser;
- the traffic sampler behind the charts (traffic.py): it samples from start-up on, whether or not anyone
  watches, and stops with the app.

Also: forms.py (the create form, as a job payload), modelcode.py (the model code that form names: route files,
functions, routes.json, read without importing), setup_pages.py (the Secrets and Environments pages),
model_pages.py (stored models), history.py (a job's statuses over time), tryit.py (Connect's Try it: one
call to the endpoint, sent by the control plane), requests_page.py (the Requests tab: captured calls).

Sign-in: `trainml server dashboard` (cli/dashboard.py) asks POST /api/dashboard/login-links with the API token
and prints the one-time link; visiting it sets the session cookie.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from . import api, model_pages, pages, requests_page, setup_pages, tryit
from .sessions import Sessions
from .traffic import Traffic


def install(app: FastAPI) -> None:
    sessions = Sessions(app.state.auth.token)
    traffic = Traffic()
    app.state.dashboard_sessions = sessions
    app.state.dashboard_traffic = traffic
    app.state.auth.add_check(lambda request: "dashboard" if sessions.authorizes(request) else None)

    app.include_router(pages.router)
    app.include_router(model_pages.router)
    app.include_router(setup_pages.router)
    app.include_router(requests_page.router)
    app.include_router(api.router)
    app.include_router(requests_page.api)
    app.include_router(tryit.router)
    app.mount(f"{pages.ROOT}/static", StaticFiles(directory=pages.STATIC), name="dashboard-static")
    app.include_router(pages.missing)  # last: the Not found page for any other /dashboard/... URL

    @app.get("/", include_in_schema=False)
    async def home():
        return RedirectResponse(f"{pages.ROOT}/", status_code=307)

    # Start the sampler once the platform is up; stop it before the platform's own shutdown.
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app):
        async with inner(app) as state:
            traffic.start(app.state.platform)
            try:
                yield state
            finally:
                await traffic.close()

    app.router.lifespan_context = lifespan
