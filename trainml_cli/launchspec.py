"""What the endpoint runtime is started with: its options, each defined once, and the runtime's exit codes.

This is the contract between the control plane and the runtime, written once. Every option is a row of OPTIONS,
and every surface is built from the table: the LaunchSpec dataclass the control plane fills in, its command line
`python -m trainml_cli.runtime ARGV` (to_argv, and `parser()` that reads it back), the runtime's RuntimeConfig
with its defaults (runtime/config.py) and `trainml endpoint serve`'s click options (cli/endpoint.py). The local
backend launches the ARGV as a child process; the Ray backend sends it as the Serve application's build
arguments, and `runtime/serve_entry.py` reads it back on the replica. Adding an option is adding a row.

A leaf: it imports the standard library and limits.py only, so the CLI, the control plane and a Ray replica can
all use it.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field, make_dataclass
from typing import Any, Callable, Optional, Union

from .contracts import KEY_FILE
from .limits import MAX_CONCURRENCY, MAX_QUEUE, cpu_count

# Defaults chosen for model code: a few calls at once (the GIL and the model's memory bound real parallelism),
# a queue long enough to absorb bursts, and a timeout generous enough for a slow CPU prediction.
DEFAULT_MAX_CONCURRENCY = 8
DEFAULT_MAX_QUEUE = 64
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_BODY_SIZE = 10 * 1024 * 1024
DEFAULT_MAX_CONNECTIONS = 1000  # per worker; below the usual limit of 1024 open files
# Autoscaling on one machine: a worker goes after 5 idle minutes; a call waits for a cold start up to 2 minutes
# (a big model's import); calls must wait 30 s before a worker is added (Ray Serve's upscale delay).
DEFAULT_IDLE_TIMEOUT = 300.0
DEFAULT_COLD_START_TIMEOUT = 120.0
DEFAULT_UPSCALE_DELAY = 30.0
# Request capture (runtime/capture.py): off unless a rate is given; each stored body cut at 64 KiB, and the job's
# captures kept under 100 MiB (the oldest segments go first).
DEFAULT_CAPTURE_MAX_BYTES = 64 * 1024
DEFAULT_CAPTURE_SIZE = 100 * 1024 * 1024
CAPTURE_FOLDER = "requests"  # in the job's folder: the control plane reads what the endpoint writes there

# The runtime's exit codes, as the control plane reads them.
EXIT_OK = 0
EXIT_USAGE = 2  # the runtime refused its arguments
EXIT_LOAD_FAILED = 3  # the model code could not be loaded; restarting will not help
# The machine refused what the endpoint needs (threads, the socket): not the model code's fault. Distinct from
# 3 because uvicorn exits 3 on any startup failure, which the control plane would report as a load failure.
EXIT_PLATFORM_FAILED = 4

# How stale a worker's copy of its --key-file may be: it looks at the file again at its first call this long
# after its last look (and at once when a call brings a key it does not hold). After rotating a key the
# control plane waits this long, so the old key is refused by every worker once rotate-key returns.
KEY_RECHECK_SECONDS = 1.0
# On Ray, a rotated key reaches running replicas in a package of its own: the deployment's user_config names it
# under KEY_PACKAGE_FIELD, the key is its member KEY_PACKAGE_MEMBER (server/backends/rayapps.py writes both,
# runtime/serve_entry.py reads them).
KEY_PACKAGE_FIELD = "key_package"
KEY_PACKAGE_MEMBER = KEY_FILE
# On Ray, a URL under /e that no job's application serves reaches one shared fallback application (deployed by
# server/backends/rayfallback.py, answering in runtime/fallback.py): its deployment's user_config holds
# {FALLBACK_STATES_FIELD: {job id: state}}, a state of FALLBACK_STATES, for the jobs whose callers should retry (503)
# rather than be told there is no job there (404).
FALLBACK_DEPLOYMENT = "fallback"
FALLBACK_STATES_FIELD = "jobs"
FALLBACK_STATES = {
    "starting": "the endpoint is starting",
    "updating": "the endpoint is being updated",
    "stopping": "the endpoint is stopping",
    "running": "the endpoint is not routed yet",  # a moment while Serve's proxies take its route again
}


@dataclass(frozen=True)
class RuntimeOption:
    flag: str  # "--max-queue"
    kind: type  # str, int or float; bool is a --NAME/--no-NAME switch
    default: Any  # the runtime's own default (RuntimeConfig's); None: none
    help: str
    metavar: Optional[str] = None
    low: Optional[float] = None  # smallest value allowed
    low_open: bool = False  # `low` itself refused (a timeout of 0 s)
    high: Union[int, Callable[[], int], None] = None  # largest value allowed; a function when the machine says
    why: Optional[str] = None  # what sets `high`, named when a value passes it
    path: Optional[str] = None  # "file" or "dir": a path (the CLI checks it exists when `exists`)
    exists: bool = True
    required: bool = False
    repeat: bool = False  # given any number of times: a list
    internal: bool = False  # set by the control plane or the runtime itself: hidden, not on `endpoint serve`
    group: bool = False  # where and how many processes listen: a worker of a group is not given it (to_args)
    name: Optional[str] = None  # the field's name, when not the flag's

    @property
    def dest(self) -> str:
        return self.name or self.flag.lstrip("-").replace("-", "_")

    def ceiling(self) -> Optional[int]:
        return self.high() if callable(self.high) else self.high

    def problem(self, value: Any) -> Optional[str]:
        """What is wrong with a value given for this option, as one line naming it; None when it fits."""
        if value is None or self.kind not in (int, float):
            return None
        if self.kind is float and not math.isfinite(value):
            return f"{self.flag}: {value} is not a finite number"
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return f"{self.flag}: {value:g} must be {'more than' if self.low_open else 'at least'} {self.low:g}"
        high = self.ceiling()
        if high is not None and value > high:
            if self.why:
                return f"{self.flag}: {value} is more than {high:,} ({self.why})"
            return f"{self.flag}: {value} is more than {high}"
        return None


OPTIONS: tuple[RuntimeOption, ...] = (
    RuntimeOption("--model-dir", str, None, "Folder with the model code.", path="dir", required=True),
    RuntimeOption("--route", str, None, "A route as JSON (repeatable).", repeat=True, name="routes"),
    RuntimeOption("--route-file", str, None, "A JSON or YAML list of routes.", path="file", exists=False),
    RuntimeOption("--host", str, "127.0.0.1", "Address to listen on.", group=True),
    RuntimeOption("--port", int, 8000, "Port (0: any free one).", low=0, high=65535, group=True),
    RuntimeOption("--fd", int, None, "Serve on this inherited listening socket.", low=0, internal=True, group=True),
    RuntimeOption("--workers", int, 1, "Processes, for CPU-bound code; at most one per CPU.", low=1, high=cpu_count,
                  why="this machine's CPUs", group=True),
    RuntimeOption("--max-concurrency", int, DEFAULT_MAX_CONCURRENCY, "Calls (or batches) running at once, per "
                  f"worker; at most {MAX_CONCURRENCY}.", low=1, high=MAX_CONCURRENCY, why="threads per worker"),
    RuntimeOption("--max-queue", int, DEFAULT_MAX_QUEUE, "Requests waiting, per worker; beyond it: 503 with "
                  f"Retry-After. At most {MAX_QUEUE:,}.", low=0, high=MAX_QUEUE, why="requests waiting per worker"),
    RuntimeOption("--timeout", float, DEFAULT_TIMEOUT, "Seconds a call may run before the client gets 504 (time in "
                  "the queue not counted).", low=0, low_open=True),
    RuntimeOption("--max-body-size", int, DEFAULT_MAX_BODY_SIZE, "Largest request body in bytes; larger gets 413.",
                  low=1),
    RuntimeOption("--access-log", bool, True, "One line per request."),
    RuntimeOption("--inline-calls", bool, True, "Run a sync function's calls on the event loop once they have "
                  "proved short (--no-inline-calls: always on the call threads)."),
    # Shared by a worker group for prometheus_client's multiprocess files; the runtime sets it for its workers.
    RuntimeOption("--metrics-dir", str, None, "Where a worker group keeps its metrics.", internal=True),
    RuntimeOption("--key-file", str, None, "Callers must send 'Authorization: Bearer KEY' with the key in this file "
                  "(read again when it changes); /ping and /metrics stay open.", path="file"),
    RuntimeOption("--tls-certfile", str, None, "Serve HTTPS with this certificate (PEM).", path="file"),
    RuntimeOption("--tls-keyfile", str, None, "The certificate's private key (PEM).", path="file"),
    # A new revision started beside the serving one on the same socket (server/revisions.py) must not take a call
    # before its code has loaded: it accepts only once loaded, and exits 3 without accepting when it cannot load.
    RuntimeOption("--load-first", bool, False, "Accept connections only once the model code has loaded.",
                  internal=True),
    # The local backend's endpoints hand their listening socket to a control plane that adopted them, so that it
    # can start a new revision on it (handover.py). Not passed to a group's workers: the leader holds the socket.
    RuntimeOption("--hand-over", bool, False, "Give the listening socket to a process of this user that asks.",
                  internal=True, group=True),
    RuntimeOption("--max-connections", int, DEFAULT_MAX_CONNECTIONS, "Open connections per worker; past it "
                  "requests get 503.", low=1),
    # Autoscaling on this machine (runtime/waker.py): --min-workers turns it on, --workers is then the most. The
    # leader holds the socket and wakes workers; its workers are not given these (group=True).
    RuntimeOption("--min-workers", int, None, "Autoscale between this many workers (0: scale to zero when idle) "
                  "and --workers.", low=0, high=cpu_count, why="this machine's CPUs", internal=True, group=True),
    RuntimeOption("--idle-timeout", float, DEFAULT_IDLE_TIMEOUT, "Autoscaling: seconds of low load (none at all "
                  "for the last worker) before a worker stops.", low=0, internal=True, group=True),
    RuntimeOption("--upscale-delay", float, DEFAULT_UPSCALE_DELAY, "Autoscaling: seconds calls must wait before "
                  "a worker is added.", low=0, internal=True, group=True),
    RuntimeOption("--target-ongoing", float, None, "Autoscaling: calls in flight per worker to aim at (default: "
                  "half of --max-concurrency).", low=0, low_open=True, internal=True, group=True),
    RuntimeOption("--cold-start-timeout", float, DEFAULT_COLD_START_TIMEOUT, "Autoscaling: seconds a call waits "
                  "for a worker while scaled to zero; past it 503.", low=0, low_open=True, internal=True, group=True),
    RuntimeOption("--scale-file", str, None, "Where the autoscaler writes its state (contracts.ScaleState); its "
                  "workers add it to /metrics.", internal=True),
    # A worker started by the autoscaler writes its pid here once its code has loaded.
    RuntimeOption("--ready-fd", int, None, "Write this process's pid to this pipe once loaded.", low=0,
                  internal=True, group=True),
    RuntimeOption("--capture", float, 0.0, "Share of calls whose request and answer are kept (0 to 1; 0: off), "
                  "read with `trainml job requests`.", metavar="RATE", low=0, high=1),
    RuntimeOption("--capture-max-bytes", int, DEFAULT_CAPTURE_MAX_BYTES, "Longest stored body of a captured call, "
                  "in bytes; longer ones are cut, with a marker.", metavar="BYTES", low=1),
    RuntimeOption("--capture-size", int, DEFAULT_CAPTURE_SIZE, "Most bytes of captured calls kept; the oldest "
                  "go first.", metavar="BYTES", low=1),
    RuntimeOption("--capture-dir", str, None, "Where captured calls are written (default: ./requests).",
                  path="dir", exists=False),
    # The names of the environment variables that hold the job's secrets: their values are redacted from what
    # capture stores (the values themselves never cross the command line).
    RuntimeOption("--secret-env", str, None, "An environment variable holding a secret.", repeat=True,
                  internal=True, name="secret_env"),
)


# What a job's endpoint spec may set of them (server/payload.py), and `job create endpoint` / `job update` offer.
CAPTURE_OPTIONS = tuple(option for option in OPTIONS if option.flag in ("--capture", "--capture-max-bytes",
                                                                         "--capture-size"))


def defaults() -> dict:
    """Every option's value when nobody chose it."""
    return {option.dest: option.default for option in OPTIONS}


