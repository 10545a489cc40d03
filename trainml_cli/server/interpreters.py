"""The Python interpreters on this machine that an endpoint's environment can be built on.

The default is the control plane's own interpreter. Others are found where Pythons live (PATH, pyenv,
uv's managed Pythons, /usr/bin, /usr/local/bin) and asked for their version by running them: a pyenv shim or
a broken link fails that question and is left out. Nothing is ever downloaded. The list is cached for a
minute; asking for a version that is missing looks again at once, so a Python installed meanwhile is found.
Probing runs processes: callers on the event loop use a worker thread.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

MIN_VERSION = (3, 9)  # what the runtime (pydantic 2, uvicorn) supports
CACHE_SECONDS = 60.0
_PROBE = "import json, sys; print(json.dumps([list(sys.version_info[:3]), sys.executable, sys.implementation.name]))"


@dataclass(frozen=True)
class Interpreter:
    path: str  # the real executable, links resolved
    version: str  # "3.12.1"
    implementation: str = "cpython"
    default: bool = False

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.version.split("."))

    def to_dict(self) -> dict:
        return {"path": self.path, "version": self.version, "implementation": self.implementation,
                "default": self.default}


def _candidates() -> list[str]:
    found = [sys.executable]
    for folder in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/local/bin", "/usr/bin"]:
        if folder and "shims" not in Path(folder).parts:  # pyenv shims answer for one version only, or fail
            found += glob.glob(os.path.join(folder, "python3")) + glob.glob(os.path.join(folder, "python3.[0-9]*"))
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found += glob.glob(os.path.join(pyenv, "versions", "*", "bin", "python3"))
    uv_pythons = os.environ.get("UV_PYTHON_INSTALL_DIR") or os.path.expanduser("~/.local/share/uv/python")
    found += glob.glob(os.path.join(uv_pythons, "*", "bin", "python3"))
    return [p for p in dict.fromkeys(found) if not p.endswith("-config") and os.access(p, os.X_OK)]


def probe(path: str) -> Interpreter | None:
    """Ask one executable what it is; None unless it is a Python the runtime can use."""
    try:
        done = subprocess.run([path, "-I", "-c", _PROBE], capture_output=True, text=True, timeout=10,
                              stdin=subprocess.DEVNULL)
        (major, minor, micro), executable, implementation = json.loads(done.stdout)
    except (OSError, ValueError, TypeError, subprocess.SubprocessError):
        return None
    if (major, minor) < MIN_VERSION:
        return None
    return Interpreter(os.path.realpath(executable or path), f"{major}.{minor}.{micro}", implementation)


class Interpreters:
    def __init__(self, default: str | None = None):
        self.default_path = default or sys.executable
        self._cache: tuple[float, list[Interpreter]] | None = None
        self._default: Interpreter | None = None

    def default(self) -> Interpreter:
        if self._default is None:  # it does not change while the control plane runs: ask once
            found = probe(self.default_path)
            if found is None:
                raise UsageError(f"the endpoints' interpreter {self.default_path} does not run")
            self._default = Interpreter(found.path, found.version, found.implementation, True)
        return self._default

    def all(self, fresh: bool = False) -> list[Interpreter]:
        if not fresh and self._cache and time.monotonic() - self._cache[0] < CACHE_SECONDS:
            return self._cache[1]
        with ThreadPoolExecutor(8) as pool:
            probed = [i for i in pool.map(probe, _candidates()) if i is not None]
        default = self.default()
        unique = {default.path: default}
        for interpreter in probed:
            unique.setdefault(interpreter.path,
                              Interpreter(interpreter.path, interpreter.version, interpreter.implementation))
        listed = sorted(unique.values(), key=lambda i: (i.version_tuple, not i.default, i.path))
        self._cache = (time.monotonic(), listed)
        return listed

    def resolve(self, request: str | None, loc: tuple = ("environment", "python")) -> Interpreter:
        """The interpreter for a request: None (the default), a version ('3.12', '3.12.1') or a path."""
        if not request:
            return self.default()
        if "/" in request:
            found = probe(request)
            if found is not None and found.path == self.default().path:
                return self.default()
            if found is None:
                raise UsageError.at(loc, f"{request} is not a Python {MIN_VERSION[0]}.{MIN_VERSION[1]} or newer "
                                 f"that runs here; {self.describe()}")
            return found
        parts = request.removeprefix("python").split(".")
        if not all(p.isdigit() for p in parts) or not 1 <= len(parts) <= 3:
            raise UsageError.at(loc, f"{request!r} is not a version such as 3.12 or a path to an interpreter")
        numbers = tuple(int(p) for p in parts)
        if len(numbers) >= 2 and numbers[:2] < MIN_VERSION or numbers[0] < MIN_VERSION[0]:
            # Not "not found": even if the machine had it, the endpoint runtime could not run on it.
            raise UsageError.at(loc, f"Python {request} is not supported: endpoints run on Python "
                                f"{MIN_VERSION[0]}.{MIN_VERSION[1]} or newer; {self.describe()}")
        for fresh in (False, True):
            matches = [i for i in self.all(fresh) if i.version.split(".")[:len(parts)] == parts]
            if matches:
                # The default interpreter when it matches, else the newest patch release.
                return next((i for i in matches if i.default), max(matches, key=lambda i: i.version_tuple))
        raise UsageError.at(loc, f"no Python {request} on the control plane's machine; {self.describe()}")

    def describe(self) -> str:
        versions = ", ".join(i.version + (" (default)" if i.default else "") for i in self.all())
        return f"available: {versions}"
