"""`trainml endpoint serve`: run the endpoint runtime in the foreground, without the control plane.

The same server the control plane launches for a job, for trying model code locally or running it under a
process manager of your own. Its options are the runtime's own, one click option per row of launchspec.OPTIONS
(but those the runtime sets for itself).
"""

from __future__ import annotations

import click

from ..launchspec import CAPTURE_OPTIONS, OPTIONS
from .params import ROUTE, Limited, validate_routes


def _click_option(option, default=True):
    """One row of launchspec.OPTIONS as a click option (`default=False`: None when not given, the runtime's
    default named in the help, as a job's options are: only what is given goes into its spec)."""
    if option.kind is bool:
        return click.option(f"{option.flag}/--no-{option.flag[2:]}", option.dest, default=option.default,
                            show_default=True, help=option.help)
    if option.repeat:
        kind = ROUTE  # the one repeatable option: routes, parsed and checked as the control plane does
    elif option.path:
        kind = click.Path(exists=option.exists, file_okay=option.path == "file", dir_okay=option.path == "dir")
    elif option.why:  # a ceiling worth explaining, kept out of --help (it may be this machine's CPU count)
        kind = Limited(int(option.low), option.ceiling(), option.why)
    elif option.kind is int:
        kind = click.IntRange(option.low, option.ceiling())
    elif option.kind is float:
        kind = click.FloatRange(option.low, option.ceiling(), min_open=option.low_open)
    else:
        kind = str
    if not default:
        shown = f"{option.default:g}" if option.kind is float else f"{option.default}"
        return click.option(option.flag, option.dest, type=kind, metavar=option.metavar,
                            help=f"{option.help} Default: {shown}.")
    return click.option(option.flag, option.dest, type=kind, default=option.default, required=option.required,
                        multiple=option.repeat, show_default=option.default is not None, metavar=option.metavar,
                        help=option.help)


def capture_options(function):
    """--capture, --capture-max-bytes and --capture-size (launchspec.CAPTURE_OPTIONS) for a job: None when not
    given, passed as the keyword `capture` ({dest: value} of those given)."""
    import functools

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        kwargs["capture"] = {o.dest: v for o in CAPTURE_OPTIONS if (v := kwargs.pop(o.dest)) is not None}
        return function(*args, **kwargs)

    for option in reversed(CAPTURE_OPTIONS):
        wrapper = _click_option(option, default=False)(wrapper)
    return wrapper


def runtime_options(function):
    """Every option of the runtime a user sets (launchspec.OPTIONS, defined once), passed as **options."""
    for option in reversed(OPTIONS):
        if not option.internal:
            function = _click_option(option)(function)
    return function


@click.group()
def endpoint():
    """Serve model code in the foreground (no control plane)."""


@endpoint.command()
@runtime_options
def serve(**options):
    """Serve MODEL_DIR's functions as REST routes until interrupted.

    \b
    trainml endpoint serve --model-dir examples/sentiment --port 8000 \\
      --route '{"verb":"POST","path":"/predict","file":"predict","function":"predict",
                "body":[{"name":"text","type":"str"}]}'

    A route with "batch": {"max_size": 32, "max_wait_ms": 5} is batched: its function gets up to 32 requests
    in one call, one list per param, and returns one result per request, in order. GET /metrics answers
    Prometheus' text format, summed over all workers.
    """
    from ..runtime.config import RuntimeConfig
    from ..runtime.server import serve as run

    routes = validate_routes(options.pop("routes"), options.pop("route_file"))
    code = run(RuntimeConfig(routes=routes, **options))
    return 1 if code else 0
