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
        if (not sep or not key or not (key[0].isalpha() or key[0] == "_")
                or not all(c.isalnum() or c == "_" for c in key)):
            self.fail(f"{value!r} is not KEY=VALUE with KEY made of letters, digits and _", param, ctx)
        return key, val


class FiniteFloat(click.ParamType):
    """A finite number at least `low` (above it when `open_low`): nan and inf are usage errors, not JSON trouble."""

    name = "float"

    def __init__(self, low: float = 0.0, open_low: bool = False):
        self.low, self.open_low = low, open_low

    def convert(self, value, param, ctx):
        import math

        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if number < self.low or (self.open_low and number == self.low):
            self.fail(f"{value!r} must be {'above' if self.open_low else 'at least'} {self.low:g}", param, ctx)
        return number


class ActorOptionsParam(click.ParamType):
    """`--ray-actor-options JSON`: Ray's placement options per replica, checked as the API checks them."""

    name = "JSON"

    def convert(self, value, param, ctx):
        if isinstance(value, dict):
            return value
        from ..actoroptions import parse_actor_options

        try:
            return parse_actor_options(value)
        except UsageError as exc:
            where = exc.fields[0] if exc.fields else None
            key = where.loc[2] if where is not None and len(where.loc) > 2 else None
            self.fail(f"{key}: {where.message}" if key else (where.message if where else str(exc)), param, ctx)


class SecretName(click.ParamType):
    """`--secret NAME`: the name of a stored secret, which becomes the endpoint's environment variable."""

    name = "NAME"

    def convert(self, value, param, ctx):
        if not value or not (value[0].isalpha() or value[0] == "_") or not all(c.isalnum() or c == "_" for c in value):
            self.fail(f"{value!r} is not a secret name: letters, digits and _, not starting with a digit", param, ctx)
        return value


def refused(kind: str):
    """An option trainML has that cannot be honoured here: exit 2 with the reason, before anything is sent."""
    def check(ctx, param, value):
        if value:
            from ..environment import REFUSED

            raise click.BadParameter(REFUSED[kind], ctx=ctx, param=param)
    return check


def validate_routes(route_values, route_file=None) -> list:
    """Every route from `--route` and `--route-file`, checked as one set; raises UsageError (exit 2)."""
    from ..routespec import parse_routes, read_route_file

    raws = list(route_values or ())
    if route_file:
        from_file = read_route_file(route_file)
        if not from_file:  # a 0-byte file, an empty YAML document and `[]` alike
            raise click.UsageError(f"route file {route_file} holds no routes")
        raws += from_file
    if not raws:
        raise click.UsageError("give at least one --route or a --route-file")
    return parse_routes(raws)


