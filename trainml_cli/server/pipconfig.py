"""pip's configuration, as uv arguments: environments install wherever `pip install` works on this machine.

uv does not read pip's configuration files or PIP_* variables. This reads them as pip does (pip's
"Configuration" docs): files in order global (/etc/xdg/pip/pip.conf, /etc/pip.conf), user
(~/.pip/pip.conf, ~/.config/pip/pip.conf), site (sys.prefix/pip.conf), then PIP_CONFIG_FILE, then PIP_*
variables; within a file, [install] overrides [global]. Later values replace earlier ones, as in pip.

Translated: index-url, extra-index-url, find-links, no-index, cert, constraint, trusted-host. A local
find-links folder or file:// index that does not exist is left out (pip only warns; uv would fail) and
reported, so the build log says why.
"""

from __future__ import annotations

import configparser
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

KEYS = ("index-url", "extra-index-url", "find-links", "no-index", "cert", "constraint", "trusted-host")


@dataclass
class UvOptions:
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # what was left out, for the build log
    sources: list[str] = field(default_factory=list)  # the files read


def _config_files() -> list[Path]:
    xdg = os.environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(os.pathsep)
    files = [Path(d) / "pip" / "pip.conf" for d in xdg if d] + [Path("/etc/pip.conf")]
    home = Path.home()
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    files += [home / ".pip" / "pip.conf", config_home / "pip" / "pip.conf", Path(sys.prefix) / "pip.conf"]
    if os.environ.get("PIP_CONFIG_FILE"):
        if os.environ["PIP_CONFIG_FILE"] == os.devnull:  # pip: "os.devnull" disables every file
            return []
        files.append(Path(os.environ["PIP_CONFIG_FILE"]))
    return files


def read_pip_config() -> tuple[dict[str, str], list[str]]:
    """pip's settings that matter for installs ({key: raw value}), and the files they came from."""
    values: dict[str, str] = {}
    read: list[str] = []
    for path in _config_files():
        parser = configparser.RawConfigParser()
        try:
            if not parser.read(path):
                continue
        except (configparser.Error, UnicodeDecodeError):
            continue
        read.append(str(path))
        for section in ("global", "install"):
            if parser.has_section(section):
                for key, value in parser.items(section):
                    key = key.replace("_", "-")
                    if key in KEYS:
                        values[key] = value
    for key in KEYS:
        env_value = os.environ.get("PIP_" + key.upper().replace("-", "_"))
        if env_value is not None:
            values[key] = env_value
    return values, read


def _local_path(location: str) -> Path | None:
    """The folder or file a location names on this machine (a path or a file:// URL), or None for a remote one."""
    if "://" not in location:
        return Path(location).expanduser()
    parts = urlsplit(location)
    return Path(url2pathname(parts.path)) if parts.scheme == "file" else None


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def uv_options() -> UvOptions:
    values, read = read_pip_config()
    options = UvOptions(sources=read)

    def usable(location: str, what: str) -> bool:
        local = _local_path(location)
        if local is not None and not local.exists():
            options.skipped.append(f"{what} {location} (does not exist here)")
            return False
        return True

    if values.get("index-url") and usable(values["index-url"].strip(), "index-url"):
        options.args += ["--index-url", values["index-url"].strip()]
    for url in values.get("extra-index-url", "").split():
        if usable(url, "extra-index-url"):
            options.args += ["--extra-index-url", url]
    for location in values.get("find-links", "").split():
        if usable(location, "find-links"):
            options.args += ["--find-links", location]
    if _truthy(values.get("no-index", "")):
        options.args.append("--no-index")
    for constraint in values.get("constraint", "").split():
        if usable(constraint, "constraint"):
            options.args += ["--constraint", constraint]
    for host in values.get("trusted-host", "").split():
        options.args += ["--allow-insecure-host", host]
    cert = values.get("cert", "").strip()
    if cert and usable(cert, "cert"):
        options.env["SSL_CERT_FILE"] = cert
    return options
