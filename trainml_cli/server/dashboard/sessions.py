"""Dashboard access: one-time login links and the session cookie they exchange for.

The control plane's API token is the only credential on this machine. `trainml server dashboard` spends it on
`POST /api/dashboard/login-links`, which answers a URL holding a random single-use token that expires in a few
minutes. Visiting that URL trades the token for a session cookie (HttpOnly, SameSite=Strict) and the browser
never sees the API token.

The session cookie is signed rather than looked up: `v1.<expires>.<nonce>.<hmac>`, keyed with a key derived
from the API token. So a session survives a control plane restart (it reconciles its jobs; it should not log
the user out), needs no table, and dies with the token if the token is replaced. Signing cannot revoke one
cookie early; signing out clears it in the browser, and sessions are short-lived.

Link tokens are kept in memory only, hashed: a restart voids the links in flight, which is what a user expects
of a link that lives five minutes anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

COOKIE = "trainml_session"
LINK_TTL = 300.0  # seconds a login link stays valid
SESSION_TTL = 12 * 3600  # seconds a browser session lasts
# Cookie-authenticated calls that change something must carry this header: a cross-site form cannot set it, and
# a cross-site fetch with it needs a CORS preflight we never grant. SameSite=Strict already stops such requests;
# this is the second lock on the same door.
CSRF_HEADER = "x-trainml-dashboard"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Sessions:
    """Issues login links, redeems them once, and signs and checks session cookies."""

    def __init__(self, api_token: str, *, link_ttl: float = LINK_TTL, session_ttl: float = SESSION_TTL,
                 clock=time.time):
        # A key of its own, so a leaked cookie signature says nothing about the API token.
        self._key = hmac.new(api_token.encode(), b"trainml dashboard session v1", hashlib.sha256).digest()
        self.link_ttl = link_ttl
        self.session_ttl = session_ttl
        self._clock = clock
        self._links: dict[str, float] = {}  # sha256(token) -> expiry
        self._lock = threading.Lock()

    # -- one-time links -----------------------------------------------------------------------------------------

    def new_link_token(self) -> tuple[str, float]:
        token = secrets.token_urlsafe(32)
        expires = self._clock() + self.link_ttl
        with self._lock:
            self._forget_expired()
            self._links[_digest(token)] = expires
        return token, expires

    def redeem(self, token: str | None) -> bool:
        """True once per valid, unexpired token; the token is gone afterwards whatever the answer."""
        if not token or len(token) > 200:
            return False
        with self._lock:
            expires = self._links.pop(_digest(token), None)
            self._forget_expired()
        return expires is not None and expires > self._clock()

    def _forget_expired(self) -> None:
        now = self._clock()
        for digest in [d for d, expires in self._links.items() if expires <= now]:
            del self._links[digest]

    # -- cookies ------------------------------------------------------------------------------------------------

    def new_cookie(self) -> str:
        expires = int(self._clock() + self.session_ttl)
        body = f"v1.{expires}.{secrets.token_urlsafe(12)}"
        return f"{body}.{self._sign(body)}"

    def check_cookie(self, value: str | None) -> bool:
        if not value or len(value) > 300:
            return False
        body, _, signature = value.rpartition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(body).encode()):  # str: TypeError if not ASCII
            return False
        parts = body.split(".")
        if len(parts) != 3 or parts[0] != "v1" or not parts[1].isdigit():
            return False
        return int(parts[1]) > self._clock()

    def _sign(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()

    def authorizes(self, request) -> bool:
        """Does this request carry a valid session, and (for calls that change things) the dashboard's header?"""
        if not self.check_cookie(request.cookies.get(COOKIE)):
            return False
        return request.method in SAFE_METHODS or request.headers.get(CSRF_HEADER) == "1"


def cookie_options(request, max_age: int) -> dict:
    """Set-Cookie attributes: never readable by scripts, never sent on cross-site requests."""
    return {
        "key": COOKIE,
        "max_age": max_age,
        "path": "/",
        "httponly": True,
        "samesite": "strict",
        # Secure only over https: a browser would drop a Secure cookie set over plain http from 127.0.0.1.
        "secure": request.url.scheme == "https",
    }


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
