"""The dashboard's pages for what endpoints are set up with, as the CLI has them: Secrets (`trainml secret`) and
Environments (`trainml environment`).

Everything these pages change goes through the REST API (PUT and DELETE /api/secrets/{name}, DELETE
/api/environments/{key}, POST /api/environments/prune) from setup.js; the pages render what the vault and the
environment store return. A secret's value goes from a password field to the API once and is never sent back:
the vault lists names and times only.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from .pages import ROOT, platform, render, signed_in, to_sign_in

router = APIRouter(prefix=ROOT, include_in_schema=False)


@router.get("/secrets")
async def secrets_page(request: Request):
    if not signed_in(request):
        return to_sign_in()
    p = platform(request)
    users: dict[str, list[str]] = {}
    for job in p.jobs.list():
        for name in job["environment"].get("secrets") or []:
            users.setdefault(name, []).append(job["name"])
    return render(request, "secrets.html", title="Secrets", page="secrets", section="secrets",
                  secrets=p.vault.list(), users=users)


@router.get("/environments")
async def environments_page(request: Request):
    if not signed_in(request):
        return to_sign_in()
    from ..api import environment_records  # the API's records, with the jobs of each

    p = platform(request)
    names = {job["id"]: job["name"] for job in p.jobs.list()}
    environments = await asyncio.to_thread(environment_records, p)
    for environment in environments:
        environment["job_names"] = [names.get(i, i) for i in environment["jobs"]]
        environment["in_use_names"] = [names.get(i, i) for i in environment["in_use"]]
    return render(request, "environments.html", title="Environments", page="environments", section="environments",
                  environments=environments)
