"""Stored models: model code kept by the platform and reused by jobs (`model.source_type: trainml`).

A model is created from an upload (a local directory the client packed) or a git URI, fetched once into
`HOME/models/ID/`, and referenced by jobs by id or name. Names are unique, so a name is a stable handle. Jobs
get a copy of their own, so removing a model never breaks a job that uses it, and a job that writes its files
never changes the model.

A model record, as the API returns it:

    {"id": "3f2a9c01b7de", "name": "sentiment", "source_type": "local" | "git", "source_uri": "...",
     "git_ref": null, "git_commit": null, "size": 12345 (bytes), "created": "2024-05-01T12:00:00.000Z",
     "status": "ready"}
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from pathlib import Path

from ..errors import Conflict, NotFound, UsageError
from . import archives, sources
from .logs import iso_time
from .redaction import redact
from .store import Store

NAME_LIMIT = 100


def check_name(name, what: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise UsageError.at(("name",), "must not be empty", label=f"{what} name")
    name = name.strip()
    if len(name) > NAME_LIMIT or "/" in name or any(ord(c) < 32 for c in name):
        raise UsageError.at(("name",),
                            f"{name!r} must be at most {NAME_LIMIT} characters, without '/' or control characters",
                             label=f"{what} name")
    return name


def model_not_found(ref: str) -> NotFound:
    return NotFound(f"model {ref!r} not found (see the model list)")


def new_id() -> str:
    return uuid.uuid4().hex[:12]


class Models:
    def __init__(self, store: Store, folder: Path, uploads: archives.Uploads):
        self.store = store
        self.folder = folder
        self.uploads = uploads
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, model_id: str) -> Path:
        return self.folder / model_id

    def record(self, row: dict) -> dict:
        return {
            "id": row["id"],
            "name": row["name"],
            "source_type": row["source_type"],
            "source_uri": redact(row["source_uri"]),
            "git_ref": row["git_ref"],
            "git_commit": row["git_commit"],
            "size": row["size"],
            "created": iso_time(row["created"]),
            "status": "ready",
        }

    def find(self, ref: str) -> dict:
        """A stored model by id or name."""
        row = self.store.model(ref) or self.store.model_named(ref)
        if row is None:
            raise model_not_found(ref)
        return row

    def get(self, ref: str) -> dict:
        return self.record(self.find(ref))

    def list(self) -> list[dict]:
        return [self.record(row) for row in self.store.models()]

    async def create(self, name: str, source_type: str, source_uri: str, git_ref: str | None = None,
                     upload_id: str | None = None) -> dict:
        name = check_name(name, "model")
        if self.store.model_named(name):
            raise Conflict(f"a model named {name!r} already exists; remove it or choose another name")
        model_id = new_id()
        dest = self.path(model_id)
        commit = None
        if source_type == "local":
            if not upload_id:
                raise UsageError("model: source_type local needs an upload_id (POST the packed folder to /api/uploads)")
            archive = self.uploads.path(upload_id)
            await asyncio.to_thread(archives.unpack, archive, dest)
            self.uploads.discard(upload_id)
        elif source_type == "git":
            git_ref = sources.check_git_ref(git_ref, ("git_ref",))
            sources.check_git_uri(source_uri, ("source_uri",))
            commit = await sources.clone(source_uri, git_ref, dest, lambda line: None)
            # The commit is recorded; the history is not model code, and every job made from the model would copy it.
            await asyncio.to_thread(shutil.rmtree, dest / ".git", True)
        else:
            raise UsageError(f"model source_type: {source_type!r} is not one of local, git")
        size = await asyncio.to_thread(sources.tree_size, dest)
        row = {
            # Cloned once, now: the credentials are of no further use, and are never kept or shown.
            "id": model_id, "name": name, "source_type": source_type, "source_uri": redact(source_uri),
            "git_ref": git_ref, "git_commit": commit, "size": size, "created": time.time(),
        }
        try:
            self.store.insert_model(row)
        except KeyError:  # another request took the name while we were fetching
            await asyncio.to_thread(shutil.rmtree, dest, True)
            raise Conflict(f"a model named {name!r} already exists; remove it or choose another name") from None
        return self.record(row)

    def rename(self, ref: str, name: str) -> dict:
        row = self.find(ref)
        name = check_name(name, "model")
        taken = self.store.model_named(name)
        if taken is not None and taken["id"] != row["id"]:
            raise Conflict(f"a model named {name!r} already exists; remove it or choose another name")
        try:
            self.store.rename_model(row["id"], name)
        except KeyError:
            raise Conflict(f"a model named {name!r} already exists; remove it or choose another name") from None
        return self.get(row["id"])

    async def remove(self, ref: str) -> None:
        row = self.find(ref)
        self.store.delete_model(row["id"])
        await asyncio.to_thread(shutil.rmtree, self.path(row["id"]), True)
