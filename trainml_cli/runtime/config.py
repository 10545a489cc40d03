"""The endpoint runtime's settings, from its command line `python -m trainml_cli.runtime`.

The command line itself is defined once, in the shared leaf `launchspec.py` (LaunchSpec, its parser and the
runtime's exit codes): the local backend launches it as a child process, the Ray backend sends the same
arguments to `serve_entry.py` on its replicas, and this module turns them into a RuntimeConfig with the
runtime's defaults. `trainml endpoint serve` builds the same RuntimeConfig with click.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..launchspec import (  # noqa: F401  (the defaults and exit codes, where the runtime's modules look for them)
    DEFAULT_MAX_BODY_SIZE, DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_QUEUE, DEFAULT_TIMEOUT, EXIT_LOAD_FAILED,
    EXIT_PLATFORM_FAILED, LaunchSpec, parser,
)
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
        spec = LaunchSpec(model_dir=self.model_dir, max_concurrency=self.max_concurrency, max_queue=self.max_queue,
                          timeout=self.timeout, max_body_size=self.max_body_size, access_log=self.access_log,
                          metrics_dir=self.metrics_dir or None, key_file=self.key_file,
                          tls_certfile=self.tls_certfile, tls_keyfile=self.tls_keyfile,
                          max_connections=self.max_connections)
        return spec.to_argv()


build_parser = parser  # the runtime's command line (launchspec.parser)


def config_from_args(argv: list[str] | None = None) -> RuntimeConfig:
    from ..errors import UsageError
    from ..routespec import parse_route_json, parse_routes, read_route_file

    spec = LaunchSpec.from_argv(argv)
    given = {k: v for k, v in vars(spec).items() if v is not None and k not in ("routes", "route_file")}
    config = RuntimeConfig(**given)  # the runtime's defaults for what the command line left out
    raws = [parse_route_json(text, i) for i, text in enumerate(spec.routes)]
    if spec.route_file:
        raws += read_route_file(spec.route_file)
    for name in ("workers", "max_concurrency"):
        if getattr(config, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if config.max_queue < 0 or config.timeout <= 0 or config.max_body_size < 1 or config.max_connections < 1:
        raise UsageError("--max-queue must be >= 0, --timeout, --max-body-size and --max-connections > 0")
    if bool(config.tls_certfile) != bool(config.tls_keyfile):
        raise UsageError("--tls-certfile and --tls-keyfile go together")
    problem = limit_problem(config.workers, config.max_concurrency, config.max_queue)
    if problem:
        raise UsageError(problem)
    config.routes = parse_routes(raws)
    return config


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
