"""Endpoint keys: `Authorization: Bearer KEY` on every call but /ping and /metrics.

The key is never on the runtime's command line (any local user can read /proc/PID/cmdline): the control plane
writes it to a file only its user can read (0600) and passes the file's path (`--key-file`). The file is read
again when it changes, looked at once a second at most (launchspec.KEY_RECHECK_SECONDS), and at once when a
call brings a key this worker does not hold (one stat per refused call), so a rotated key works in every worker
from its first call, and the old one stops within the interval, without a restart.

Keys are compared with hmac.compare_digest, whose time does not depend on where the first difference is.
"""

from __future__ import annotations

import hmac
import json
import os
import time

from ..errors import Unauthorized, UsageError
from ..launchspec import KEY_RECHECK_SECONDS

_PREFIX = b"bearer "
MIN_KEY_LENGTH = 16  # a key anyone could guess in a few tries is no key


class KeyFile:
    def __init__(self, path: str):
        self.path = path
        self._stamp = None
        self._checked = 0.0
        self.key = b""
        self._reload(force=True)

    def _reload(self, force: bool = False) -> None:
        try:
            stat = os.stat(self.path)
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if not force and stamp == self._stamp:
                return
            with open(self.path, "rb") as f:
                key = f.read().strip()
        except OSError as exc:
            if force:
                raise UsageError(f"--key-file {self.path}: {exc.strerror}") from None
            return  # mid-rotation (the file is replaced by a rename): keep the key we have
        if len(key) < MIN_KEY_LENGTH:
            if force:
                raise UsageError(f"--key-file {self.path}: the key must be at least {MIN_KEY_LENGTH} characters")
            return
        self.key = key
        self._stamp = stamp

    def allows(self, headers) -> bool:
        now = time.monotonic()
        if now - self._checked > KEY_RECHECK_SECONDS:
            self._checked = now
            self._reload()
        for name, value in headers:
            if name == b"authorization":
                if value[:7].lower() != _PREFIX:
                    return False
                given = value[7:].strip()
                if hmac.compare_digest(given, self.key):
                    return True
                # Perhaps a key rotated since our last look: look now, so a new key never waits for the interval.
                before = self._stamp
                self._reload()
                return self._stamp != before and hmac.compare_digest(given, self.key)
        return False


UNAUTHORIZED = json.dumps({"error": Unauthorized.kind, "message": "this endpoint needs its key: send the header "
                           "'Authorization: Bearer KEY' (trainml job connect JOB shows the key)"}).encode()
CHALLENGE = [(b"www-authenticate", b'Bearer realm="trainml endpoint"')]
