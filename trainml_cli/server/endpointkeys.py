"""Endpoint keys: made, kept and handed to the runtime for jobs created with `endpoint.auth: true`.

The key lives in two places only: the job's `secrets` column (what the API's connect and rotate-key answers
read) and `HOME/jobs/ID/endpoint.key`, mode 0600, whose path the runtime gets as `--key-file`. It is never in
the job's spec, so never in a job record, a list, an event, the access log or a process's command line. On the
Ray backend the file travels in the job's package to the replicas (backends/rayapps.py), never in the
application's config.

Rotation writes the new key to a temporary file and renames it over the old one: the runtime (runtime/auth.py)
sees a whole key or the previous one, never half a file; it accepts the new key from its first call with it and
refuses the old one within launchspec.KEY_RECHECK_SECONDS. The backend decides how the new key reaches a running
endpoint (`Backend.rotate_key`): the local one rewrites the file and waits that interval out, so both hold when
rotate-key answers; the Ray one deploys the job's package again.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ..contracts import KEY_FILE

SECRET = "endpoint_key"  # its name in the job's secrets column


def new_key() -> str:
    return "tmlk_" + secrets.token_urlsafe(32)  # 256 random bits; the prefix makes a leaked key easy to spot


def write_key(workdir: Path, key: str) -> Path:
    """Write the key where the runtime reads it, readable by this user only; atomic."""
    path = workdir / KEY_FILE
    temporary = workdir / (KEY_FILE + ".new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an older file of that name may have had other bits
        os.write(fd, key.encode() + b"\n")
    finally:
        os.close(fd)
    os.replace(temporary, path)
    return path


def key_file(workdir: Path, row_secrets: dict) -> Path | None:
    """The key file for a job's launch, rewritten from its record when missing; None for a job without a key."""
    key = row_secrets.get(SECRET)
    if not key:
        return None
    path = workdir / KEY_FILE
    if not path.exists():
        write_key(workdir, key)
    return path


def drop_stray(workdir: Path, row_secrets: dict) -> None:
    """Remove a key file the job's record does not hold: one made for a revision that never served (the control
    plane stopped while it was deployed, server/takeover.py)."""
    if not row_secrets.get(SECRET):
        (workdir / KEY_FILE).unlink(missing_ok=True)
