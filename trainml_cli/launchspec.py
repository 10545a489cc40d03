"""What the endpoint runtime is started with: one dataclass, its command line, and the runtime's exit codes.

This is the contract between the control plane and the runtime, written once. The local backend turns a
LaunchSpec into `python -m trainml_cli.runtime ARGV` (to_argv); the Ray backend sends the same ARGV as the Serve
application's build arguments, and `runtime/serve_entry.py` reads it back on the replica (from_argv). The
runtime's own command line parses with `parser()`, so a flag added here exists everywhere at once.

A leaf: it imports the standard library only, so the CLI, the control plane and a Ray replica can all use it.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields

from .contracts import KEY_FILE

# Defaults chosen for model code: a few calls at once (the GIL and the model's memory bound real parallelism),
# a queue long enough to absorb bursts, and a timeout generous enough for a slow CPU prediction.
DEFAULT_MAX_CONCURRENCY = 8
DEFAULT_MAX_QUEUE = 64
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_BODY_SIZE = 10 * 1024 * 1024

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


@dataclass
class LaunchSpec:
    """One endpoint runtime's arguments. None means "the runtime's default" and is left off the command line."""

    model_dir: str
    route_file: str | None = None
    routes: list[str] = field(default_factory=list)  # routes as JSON texts (repeatable --route)
    host: str | None = None
    port: int | None = None
    fd: int | None = None  # an already-listening socket handed over by the supervisor
    workers: int | None = None
    max_concurrency: int | None = None
    max_queue: int | None = None
    timeout: float | None = None
    max_body_size: int | None = None
    access_log: bool = True
    metrics_dir: str | None = None  # shared by a worker group (set by the runtime for its own workers)
    key_file: str | None = None  # callers must send 'Authorization: Bearer KEY' with the key in this file
    tls_certfile: str | None = None  # serve HTTPS with this certificate (PEM) and key
    tls_keyfile: str | None = None
    max_connections: int | None = None  # open connections per worker; past it requests get 503

    def to_argv(self) -> list[str]:
        argv = ["--model-dir", os.fspath(self.model_dir)]
        if self.route_file is not None:
            argv += ["--route-file", os.fspath(self.route_file)]
        for text in self.routes:
            argv += ["--route", text]
        for item in fields(self):
            if item.name in ("model_dir", "route_file", "routes", "access_log"):
                continue
            value = getattr(self, item.name)
            if value is not None:
                argv += ["--" + item.name.replace("_", "-"), str(value)]
        if not self.access_log:
            argv.append("--no-access-log")
        return argv

    @classmethod
    def from_argv(cls, argv: list[str]) -> "LaunchSpec":
        """The spec back from to_argv's output; argparse exits 2 with its message on a bad argument."""
        args = parser().parse_args(argv)
        return cls(**{item.name: getattr(args, item.name) for item in fields(cls)})


def parser() -> argparse.ArgumentParser:
    """The runtime's command line. Defaults are None here; RuntimeConfig fills in the runtime's own."""
    p = argparse.ArgumentParser(
        prog="python -m trainml_cli.runtime", description="Serve model code from route specs (the endpoint runtime)."
    )
    p.add_argument("--model-dir", required=True)
    p.add_argument("--route", dest="routes", action="append", default=[], help="a route as JSON (repeatable)")
    p.add_argument("--route-file", help="a JSON or YAML list of routes")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default 8000)")
    p.add_argument("--fd", type=int, help="serve on this inherited listening socket")
    p.add_argument("--workers", type=int, help="worker processes sharing the socket (default 1)")
    p.add_argument("--max-concurrency", type=int, help=f"calls running at once per worker (default {DEFAULT_MAX_CONCURRENCY})")
    p.add_argument("--max-queue", type=int, help=f"calls waiting per worker (default {DEFAULT_MAX_QUEUE})")
    p.add_argument("--timeout", type=float, help=f"seconds a call may run (default {DEFAULT_TIMEOUT:g})")
    p.add_argument("--max-body-size", type=int, help=f"bytes (default {DEFAULT_MAX_BODY_SIZE})")
    p.add_argument("--no-access-log", dest="access_log", action="store_false")
    p.add_argument("--metrics-dir", help=argparse.SUPPRESS)
    p.add_argument("--key-file", help="callers must send 'Authorization: Bearer KEY' with the key in this file")
    p.add_argument("--tls-certfile", help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--tls-keyfile", help="the certificate's private key (PEM)")
    p.add_argument("--max-connections", type=int,
                   help="open connections per worker; past it requests get 503 (default 1000)")
    return p
