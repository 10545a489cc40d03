"""The dashboard's pages for stored models: the list with its create form, and one model's details.

Everything these pages change goes through the REST API (POST /api/uploads, POST /api/models, DELETE
/api/models/{id}) from models.js; the pages only render what the model service returns. A model is made from
a folder on this computer (the same upload widget as the Create form) or a git URI, and an endpoint is made
from it through the Create form, with the model chosen (`/dashboard/create?model=ID`).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from fastapi import APIRouter, Request

from ...errors import NotFound
from ..archives import MAX_UPLOAD_BYTES
from .pages import ROOT, platform, render, signed_in, to_sign_in

router = APIRouter(prefix=ROOT, include_in_schema=False)
MAX_LISTED = 200  # files listed on a model's page; the rest are counted


@router.get("/models")
async def models_page(request: Request):
    if not signed_in(request):
        return to_sign_in()
    p = platform(request)
    return render(request, "models.html", title="Models", page="models", section="models", models=p.models.list(),
                  users=_users(p), max_upload=MAX_UPLOAD_BYTES)


@router.get("/models/{model_id}")
async def model_page(request: Request, model_id: str):
    if not signed_in(request):
        return to_sign_in()
    p = platform(request)
    try:
        model = p.models.get(model_id)
    except NotFound:
        return render(request, "signed_out.html", status=404, title="Not found", page="missing",
                      heading="No such model",
                      message=f"There is no stored model {model_id!r}; it may have been removed.",
                      show_command=False)
    files, more = await asyncio.to_thread(_files, p.models.path(model["id"]))
    return render(request, "model.html", title=model["name"], page="model", section="models", model=model,
                  files=files, more=more, users=_users(p).get(model["id"], []))


def _users(p) -> dict[str, list[dict]]:
    """Model id -> the endpoints made from it (they run a copy: removing the model leaves them be)."""
    found: dict[str, list[dict]] = {}
    for job in p.jobs.list():
        if job["model"].get("source_type") == "trainml":
            found.setdefault(job["model"].get("source_uri"), []).append({"id": job["id"], "name": job["name"]})
    return found


def _files(folder: Path) -> tuple[list[tuple[str, int]], int]:
    """(relative path, bytes) of the model's first files, sorted, and how many more there are."""
    listed: list[tuple[str, int]] = []
    more = 0
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            if len(listed) >= MAX_LISTED:
                more += 1
                continue
            path = Path(root) / name
            try:
                listed.append((str(path.relative_to(folder)), path.stat().st_size))
            except OSError:
                continue
    return listed, more
