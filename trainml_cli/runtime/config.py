"""The endpoint runtime's settings and its command line, `python -m trainml_cli.runtime`.

This command line is the contract between the control plane and the runtime: the supervisor launches it as a
child process and never imports the runtime. `trainml endpoint serve` builds the same RuntimeConfig with click.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

# Defaults chosen for model code: a few calls at once (the GIL and the model's memory bound real parallelism),
# a queue long enough to absorb bursts, and a timeout generous enough for a slow CPU prediction.
DEFAULT_MAX_CONCURRENCY = 8
DEFAULT_MAX_QUEUE = 64
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_BODY_SIZE = 10 * 1024 * 1024

EXIT_LOAD_FAILED = 3  # the model code could not be loaded; restarting will not help
# The machine refused what the endpoint needs (threads, the socket): not the model code's fault. Distinct from
# 3 because uvicorn exits 3 on any startup failure, which the control plane would report as a load failure.
EXIT_PLATFORM_FAILED = 4
DEFAULT_MAX_CONNECTIONS = 1000  # per worker; below the usual limit of 1024 open files


@dataclass
class RuntimeConfig:
    model_dir: str
    routes: list = field(default_factory=list)  # routespec.Route objects
    host: str = "127.0.0.1"
    port: int = 8000
    fd: int | None = None  # an already-listening socket handed over by the supervisor
    workers: int = 1
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    max_queue: int = DEFAULT_MAX_QUEUE
    timeout: float = DEFAULT_TIMEOUT
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    access_log: bool = True
    metrics_dir: str | None = None  # shared by a worker group for prometheus_client's multiprocess files
    metrics_dir_owned: bool = False  # this process made it and removes it when it stops (not a command-line flag)
    key_file: str | None = None  # the endpoint's key (runtime/auth.py); None: anyone who can connect may call
    tls_certfile: str | None = None  # serve HTTPS with this certificate (PEM) and key
    tls_keyfile: str | None = None
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def to_args(self) -> list[str]:
        """Command-line arguments that rebuild this config in a worker process (routes go by file)."""
        args = ["--model-dir", os.fspath(self.model_dir)]
        args += ["--max-concurrency", str(self.max_concurrency), "--max-queue", str(self.max_queue)]
        args += ["--timeout", str(self.timeout), "--max-body-size", str(self.max_body_size)]
        if not self.access_log:
            args.append("--no-access-log")
        if self.metrics_dir:
            args += ["--metrics-dir", self.metrics_dir]
        for flag, value in (("--key-file", self.key_file), ("--tls-certfile", self.tls_certfile),
                            ("--tls-keyfile", self.tls_keyfile)):
            if value:
                args += [flag, value]
        args += ["--max-connections", str(self.max_connections)]
        return args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainml_cli.runtime", description="Serve model code from route specs (the endpoint runtime)."
    )
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--route", action="append", default=[], help="a route as JSON (repeatable)")
    parser.add_argument("--route-file", help="a JSON or YAML list of routes")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--fd", type=int, default=None, help="serve on this inherited listening socket")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-concurrency", type=int, default=DEFAULT_MAX_CONCURRENCY)
    parser.add_argument("--max-queue", type=int, default=DEFAULT_MAX_QUEUE)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    parser.add_argument("--max-body-size", type=int, default=DEFAULT_MAX_BODY_SIZE)
    parser.add_argument("--no-access-log", dest="access_log", action="store_false")
    parser.add_argument("--metrics-dir", help=argparse.SUPPRESS)  # set by the worker supervisor for its workers
    parser.add_argument("--key-file", help="callers must send 'Authorization: Bearer KEY' with the key in this file")
    parser.add_argument("--tls-certfile", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-keyfile", help="the certificate's private key (PEM)")
    parser.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS,
                        help=f"open connections per worker; past it requests get 503 (default {DEFAULT_MAX_CONNECTIONS})")
    return parser


def config_from_args(argv: list[str] | None = None) -> RuntimeConfig:
    from ..errors import UsageError
    from ..routespec import parse_route_json, parse_routes, read_route_file

    args = build_parser().parse_args(argv)
    raws = [parse_route_json(text, i) for i, text in enumerate(args.route)]
    if args.route_file:
        raws += read_route_file(args.route_file)
    for name in ("workers", "max_concurrency"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if args.max_queue < 0 or args.timeout <= 0 or args.max_body_size < 1 or args.max_connections < 1:
        raise UsageError("--max-queue must be >= 0, --timeout, --max-body-size and --max-connections > 0")
    if bool(args.tls_certfile) != bool(args.tls_keyfile):
        raise UsageError("--tls-certfile and --tls-keyfile go together")
    problem = limit_problem(args.workers, args.max_concurrency, args.max_queue)
    if problem:
        raise UsageError(problem)
    return RuntimeConfig(
        model_dir=args.model_dir,
        routes=parse_routes(raws),
        host=args.host,
        port=args.port,
        fd=args.fd,
        workers=args.workers,
        max_concurrency=args.max_concurrency,
        max_queue=args.max_queue,
        timeout=args.timeout,
        max_body_size=args.max_body_size,
        access_log=args.access_log,
        metrics_dir=args.metrics_dir,
        key_file=args.key_file,
        tls_certfile=args.tls_certfile,
        tls_keyfile=args.tls_keyfile,
        max_connections=args.max_connections,
    )


def limit_problem(workers: int, max_concurrency: int, max_queue: int) -> str | None:
    """What is past the machine's limits, as one line naming the option and the limit; None when all fit."""
    from ..limits import MAX_CONCURRENCY, MAX_QUEUE, cpu_count

    if workers > cpu_count():
        return f"--workers: {workers} is more than this machine's {cpu_count()} CPUs"
    if max_concurrency > MAX_CONCURRENCY:
        return f"--max-concurrency: {max_concurrency} is more than {MAX_CONCURRENCY} (threads per worker)"
    if max_queue > MAX_QUEUE:
        return f"--max-queue: {max_queue} is more than {MAX_QUEUE:,} (requests waiting per worker)"
    return None
