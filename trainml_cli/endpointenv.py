"""What of the control plane's own environment an endpoint gets: an allowlist, defined here once.

The control plane often runs with an operator's secrets in its environment (`AWS_SECRET_ACCESS_KEY`, a CI
token, its own `TRAINML_API_TOKEN`), and model code is not trusted, so an endpoint starts from nothing and
inherits only:

- what any program needs to run here: PATH, HOME, LANG and LC_*, TZ, TMPDIR;
- the GPU stack's settings: CUDA_* and NVIDIA_*;
- the proxies: http_proxy, https_proxy, all_proxy, no_proxy, in lower and upper case, and where the trusted
  CAs are (SSL_CERT_FILE, SSL_CERT_DIR, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE: a proxy that inspects TLS needs its
  own CA trusted; paths, not secrets);
- the names an operator adds with `trainml server run --pass-env NAME[,NAME...]` (or TRAINML_PASS_ENV);
- PYTHONPATH's entry that holds the trainml_cli the control plane runs, when it came from PYTHONPATH and the
  endpoint runs on an interpreter the platform did not build (a built environment has its own copy), so the
  runtime imports the same code the control plane does (a source checkout run with PYTHONPATH=checkout).

The job's driver (server/driver.py) then adds what the job sets (`--env`, secrets, credentials) and what the
platform sets for the runtime (TRAINML_JOB_ID, CUDA_VISIBLE_DEVICES, PYTHONUNBUFFERED, a built environment's
VIRTUAL_ENV and PATH). The Ray backend hands its replicas the job's own variables only.

A leaf (the standard library only): `serveroptions.option_problem` checks `--pass-env` with it before a start.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

ALLOWED = frozenset({
    "PATH", "HOME", "LANG", "TZ", "TMPDIR",
    "http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
})
ALLOWED_PREFIXES = ("LC_", "CUDA_", "NVIDIA_")
# The control plane's API token: with it, model code could drive every job. No option passes it.
NEVER = frozenset({"TRAINML_API_TOKEN"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def allowed(name: str) -> bool:
    return name in ALLOWED or name.startswith(ALLOWED_PREFIXES)


def parse_names(text: str | None) -> tuple[str, ...]:
    """`--pass-env` as names ("A,B" or "A B"); ValueError with one line naming the bad one."""
    names = tuple(dict.fromkeys(part for part in re.split(r"[,\s]+", text or "") if part))
    for name in names:
        if not _NAME.fullmatch(name):
            raise ValueError(f"--pass-env: {name!r} is not an environment variable name (letters, digits, _)")
        if name in NEVER:
            raise ValueError(f"--pass-env: {name} is the control plane's own API token; it never reaches model code")
    return names


def inherited(environ: Mapping[str, str], extra: Iterable[str] = ()) -> dict[str, str]:
    """The part of `environ` an endpoint inherits: the allowlist, plus the `extra` names an operator passes."""
    extra = set(extra) - NEVER
    return {k: v for k, v in environ.items() if (allowed(k) or k in extra) and k not in NEVER}


# An environment's build (uv, and the setup.py of a model's own packages, which it runs) gets the same allowlist,
# plus the installer's own settings: an index URL, find-links, a private index's credentials the operator set for
# uv or pip. Model code never sees those; only a build that needs them does.
INSTALLER_PREFIXES = ("UV_", "PIP_")


def installer_inherited(environ: Mapping[str, str], extra: Iterable[str] = ()) -> dict[str, str]:
    """The part of `environ` an environment's build inherits: what an endpoint does, and the installer's settings."""
    kept = inherited(environ, extra)
    kept.update((k, v) for k, v in environ.items() if k.startswith(INSTALLER_PREFIXES))
    return kept


def runtime_import_path(environ: Mapping[str, str]) -> str | None:
    """The PYTHONPATH entry the control plane's trainml_cli was imported from, or None when it came from the
    interpreter's own paths (an installed package)."""
    home = Path(__file__).resolve().parent.parent
    entries = [e for e in (environ.get("PYTHONPATH") or "").split(os.pathsep) if e]
    return str(home) if any(Path(e).resolve() == home for e in entries) else None
