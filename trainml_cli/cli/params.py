"""Click parameter types that validate at the boundary, so bad input exits 2 before anything is sent."""

from __future__ import annotations

import click

from ..errors import UsageError


class RouteParam(click.ParamType):
    """One `--route` given as JSON text; parsed here, checked as a set by `validate_routes`."""

    name = "JSON"

    def convert(self, value, param, ctx):
        if isinstance(value, dict):
            return value
        from ..routespec import parse_route_json

        index = _occurrence(ctx, param)
        try:
            return parse_route_json(value, index)
        except UsageError as exc:
            self.fail(str(exc), param, ctx)


def _occurrence(ctx, param) -> int:
    # Click converts a multiple option's values in order; count how many came before this one.
    counter = ctx.meta.setdefault(f"trainml.occurrence.{param.name}", [0])
    index = counter[0]
    counter[0] += 1
    return index


class EnvParam(click.ParamType):
    """`--env KEY=VALUE` -> (key, value)."""

    name = "KEY=VALUE"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        key, sep, val = value.partition("=")
        if not sep or not key or not (key[0].isalpha() or key[0] == "_") or not all(c.isalnum() or c == "_" for c in key):
            self.fail(f"{value!r} is not KEY=VALUE with KEY made of letters, digits and _", param, ctx)
        return key, val


def validate_routes(route_values, route_file=None) -> list:
    """Every route from `--route` and `--route-file`, checked as one set; raises UsageError (exit 2)."""
    from ..routespec import parse_routes, read_route_file

    raws = list(route_values or ())
    if route_file:
        raws += read_route_file(route_file)
    if not raws:
        raise click.UsageError("give at least one --route or a --route-file")
    return parse_routes(raws)


ROUTE = RouteParam()
ENV = EnvParam()
