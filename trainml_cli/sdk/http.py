"""HTTP to the control plane: requests in a worker thread, retries with backoff, errors as TrainMLError.

requests is the design card's client; it blocks, so every call runs in `asyncio.to_thread`. A refused
connection or a 503 is retried with exponential backoff and full jitter (0.1 s doubling, at most 2 s a wait,
RETRIES tries), honouring Retry-After; so is a GET (or other idempotent call) whose pooled connection was
dropped by a server that died. When the server was found through TRAINML_HOME (not an explicit
URL), a refused connection first looks for it again, and starts it if it is gone (see autostart.py).

Errors the server sends (`{"error": kind, "message": ...}`) are raised as the same TrainMLError subclass; so are
an endpoint's (job.call): a model that raised is a ModelError, a call past its timeout a CallTimeout, a full
endpoint an Overloaded (once the retries are spent).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import requests

from ..errors import TrainMLError, Unavailable
from ..settings import Settings
from . import autostart

RETRIES = 7
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 2.0


def backoff(attempt: int, retry_after: str | None = None) -> float:
    """Seconds to wait before retry `attempt` (0-based): full jitter, or the server's Retry-After (capped)."""
    if retry_after:
        try:
            return min(float(retry_after), BACKOFF_MAX * 2)
        except ValueError:
            pass
    return random.uniform(0, min(BACKOFF_MAX, BACKOFF_FIRST * 2**attempt))


def raise_for(response: requests.Response, where: str = "") -> None:
    """Raise the TrainMLError a non-2xx response carries: the class its kind names (errors.py, one vocabulary
    for the control plane and the endpoints), else the one its status does."""
    if response.ok:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "message" not in body:
        text = (response.text or "").strip()[:500]
        body = {"message": f"HTTP {response.status_code} {response.reason}" + (f": {text}" if text else "")}
    raise TrainMLError.from_dict(body, response.status_code, where)


class Http:
    """One control plane connection: base URL and token resolved on first use, one requests.Session."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.url: str | None = None
        self.token: str | None = None
        self.session = requests.Session()
        self.verify = True  # a CA file to verify HTTPS with (tls.client_verify), passed with every request
        self._located = asyncio.Lock()

    async def _ensure(self) -> None:
        async with self._located:
            if self.url is None:
                self.url = await asyncio.to_thread(autostart.locate, self.settings)
                self.token = self.settings.read_token()
                # Endpoints serve the control plane's certificate, so one setting verifies both.
                self.verify = self.settings.verify(self.url)

    async def request(self, method: str, path: str, *, timeout: float | None = None, **kwargs) -> Any:
        """Send a request to the control plane and return its decoded JSON (None for an empty body)."""
        await self._ensure()
        response = await asyncio.to_thread(self._send, method, path, timeout, kwargs)
        if not _ours(response):
            where = "--api-url / TRAINML_API_URL" if self.settings.api_url else "server.json under TRAINML_HOME"
            kind = response.headers.get("content-type", "no content type").split(";")[0]
            raise Unavailable(f"{self.url} did not answer like a trainml control plane (HTTP {response.status_code}, "
                              f"{kind}, to {method} {path}); check {where}")
        raise_for(response)
        if not response.content:
            return None
        return response.json()

    def _send(self, method: str, path: str, timeout: float | None, kwargs: dict) -> requests.Response:
        read_timeout = timeout or self.settings.request_timeout
        body = kwargs.get("data")
        rewind = body.tell() if hasattr(body, "seek") else None
        extra_headers = kwargs.pop("headers", None) or {}
        relocated = False
        for attempt in range(RETRIES):
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            if rewind is not None:
                body.seek(rewind)
            try:
                response = self.session.request(
                    method, self.url + path, headers={**headers, **extra_headers},
                    timeout=(self.settings.connect_timeout, read_timeout), verify=self.verify, **kwargs,
                )
            except requests.exceptions.SSLError as exc:
                raise Unavailable(untrusted("the control plane", self.url, exc)) from None
            except requests.ConnectionError as exc:
                host = _unresolved(exc, self.url)
                if host:  # a typo in the host name: retrying will not fix it
                    raise Unavailable(f"cannot resolve {host} (the control plane URL is {self.url})") from None
                # A reset on a pooled connection usually means the server died after its last answer; only a
                # request that is safe to send twice is sent again then.
                if not _refused(exc) and not (method in IDEMPOTENT and _dropped(exc)):
                    raise Unavailable("lost the connection to the control plane "
                                      f"at {self.url}: {_reason(exc)}") from None
                if not relocated and self.settings.api_url is None:
                    relocated = True  # it may have restarted on another port, or be gone: find (or start) it again
                    self.url = autostart.locate(self.settings)
                    self.token = self.settings.read_token()
                    continue
                if attempt == RETRIES - 1:
                    hint = "" if self.settings.api_url else " (`trainml server start` starts one)"
                    raise Unavailable("cannot reach the control plane at "
                                      f"{self.url}: connection refused{hint}") from None
                time.sleep(backoff(attempt))
                continue
            except requests.Timeout:
                raise Unavailable(f"the control plane at {self.url} did not answer {method} "
                                  f"{path} within {read_timeout:g}s") from None
            if response.status_code == 503 and attempt < RETRIES - 1:
                time.sleep(backoff(attempt, response.headers.get("Retry-After")))
                continue
            return response
        return response

    async def close(self) -> None:
        self.session.close()


def _refused(exc: requests.ConnectionError) -> bool:
    """True when the request never reached a server (so sending it again cannot do anything twice)."""
    text = repr(exc)
    return any(mark in text for mark in ("Connection refused", "ConnectionRefusedError", "NewConnectionError",
                                         "Errno 111"))


def _ours(response: requests.Response) -> bool:
    """Whether the answer looks like our control plane's: JSON, and errors shaped {error, message}."""
    if not response.content:
        return response.ok
    if "json" not in response.headers.get("content-type", ""):
        return False
    if response.ok:
        return True
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and "message" in body and "error" in body


_DNS_MARKS = ("Name or service not known", "nodename nor servname", "Failed to resolve", "getaddrinfo failed",
              "Temporary failure in name resolution", "No address associated with hostname")


def _unresolved(exc: requests.ConnectionError, url: str | None) -> str | None:
    """The host name that did not resolve, or None when the failure was something else."""
    if not any(mark in repr(exc) for mark in _DNS_MARKS):
        return None
    from urllib.parse import urlsplit

    return urlsplit(url or "").hostname or url


def _dropped(exc: requests.ConnectionError) -> bool:
    text = repr(exc)
    return any(mark in text for mark in ("Connection aborted", "RemoteDisconnected", "Connection reset", "Errno 104"))


def untrusted(what: str, url: str, exc: Exception) -> str:
    """The message for a certificate that does not verify: what failed, and what to do."""
    text = str(exc)
    if "verify failed: " in text:
        reason = text.split("certificate verify failed: ", 1)[1].split(" (_ssl", 1)[0]
    else:
        reason = _reason(exc)
    return (f"cannot verify {what}'s certificate at {url}: {reason}; give its CA with --ca-file "
            "(or TRAINML_CA_FILE, REQUESTS_CA_BUNDLE)")


def _reason(exc: Exception) -> str:
    text = str(exc)
    return text.rsplit(":", 1)[-1].strip(" ')\"") or type(exc).__name__
