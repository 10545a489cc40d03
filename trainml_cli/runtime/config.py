"""The endpoint runtime's settings, from its command line `python -m trainml_cli.runtime`.

The options are defined once, in the shared leaf `launchspec.py` (the table OPTIONS, LaunchSpec, its parser and
the runtime's exit codes): the local backend launches the runtime as a child process, the Ray backend sends the
same arguments to `serve_entry.py` on its replicas, and this module turns them into a RuntimeConfig, a field per
row with the table's defaults. `trainml endpoint serve` builds the same RuntimeConfig with click.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..launchspec import (  # noqa: F401  (the exit codes, where the runtime's modules look for them)
    EXIT_LOAD_FAILED,
    EXIT_PLATFORM_FAILED,
    OPTIONS,
    LaunchSpec,
    option_problem,
    parser,
    record,
)


@dataclass
class RuntimeConfig(record("RuntimeOptions", defaults=True, doc="Every launchspec.OPTIONS row, at its default.")):
    """The runtime's settings: a field per option (routes as routespec.Route objects; route_file is read into
    them), and what the runtime decides for itself."""

    metrics_dir_owned: bool = False  # this process made metrics_dir and removes it when it stops

    def to_args(self) -> list[str]:
        """Command-line arguments that rebuild this config in a worker of its group: every option but where and
        how many listen (the group's socket is handed over) and the routes (the caller adds them)."""
        passed = {o.dest: getattr(self, o.dest) for o in OPTIONS
                  if not o.group and o.dest not in ("routes", "route_file")}
        passed["metrics_dir"] = self.metrics_dir or None
        return LaunchSpec(**passed).to_argv()


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
    problem = option_problem(vars(config))
    if problem:
        raise UsageError(problem)
    config.routes = parse_routes(raws)
    return config
