"""Who may call the API: one FastAPI dependency, `require_auth`, on every /api route but /api/health.

The control plane has one API token, created on first start in `HOME/token` with mode 0600; clients send it as
`Authorization: Bearer <token>`. Other ways in (the dashboard's cookie session) plug in with
`app.state.auth.add_check(fn)`: `fn(request)` returns a principal name when it recognises the caller, or None.

    # in the dashboard's install(app):
    app.state.auth.add_check(lambda request: "dashboard" if valid_session(request.cookies.get("session")) else None)
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from typing import Callable, Optional

from fastapi import Request

from ..errors import Unauthorized

Check = Callable[[Request], Optional[str]]


def ensure_token(path: Path) -> str:
    """The API token, created (mode 0600, never world-readable even for a moment) when missing."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)  # a token file made some other way must not stay readable by others
        token = path.read_text().strip()
        if token:
            return token
        path.unlink()
        return ensure_token(path)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


class Authenticator:
    """Tries each check in turn; the bearer token check comes first."""

    def __init__(self, token: str):
        self.token = token
        self.checks: list[Check] = [self.bearer]

    def add_check(self, check: Check) -> None:
        self.checks.append(check)

    def bearer(self, request: Request) -> str | None:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), self.token.encode()):
            return "token"
        return None

    def authenticate(self, request: Request) -> str:
        for check in self.checks:
            principal = check(request)
            if principal:
                return principal
        if "authorization" in request.headers:
            raise Unauthorized("the API token is wrong: send the one in TRAINML_HOME/token as "
                               "'Authorization: Bearer <token>'")
        raise Unauthorized("this API needs a token: send 'Authorization: Bearer <token>' (the "
                           "token is in TRAINML_HOME/token)")


def require_auth(request: Request) -> str:
    """The FastAPI dependency: the caller's principal, or 401."""
    principal = request.app.state.auth.authenticate(request)
    request.state.principal = principal
    return principal