ROUTE = RouteParam()
ENV = EnvParam()
SECRET = SecretName()
class GpuCount(FiniteFloat):
    """GPUs per worker or replica: a whole number, or a fraction (0.5), which only the Ray backend gives."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        return int(number) if number.is_integer() else number


GPU_COUNT = GpuCount(0)
SECONDS = FiniteFloat(0, open_low=True)
FINITE_PRICE = FiniteFloat(0)
CREDENTIAL_KINDS = ("aws", "gcp", "kaggle", "azure", "wasabi")  # credentials.KINDS, without importing it for --help


class Limited(click.ParamType):
    """A whole number with a ceiling; past it, the message names the limit and why.

    Not a click.IntRange: click would print the range in --help, and a ceiling set by this machine's CPU count
    must not end up in the generated man pages.
    """

    name = "integer"

    def __init__(self, low: int, high: int, why: str):
        self.low = low
        self.high = high
        self.why = why

    def convert(self, value, param, ctx):
        number = click.IntRange(self.low).convert(value, param, ctx)
        if number > self.high:
            self.fail(f"{number} is more than {self.high:,} ({self.why})", param, ctx)
        return number


class JsonParam(click.ParamType):
    """`--data JSON`, `--data @file.json` or `--data -` (stdin); a syntax error shows where it broke."""

    name = "JSON"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        import json

        source, text = None, value
        if value == "-":
            source, text = "stdin", click.get_text_stream("stdin").read()
        elif value.startswith("@"):
            source = value[1:]
            try:
                with open(source, encoding="utf-8") as handle:
                    text = handle.read()
            except OSError as exc:
                self.fail(f"{source}: {exc.strerror or exc}", param, ctx)
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            lines = text.splitlines() or [text]
            line = lines[min(exc.lineno, len(lines)) - 1]
            self.fail(
                f"{source + ': ' if source else ''}not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}\n"
                f"  {line}\n {' ' * exc.colno}^",
                param,
                ctx,
            )


class RecordRef(click.ParamType):
    """A job or model given by id or unique name; TAB completes names from the server when one answers."""

    def __init__(self, kind: str):
        self.kind = kind  # "jobs" or "models": the SDK collection to list
        self.name = kind[:-1].upper()

    def shell_complete(self, ctx, param, incomplete):
        from click.shell_completion import CompletionItem

        return [CompletionItem(value, help=help) for value, help in _server_names(ctx, self.kind, incomplete)]


def _server_names(ctx, kind: str, incomplete: str) -> list[tuple[str, str]]:
    """Names (then ids) starting with `incomplete`; silently nothing when no server answers quickly.

    Completion runs on every TAB, so it never starts a server and gives up after a couple of seconds.
    """
    try:
        import asyncio

        from ..sdk.client import TrainML
        from ..settings import Settings

        root = ctx.find_root().params
        settings = Settings.from_env(
            home=root.get("home"), api_url=root.get("api_url"), autostart=False, connect_timeout=0.5,
            request_timeout=2.0
        )

        async def fetch():
            async with TrainML(settings=settings) as client:
                return await getattr(client, kind).list()

        records = asyncio.run(asyncio.wait_for(fetch(), 3.0))
    except Exception:  # completion must never print a traceback into the user's prompt
        return []
    found = []
    for record in records:
        status = getattr(record, "status", None) or getattr(record, "source_type", "") or ""
        if record.name and record.name.startswith(incomplete):
            found.append((record.name, status))
    for record in records:
        if incomplete and record.id.startswith(incomplete):
            found.append((record.id, record.name or ""))
    return found


def model_source(model_dir=None, git_uri=None, git_ref=None, model_id=None, *, allow_stored=True) -> dict:
    """Exactly one model source -> the SDK's `model` dict; raises click.UsageError (exit 2) otherwise."""
    import os

    given = [flag for flag, value in (("--model-dir", model_dir), ("--git-uri", git_uri),
                                      ("--model-id", model_id)) if value]
    flags = "--model-dir, --git-uri or --model-id" if allow_stored else "--model-dir or --git-uri"
    if not given:
        raise click.UsageError(f"no model code: give exactly one of {flags}")
    if len(given) > 1:
        raise click.UsageError(f"{' and '.join(given)} are both given: choose one model source")
    if git_ref and not git_uri:
        raise click.UsageError("--git-ref needs --git-uri")
    if model_dir:
        return {"source_type": "local", "source_uri": os.path.abspath(model_dir)}
    if git_uri:
        # A repository on this machine is cloned by the server, whose working directory is not ours.
        uri = os.path.abspath(git_uri) if os.path.exists(git_uri) else git_uri
        if uri[:7].lower() == "file://":  # as a bare path: one that is not there is refused before anything is sent
            from urllib.parse import unquote, urlsplit

            path = unquote(urlsplit(uri).path)
            if not os.path.isdir(path):
                raise click.UsageError(f"--git-uri: no folder {path} on this machine (a file:// repository is "
                                       "cloned from the machine the control plane runs on)")
        source = {"source_type": "git", "source_uri": uri}
        if git_ref:
            source["git_ref"] = git_ref
        return source
    return {"source_type": "trainml", "source_uri": model_id}


DATA = JsonParam()
JOB = RecordRef("jobs")
MODEL = RecordRef("models")
