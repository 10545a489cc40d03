"""The control plane's home is readable by this user only.

TRAINML_HOME and its folders holding secrets are 0700: `secrets/` (`--secret` values), `git-credentials/` (git
URIs with their credentials), `jobs/` and each `jobs/ID/` (the endpoint key, what the endpoint prints). The files
holding one are 0600: `trainml.db` and its -wal and -shm (the database makes them so: store.py), `token`,
`server.log`, each job's `endpoint.key`, `stdout.log` and `stderr.log`. Whoever creates one gives it that mode
from the start (Vault, endpointkeys, tailing, auth); `secure_home` puts back on every start what an earlier
version, or a hand, left wider.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..settings import Settings

log = logging.getLogger("trainml.server")

FOLDER = 0o700
FILE = 0o600
JOB_FILES = ("endpoint.key", "stdout.log", "stderr.log")  # in each job's folder


def private_folder(path: Path) -> Path:
    """`path`, made if missing, 0700."""
    path.mkdir(mode=FOLDER, parents=True, exist_ok=True)
    _chmod(path, FOLDER)
    return path


def secure_home(settings: Settings) -> None:
    private_folder(settings.home)
    for folder in (settings.secrets_dir, settings.git_credentials_dir, settings.jobs_dir):
        if folder.is_dir():
            _chmod(folder, FOLDER)
    for path in (settings.token_path, settings.server_log):  # (the database is the store's)
        _chmod(path, FILE)
    for folder in (settings.secrets_dir, settings.git_credentials_dir):
        for path in _children(folder):
            _chmod(path, FILE)
    for job in _children(settings.jobs_dir):
        if job.is_dir() and not job.is_symlink():
            _chmod(job, FOLDER)
            for name in JOB_FILES:
                _chmod(job / name, FILE)


def _children(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def _chmod(path: Path, mode: int) -> None:
    try:
        if not path.is_symlink():
            os.chmod(path, mode)
    except FileNotFoundError:
        pass
    except OSError as exc:  # not ours (a shared folder given as the home): say so, and go on
        log.warning("cannot make %s private (mode %o): %s", path, mode, exc.strerror or exc)
