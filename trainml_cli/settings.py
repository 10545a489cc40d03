"""Settings built once, from arguments first and the environment second, then passed down.

Tests change `TRAINML_HOME` (and ports), never patch module globals.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .contracts import ServerRecord


LOOPBACK_HOSTS = ("localhost", "127.", "[::1]", "::1")


def api_url_of(value: str | None) -> str | None:
    """The control plane URL from --api-url / TRAINML_API_URL. trainML's form has no scheme (`api.trainml.ai`)
    and means HTTPS; so it does here, but for a loopback host (localhost, 127.x, [::1]), which means the plain
    HTTP a control plane on this machine answers by default. ValueError for another scheme."""
    if not value:
        return None
    value = value.strip()
    if "://" not in value:
        scheme = "http" if value.lower().startswith(LOOPBACK_HOSTS) else "https"
        return f"{scheme}://{value}"
    if not value.lower().startswith(("http://", "https://")):
        raise ValueError(f"{value!r} must start with http:// or https:// (or be a host[:port], as trainML's)")
    return value


def default_home() -> Path:
    return Path(os.environ.get("TRAINML_HOME") or Path.home() / ".trainml").expanduser()


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=default_home)
    api_url: str | None = None  # None: read from the home's server file, or start a server there
    token: str | None = None
    host: str = "127.0.0.1"
    port: int = 0  # 0: the server picks a free port and records it in the home
    connect_timeout: float = 5.0
    request_timeout: float = 60.0
    autostart: bool = True
    ca_file: str | None = None  # verify an HTTPS control plane and endpoints with these CAs (see tls.py)

    @classmethod
    def from_env(cls, *, home=None, api_url=None, token=None, ca_file=None, **overrides) -> Settings:
        home_path = Path(home).expanduser() if home else default_home()
        return cls(
            home=home_path,
            api_url=api_url_of(api_url or os.environ.get("TRAINML_API_URL")),
            token=(token or os.environ.get("TRAINML_API_TOKEN") or None),
            ca_file=(ca_file or os.environ.get("TRAINML_CA_FILE") or None),
            **overrides,
        )

    def verify(self, url: str | None = None):
        """What requests verifies the control plane at `url` (and its endpoints) with: see tls.client_verify."""
        from .tls import client_verify

        record = self.read_server_file()
        return client_verify(self.ca_file,
                             record.tls_certfile if record and (url is None or record.url == url) else None)

    # Everything the control plane keeps lives under home; these names are the one place that says where.
    @property
    def database_path(self) -> Path:
        return self.home / "trainml.db"

    @property
    def token_path(self) -> Path:
        return self.home / "token"

    @property
    def server_file(self) -> Path:
        """The running server's record (contracts.ServerRecord), written once it listens."""
        return self.home / "server.json"

    @property
    def options_file(self) -> Path:
        """The control plane's options, saved for every later start (serveroptions.saved_options)."""
        return self.home / "server-options.json"

    @property
    def server_log(self) -> Path:
        return self.home / "server.log"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def jobs_dir(self) -> Path:
        return self.home / "jobs"

    @property
    def envs_dir(self) -> Path:
        """Endpoint environments (virtualenvs), one folder per key."""
        return self.home / "envs"

    @property
    def secrets_dir(self) -> Path:
        """`trainml secret create` values, one file each (server/vault.py)."""
        return self.home / "secrets"

    @property
    def git_credentials_dir(self) -> Path:
        """Each job's git URI with its credentials, for its clones (server/gitcredentials.py)."""
        return self.home / "git-credentials"

    @property
    def uv_cache_dir(self) -> Path:
        return self.home / "uv-cache"

    @property
    def lock_file(self) -> Path:
        """Held by the running server, which also writes its record there (found even when server.json is lost)."""
        return self.home / "server.lock"

    def read_server_file(self, lock_fallback: bool = True) -> ServerRecord | None:
        """The running control plane's record, or None if there is none to read.

        server.json first; when it is missing or spoiled, the record the server keeps in its lock file. Either may
        be stale (a killed server): callers check the server answers before they trust it.
        """
        from .contracts import read_record

        for path in (self.server_file, self.lock_file) if lock_fallback else (self.server_file,):
            record = read_record(path)
            if record is not None:
                return record
        return None

    def read_token(self) -> str | None:
        if self.token:
            return self.token
        try:
            return self.token_path.read_text().strip() or None
        except OSError:
            return None
