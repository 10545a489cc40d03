"""The control plane's options, each defined once: `trainml server run|start|install` (click),
`python -m trainml_cli.server` (argparse), the command line `server restart` starts again, and `ServerOptions`
are all built from the table below. Adding an option is adding a row.

A leaf (the standard library and settings.py only), so the CLI builds its options without importing the server stack.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any, Optional

from .settings import Settings

STOP_GRACE = 10.0  # seconds endpoints get to finish their calls when stopped, before SIGKILL
UNRESPONSIVE_AFTER = 30.0  # seconds without an answer to /ping before a running endpoint counts as hung
MAX_CONNECTIONS = 1000  # the control plane's open connections, as an endpoint worker's (runtime/connections.py)
_SETTINGS = {f.name: f.default for f in fields(Settings)}  # --host and --port default to what Settings says


@dataclass(frozen=True)
class ServerOption:
    flag: str  # "--stop-grace"
    kind: type  # str, int or float
    default: Any
    help: str
    metavar: Optional[str] = None
    low: Optional[float] = None  # smallest value allowed
    high: Optional[float] = None
    env: Optional[str] = None  # environment variable giving the default
    existing_file: bool = False  # a path that must exist (an interpreter)
    setting: bool = False  # where the server listens (Settings), not a ServerOptions field
    choices: Optional[tuple] = None  # the only values allowed

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def default_value(self) -> Any:
        if self.env and os.environ.get(self.env) is not None:
            return self.kind(os.environ[self.env])
        return self.default


OPTIONS: tuple[ServerOption, ...] = (
    ServerOption("--host", str, _SETTINGS["host"], "Address to listen on.", setting=True),
    ServerOption("--port", int, _SETTINGS["port"], "Port to listen on; 0 picks a free one (recorded in TRAINML_HOME/server.json).",
                 low=0, high=65535, setting=True),
    ServerOption("--gpus", str, None, "GPUs jobs may use: 'none' or INDEX:TYPE,... (default: ask nvidia-smi).",
                 metavar="SPEC", env="TRAINML_GPUS"),
    ServerOption("--python", str, None, "Python interpreter that runs endpoints without an environment of their "
                 "own, e.g. a venv with your models' packages (default: the control plane's).", metavar="PATH",
                 existing_file=True),
    ServerOption("--stop-grace", float, STOP_GRACE, "Time endpoints get to finish their calls when stopped, before "
                 "they are killed.", metavar="SECONDS", low=0),
    ServerOption("--unresponsive-after", float, UNRESPONSIVE_AFTER, "Restart a running endpoint that has not "
                 "answered /ping for this long.", metavar="SECONDS", low=1),
    ServerOption("--max-connections", int, MAX_CONNECTIONS, "Open connections to the API and dashboard; at the cap "
                 "the oldest idle ones are closed to admit new ones, and with every one busy requests get 503.",
                 metavar="N", low=1),
    # HTTPS for the API, the dashboard and every endpoint (tls.py); both or neither.
    ServerOption("--tls-certfile", str, None, "Serve the API, the dashboard and every endpoint over HTTPS with this "
                 "certificate (PEM).", metavar="FILE", existing_file=True),
    ServerOption("--tls-keyfile", str, None, "The certificate's private key (PEM, unencrypted).", metavar="FILE",
                 existing_file=True),
    # Where endpoints run (server/backends/): this machine, or a Ray Serve cluster driven over its HTTP API.
    ServerOption("--backend", str, "local", "Where endpoints run: processes on this machine, or a Ray Serve "
                 "cluster (see --ray-address).", choices=("local", "ray")),
    ServerOption("--ray-address", str, None, "The Ray head's dashboard, http://HEAD:8265 (--backend ray). Never "
                 "expose that port.", metavar="URL"),
    ServerOption("--ray-token-file", str, None, "File holding the Ray cluster's auth token (RAY_AUTH_MODE=token), "
                 "sent as a Bearer token.", metavar="PATH", existing_file=True),
    ServerOption("--ray-serve-host", str, "127.0.0.1", "Where Ray Serve's HTTP proxies listen (set when Serve "
                 "first starts on the cluster)."),
    ServerOption("--ray-serve-port", int, 8000, "Ray Serve's HTTP port; job URLs are "
                 "http://SERVE_HOST:PORT/e/JOB_ID.", low=1, high=65535),
    ServerOption("--ray-deploy-timeout", float, 120.0, "A Ray Serve deploy not running after this long fails the "
                 "job, saying why.", metavar="SECONDS", low=1),
)


def option_problem(values: dict) -> str | None:
    """What is wrong with a combination of options, as one line; None when they fit together."""
    if values.get("backend") == "ray" and not values.get("ray_address"):
        return "--backend ray needs --ray-address http://HEAD:8265 (the Ray head's dashboard)"
    return None


def option_fields() -> list[str]:
    """The ServerOptions fields: every option but where the server listens."""
    return [o.dest for o in OPTIONS if not o.setting]


def add_arguments(parser) -> None:
    """Every option on an argparse parser (`python -m trainml_cli.server`)."""
    for option in OPTIONS:
        parser.add_argument(option.flag, type=option.kind, default=option.default_value(), metavar=option.metavar,
                            help=option.help, choices=option.choices)


def to_argv(values: dict, *, settings: bool = True) -> list[str]:
    """The `python -m trainml_cli.server` arguments for these values (what `server restart` starts again).
    `settings=False` leaves out --host and --port (a background start picks its own)."""
    argv: list[str] = []
    for option in OPTIONS:
        value = values.get(option.dest)
        if value is None or (option.setting and not settings):
            continue
        if option.kind is float:
            value = f"{value:g}" if float(value).is_integer() else repr(float(value))
        argv += [option.flag, str(value)]
    return argv
