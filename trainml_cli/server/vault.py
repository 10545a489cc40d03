"""Named secrets (`trainml secret create NAME`), handed to endpoints as environment variables.

Each secret is one file, `TRAINML_HOME/secrets/NAME`, mode 0600 in a 0700 folder, written to a temporary file
first so a reader never sees half a value. Values leave this module only for an endpoint's environment
(`values`): the API lists names and times, never values, and job records keep the names only.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from ..errors import NotFound, UsageError

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # it becomes an environment variable's name
MAX_VALUE = 64 * 1024


def check_secret_name(name, loc: tuple = (), label: str | None = "secret name") -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise UsageError.at(loc, f"{name!r} must be letters, digits and _, not starting with a digit "
                            "(it becomes the endpoint's environment variable)", label=label)
    return name


class Vault:
    def __init__(self, folder: Path):
        self.folder = folder

    def _path(self, name: str) -> Path:
        return self.folder / check_secret_name(name)

    def put(self, name: str, value: str) -> dict:
        if not isinstance(value, str) or not value:
            raise UsageError(f"secret {name}: the value is empty")
        if len(value.encode()) > MAX_VALUE:
            raise UsageError(f"secret {name}: the value is longer than {MAX_VALUE // 1024} KiB")
        path = self._path(name)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        partial = path.with_name(f".{name}.{os.getpid()}.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(value)
        os.replace(partial, path)
        return self.record(name)

    def record(self, name: str) -> dict:
        path = self._path(name)
        if not path.is_file():
            raise NotFound(f"no secret named {name!r}; store one with `trainml secret create {name}`")
        return {"name": name, "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.stat().st_mtime))}

    def list(self) -> list[dict]:
        if not self.folder.is_dir():
            return []
        return [self.record(p.name) for p in sorted(self.folder.iterdir()) if p.is_file() and NAME.match(p.name)]

    def remove(self, name: str) -> None:
        self.record(name)  # NotFound when missing
        self._path(name).unlink()

    def check(self, names, loc: tuple = ("environment", "secrets")) -> list[str]:
        """The names a job asks for, each existing; UsageError naming the first that does not."""
        if names is None:
            return []
        if not isinstance(names, list):
            raise UsageError.at(loc, f"{names!r} must be a list of secret names")
        for i, name in enumerate(names):
            check_secret_name(name, (*loc, i), label=None)
            if not self._path(name).is_file():
                raise UsageError.at((*loc, i), f"no secret named {name!r}; store it first with "
                                    f"`trainml secret create {name}`")
        return list(dict.fromkeys(names))

    def values(self, names: list[str]) -> dict[str, str]:
        """{NAME: value} for an endpoint's environment; a secret removed since the job was created is skipped
        (the caller logs which)."""
        found = {}
        for name in names:
            try:
                found[name] = self._path(name).read_text(encoding="utf-8")
            except (OSError, UsageError):
                continue
        return found
