"""Options defined once: each table (launchspec.OPTIONS for the endpoint runtime, serveroptions.OPTIONS for the
control plane) is the only place an option and its default are written; every surface is built from it.

In process: parsers, click commands (CliRunner), dataclasses, and the source of the classes that hold defaults.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect

import pytest
from click.testing import CliRunner

from trainml_cli import launchspec, serveroptions
from trainml_cli.cli.main import cli


def _help(*argv: str) -> str:
    result = CliRunner().invoke(cli, [*argv, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def _defaults(klass) -> dict:
    return {f.name: f.default for f in dataclasses.fields(klass) if f.default is not dataclasses.MISSING}


RUNTIME_ROWS = [pytest.param(o, id=o.flag) for o in launchspec.OPTIONS]


@pytest.mark.parametrize("option", RUNTIME_ROWS)
def test_every_runtime_option_is_on_every_surface(option):
    from trainml_cli.runtime.config import RuntimeConfig

    parser = launchspec.parser()
    assert option.flag in parser._option_string_actions  # `python -m trainml_cli.runtime`
    if not option.internal:  # --fd and --metrics-dir are the runtime's own business, hidden
        assert option.flag in parser.format_help()
        assert option.flag in _help("endpoint", "serve")
    assert option.dest in {f.name for f in dataclasses.fields(launchspec.LaunchSpec)}
    config = {f.name: f for f in dataclasses.fields(RuntimeConfig)}
    if not option.required and not option.repeat:
        assert config[option.dest].default == option.default, option.dest


def test_endpoint_serve_takes_the_tables_defaults():
    """What click hands the command is the table's default for every option not given."""
    from trainml_cli.cli.endpoint import serve

    params = {p.name: p for p in serve.params}
    for option in launchspec.OPTIONS:
        if option.internal:
            assert option.dest not in params
        elif not option.repeat:
            assert params[option.dest].default == option.default, option.flag


@pytest.mark.parametrize("option", [pytest.param(o, id=o.flag) for o in launchspec.OPTIONS if not o.required])
def test_each_runtime_option_crosses_the_command_line_and_back(option):
    """LaunchSpec -> argv -> LaunchSpec keeps a value given for any row: the control plane and the runtime agree."""
    value = {bool: False, int: 3, float: 2.5, str: "/some/where"}[option.kind]
    spec = launchspec.LaunchSpec(model_dir="/m", **{option.dest: [value] if option.repeat else value})
    assert launchspec.LaunchSpec.from_argv(spec.to_argv()) == spec


def test_a_worker_of_a_group_gets_every_option_but_where_it_listens():
    from trainml_cli.runtime.config import RuntimeConfig

    config = RuntimeConfig(model_dir="/m", host="0.0.0.0", port=9, workers=2, max_queue=7, timeout=3.5,
                           max_body_size=99, access_log=False, max_connections=5, key_file="/k")
    worker = launchspec.LaunchSpec.from_argv(config.to_args())
    assert (worker.max_queue, worker.timeout, worker.max_body_size, worker.access_log, worker.max_connections,
            worker.key_file) == (7, 3.5, 99, False, 5, "/k")
    assert (worker.host, worker.port, worker.workers, worker.fd) == (None, None, None, None)


@pytest.mark.parametrize("argv, message", [
    (["--workers", "100000"], "--workers: 100000 is more than"),
    (["--max-queue", "1000001"], "--max-queue: 1000001 is more than 1,000,000 (requests waiting per worker)"),
    (["--timeout", "0"], "--timeout: 0 must be more than 0"),
    (["--port", "70000"], "--port: 70000 is more than 65535"),
    (["--tls-certfile", "c.pem"], "--tls-certfile and --tls-keyfile go together"),
])
def test_the_runtime_refuses_what_the_table_bounds(argv, message):
    from trainml_cli.errors import UsageError
    from trainml_cli.runtime.config import config_from_args

    with pytest.raises(UsageError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        config_from_args(["--model-dir", "/m", *argv])


SERVER_ROWS = [pytest.param(o, id=o.flag) for o in serveroptions.OPTIONS]


@pytest.mark.parametrize("option", SERVER_ROWS)
def test_every_server_option_is_on_every_surface(option):
    from trainml_cli.server.__main__ import build_parser
    from trainml_cli.server.app import ServerOptions

    assert option.flag in build_parser().format_help()
    for command in ("run", "start", "restart", "install"):
        assert option.flag in _help("server", command)
    if not option.setting:
        assert _defaults(ServerOptions)[option.dest] == option.default


def test_the_ray_backends_defaults_are_the_tables():
    from trainml_cli.server.backends.rayhead import RayOptions

    ray = _defaults(RayOptions)
    assert ray == {"token": None, "serve_host": serveroptions.default("ray_serve_host"),
                   "serve_port": serveroptions.default("ray_serve_port"),
                   "deploy_timeout": serveroptions.default("ray_deploy_timeout"),
                   "stop_grace": serveroptions.default("stop_grace")}


def _literal_defaults(klass) -> list[str]:
    """The fields of a class whose default is written as a literal in its source (None and False aside: they say
    "nothing", not a choice)."""
    tree = ast.parse(inspect.getsource(klass))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Constant) \
                and node.value.value not in (None, False):
            found.append(f"{klass.__name__}.{node.target.id} = {node.value.value!r}")
    return found


def test_no_default_is_written_twice():
    """The classes that hold options take their defaults from the tables, never a copy of the literal; and the
    click commands built from a table name no default of their own."""
    from trainml_cli.cli import endpoint
    from trainml_cli.runtime.config import RuntimeConfig
    from trainml_cli.server.app import ServerOptions
    from trainml_cli.server.backends.rayhead import RayOptions

    literals = []
    for klass in (ServerOptions, RayOptions, RuntimeConfig, launchspec.LaunchSpec):
        literals += _literal_defaults(klass)
    for node in ast.walk(ast.parse(inspect.getsource(endpoint))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "option":
            literals += [f"cli/endpoint.py: default={k.value.value!r}" for k in node.keywords
                         if k.arg == "default" and isinstance(k.value, ast.Constant) and k.value.value is not None]
    assert literals == []
