"""The control plane's options, each defined once: `trainml server run|start|restart|install` (click),
`python -m trainml_cli.server` (argparse), the saved options file and `ServerOptions` are all built from the
table below. Adding an option is adding a row.

The options a home's control plane was started with are data that persists: `TRAINML_HOME/server-options.json`
(Settings.options_file), written by the one writer `save_options` once a control plane is up (and by `server
install`), read by the one reader `saved_options` at every start, whoever starts it (the auto-start of any CLI
or SDK call, `server restart`, the systemd unit, the start after a crash). Its shape:

    {"version": 1, "options": {"gpus": "0:rtx3090", "tls_certfile": "/abs/cert.pem", "port": 0, ...}}

It holds the options someone chose (on a command line, then or before), never the defaults: an option never
chosen takes its default (or its environment variable) at each start. What a command line gives overrides what
is saved, and is saved in turn.

A leaf (the standard library, settings.py, errors.py and endpointenv.py only), so the CLI builds its options
without importing the server stack.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, Optional

from .endpointenv import parse_names
from .errors import UsageError
from .settings import Settings

OPTIONS_FILE_VERSION = 1

STOP_GRACE = 10.0  # seconds endpoints get to finish their calls when stopped, before SIGKILL
UNRESPONSIVE_AFTER = 30.0  # seconds without an answer to /ping before a running endpoint counts as hung
MAX_CONNECTIONS = 1000  # the control plane's open connections, as an endpoint worker's (connections.py)
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
    ServerOption("--port", int, _SETTINGS["port"],
                 "Port to listen on; 0 picks a free one (recorded in TRAINML_HOME/server.json).",
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
    # Endpoints inherit an allowlist of the control plane's environment (endpointenv.py); these names join it.
    ServerOption("--pass-env", str, None, "Variables of the control plane's environment that endpoints inherit "
                 "besides the allowlist (PATH, HOME, LANG, LC_*, TZ, TMPDIR, CUDA_*, NVIDIA_*, proxies, CA "
                 "bundles), e.g. HF_HOME,LD_LIBRARY_PATH.", metavar="NAME[,NAME...]", env="TRAINML_PASS_ENV"),
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
    # Traces (server/tracing.py): the API's calls, jobs' steps and every endpoint's calls, to one OTLP collector.
    ServerOption("--otlp-endpoint", str, None, "Send traces of API calls, job steps and endpoint calls to this "
                 "OTLP/HTTP collector, e.g. http://127.0.0.1:4318 (needs the otel extra).", metavar="URL",
                 env="OTEL_EXPORTER_OTLP_ENDPOINT"),
    ServerOption("--ray-deploy-timeout", float, 120.0, "A Ray Serve deploy not running after this long fails the "
                 "job, saying why.", metavar="SECONDS", low=1),
)


def option_problem(values: dict) -> str | None:
    """What is wrong with a combination of options, as one line; None when they fit together."""
    if values.get("backend") == "ray" and not values.get("ray_address"):
        return "--backend ray needs --ray-address http://HEAD:8265 (the Ray head's dashboard)"
    try:
        parse_names(values.get("pass_env"))
    except ValueError as exc:
        return str(exc)
    return None


def option_fields() -> list[str]:
    """The ServerOptions fields: every option but where the server listens."""
    return [o.dest for o in OPTIONS if not o.setting]


def default(dest: str) -> Any:
    """One option's default as the table says (not its environment variable): for the classes that take an
    option under a name of their own (the Ray backend's serve_host is ray_serve_host)."""
    return next(option.default for option in OPTIONS if option.dest == dest)


def record(name: str) -> type:
    """A frozen dataclass with a field per option but where the server listens, at the table's defaults: the
    base of server/app.py's ServerOptions."""
    return make_dataclass(name,
                          [(o.dest, Optional[o.kind], field(default=o.default)) for o in OPTIONS if not o.setting],
                          frozen=True)


def add_arguments(parser) -> None:
    """Every option on an argparse parser (`python -m trainml_cli.server`). Only the options given appear in the
    parsed namespace: the others come from the saved options, then the defaults (see `resolve`)."""
    import argparse

    for option in OPTIONS:
        parser.add_argument(option.flag, type=option.kind, default=argparse.SUPPRESS, metavar=option.metavar,
                            help=option.help, choices=option.choices)


def given_in(argv: list[str]) -> dict:
    """The options an old control plane's command line gave (server.json's `args`, before the options file)."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    try:
        known, _rest = parser.parse_known_args([str(a) for a in argv])
    except SystemExit:  # argparse's way of saying the line does not parse: nothing usable in it
        return {}
    return vars(known)


def defaults() -> dict:
    """Every option's value when nobody chose it: its default, or its environment variable."""
    return {option.dest: option.default_value() for option in OPTIONS}


def resolve(settings: Settings, given: dict) -> tuple[dict, dict]:
    """(chosen, effective): the saved options overridden by `given` (what a command line says), and every option's
    value with the defaults for those never chosen. Paths are made absolute (a background control plane runs in
    TRAINML_HOME). Raises UsageError when the saved file is spoiled."""
    chosen = {**saved_options(settings), **{k: v for k, v in given.items() if v is not None}}
    for option in OPTIONS:
        if option.existing_file and chosen.get(option.dest):
            chosen[option.dest] = os.path.abspath(os.path.expanduser(chosen[option.dest]))
    return chosen, {**defaults(), **chosen}


def saved_options(settings: Settings) -> dict:
    """The options saved for this home (the one reader of Settings.options_file); {} when none were saved."""
    path = settings.options_file
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read ({exc.strerror}); fix it or remove it") from None
    except ValueError:
        raise UsageError(f"{path}: not JSON; fix it or remove it (every option then takes its default)") from None
    values = data.get("options") if isinstance(data, dict) else None
    if not isinstance(values, dict):
        raise UsageError(f"{path}: no \"options\" object; fix it or remove it")
    by_dest = {option.dest: option for option in OPTIONS}
    # An option this version does not know (saved by a newer one) is left out rather than refused.
    return {dest: _checked(by_dest[dest], value, path) for dest, value in values.items() if dest in by_dest}


def _checked(option: ServerOption, value: Any, path) -> Any:
    if value is None:
        return None
    kind = option.kind
    ok = isinstance(value, kind) or (kind is float and isinstance(value, int))
    if not ok or isinstance(value, bool):
        raise UsageError(f"{path}: {option.dest}: {value!r} is not a{'n' if kind is int else ''} {kind.__name__}; "
                         "fix it or remove it")
    value = kind(value)
    if (option.choices and value not in option.choices) or (option.low is not None and value < option.low) or (
            option.high is not None and value > option.high):
        raise UsageError(f"{path}: {option.dest}: {value!r} is out of range for {option.flag}; fix it or remove it")
    return value


def save_options(settings: Settings, chosen: dict) -> None:
    """Write the chosen options for this home (the one writer): a whole file or none (a temporary file renamed
    over it), readable by its owner only."""
    path = settings.options_file
    text = json.dumps({"version": OPTIONS_FILE_VERSION,
                       "options": {o.dest: chosen[o.dest] for o in OPTIONS if chosen.get(o.dest) is not None}},
                      indent=2) + "\n"
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(partial, path)
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise


def to_argv(values: dict, *, settings: bool = True) -> list[str]:
    """The `python -m trainml_cli.server` arguments for these values, each option once.
    `settings=False` leaves out --host and --port."""
    argv: list[str] = []
    for option in OPTIONS:
        value = values.get(option.dest)
        if value is None or (option.setting and not settings):
            continue
        if option.kind is float:
            value = f"{value:g}" if float(value).is_integer() else repr(float(value))
        argv += [option.flag, str(value)]
    return argv