def record(name: str, *, defaults: bool, doc: str) -> type:
    """A dataclass with one field per row: the runtime's defaults (`defaults=True`), or None ("the runtime's
    default", left off the command line) for every option but the required ones."""

    def spec(option: RuntimeOption) -> tuple:
        if option.required:
            return option.dest, option.kind
        if option.repeat:
            return option.dest, list, field(default_factory=list)
        return option.dest, Optional[option.kind], field(default=option.default if defaults else None)

    return make_dataclass(name, [spec(option) for option in OPTIONS], namespace={"__doc__": doc})


def option_problem(values: dict) -> str | None:
    """What is wrong with these values (a RuntimeConfig's), as one line naming the option; None when they fit."""
    for option in OPTIONS:
        problem = option.problem(values.get(option.dest))
        if problem:
            return problem
    if bool(values.get("tls_certfile")) != bool(values.get("tls_keyfile")):
        return "--tls-certfile and --tls-keyfile go together"
    return None


class LaunchSpec(record("LaunchSpec", defaults=False, doc="")):
    """One endpoint runtime's arguments, a field per row of OPTIONS (routes as JSON texts). None means "the
    runtime's default" and is left off the command line."""

    def to_argv(self) -> list[str]:
        argv: list[str] = []
        for option in OPTIONS:
            value = getattr(self, option.dest)
            if option.repeat:
                for item in value:
                    argv += [option.flag, str(item)]
            elif option.kind is bool:
                if value is not None:
                    argv.append(option.flag if value else "--no-" + option.flag[2:])
            elif value is not None:
                argv += [option.flag, os.fspath(value) if option.path else str(value)]
        return argv

    @classmethod
    def from_argv(cls, argv: list[str]) -> LaunchSpec:
        """The spec back from to_argv's output; argparse exits 2 with its message on a bad argument."""
        args = parser().parse_args(argv)
        return cls(**{option.dest: getattr(args, option.dest) for option in OPTIONS})


def parser() -> argparse.ArgumentParser:
    """The runtime's command line. Defaults are None here ("not given"); RuntimeConfig fills in the runtime's own."""
    p = argparse.ArgumentParser(
        prog="python -m trainml_cli.runtime", description="Serve model code from route specs (the endpoint runtime)."
    )
    for option in OPTIONS:
        shown = option.help if option.default is None else f"{option.help} (default: {_shown(option)})"
        extra: dict = {"help": argparse.SUPPRESS if option.internal else shown}
        if option.kind is bool:
            extra.update(action=argparse.BooleanOptionalAction, default=None)
        elif option.repeat:
            extra.update(action="append", default=[])
        else:
            extra.update(type=option.kind, required=option.required, metavar=option.metavar)
        p.add_argument(option.flag, dest=option.dest, **extra)
    return p


def _shown(option: RuntimeOption) -> str:
    return f"{option.default:g}" if option.kind is float else str(option.default)
