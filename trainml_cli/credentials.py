"""`--credential aws|gcp|kaggle|azure|wasabi` (trainML's worker key types): the user's own credential files,
handed to the endpoint by where they are, never by their contents.

The control plane runs endpoints on this machine as this user, so the endpoint reads the same files the user's
tools read; nothing secret crosses the API or lands in a job record. Each kind is found where its own tools
look (their environment variable first, then the default path); a kind with no file is a usage error naming
what is missing and how to make it.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UsageError

# kind -> (variable the tools read, default path, is a folder, what to run when missing)
KINDS = {
    "aws": ("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials", False, "run `aws configure`"),
    "gcp": ("GOOGLE_APPLICATION_CREDENTIALS", "~/.config/gcloud/application_default_credentials.json", False,
            "run `gcloud auth application-default login`"),
    "kaggle": ("KAGGLE_CONFIG_DIR", "~/.kaggle", True, "save kaggle.json from your Kaggle account page there"),
    "azure": ("AZURE_CONFIG_DIR", "~/.azure", True, "run `az login`"),
    "wasabi": ("WASABI_SHARED_CREDENTIALS_FILE", "~/.wasabi/credentials", False,
               "write an AWS-style credentials file with your Wasabi keys there"),
}
_MARKER = {"kaggle": "kaggle.json"}  # a folder counts only when it holds this


def check_kind(kind, field: str = "--credential", loc: tuple = ("environment", "credentials")) -> str:
    if not isinstance(kind, str) or kind.lower() not in KINDS:
        raise UsageError.at(loc, f"{kind!r} is not one of {', '.join(KINDS)}", label=field)
    return kind.lower()


def credential_env(kinds, field: str = "--credential", loc: tuple = ("environment", "credentials")) -> list[dict]:
    """[{key, value}] environment entries pointing the endpoint at each kind's local file or folder. `field` is
    what the user wrote (the CLI's option, the SDK's argument); a missing kind's problem is at `loc` + (kind,)."""
    env = []
    for kind in dict.fromkeys(check_kind(k, field, loc) for k in kinds or ()):
        variable, default, folder, advice = KINDS[kind]
        given = os.environ.get(variable)
        path = Path(given or default).expanduser()
        found = path.is_dir() if folder else path.is_file()
        if found and kind in _MARKER:
            found = (path / _MARKER[kind]).is_file()
        if not found:
            where = f"${variable} ({given})" if given else default + (f"/{_MARKER[kind]}" if kind in _MARKER else "")
            raise UsageError.at((*loc, kind), f"no {kind} credentials found at {where}; {advice}, or leave out "
                                f"{field} {kind}", label=f"{field} {kind}")
        env.append({"key": variable, "value": str(path.resolve())})
    return env
