"""Import the user's model code once and find each route's function, with messages that name the route.

The model dir becomes the working directory and the first entry of sys.path, so the user's code imports its
own helpers and opens its files as it would when run by hand. A failure names the route and shows the traceback
of the user's code only, not ours.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ModelCodeError, UsageError
from ..routespec import Route, check_route_files


@dataclass(frozen=True)
class LoadedRoute:
    route: Route
    function: Callable
    is_async: bool
    streams: bool = False  # a generator function (def or async def with yield): each item is sent as it comes


def enter_model_dir(model_dir: str | os.PathLike) -> Path:
    root = Path(model_dir).resolve()
    if not root.is_dir():
        raise ModelCodeError(f"model directory {model_dir} does not exist")
    os.chdir(root)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return root


def check_files(root: Path, routes: list[Route]) -> None:
    """Cheap checks before anything is imported: each route's file exists inside the model dir."""
    try:
        check_route_files(routes, root)
    except UsageError as exc:  # the model code is wrong, not the command line: exit as a load failure
        raise ModelCodeError(str(exc)) from None


def load_routes(root: Path, routes: list[Route]) -> list[LoadedRoute]:
    check_files(root, routes)
    loaded = []
    for route, fn in _functions(root, routes):
        streams = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
        if streams and route.batch is not None:
            # One call answers many requests with one list: items could not be told apart per request.
            raise ModelCodeError(f"route {route.label}: {route.function} in {route.relative_file} is a generator "
                                 "function (it yields), and a batched route cannot stream; drop the route's batch "
                                 "settings or return the list of results")
        is_async = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
        loaded.append(LoadedRoute(route, fn, is_async, streams))
    return loaded


def _functions(root: Path, routes: list[Route]):
    for route in routes:
        module = _import(root, route)
        function = getattr(module, route.function, None)
        if function is None:
            defined = sorted(n for n, v in vars(module).items() if inspect.isfunction(v) and not n.startswith("_"))
            hint = f" (it defines: {', '.join(defined)})" if defined else ""
            raise ModelCodeError(f"route {route.label}: {route.relative_file} has no function '{route.function}'{hint}")
        if not callable(function):
            raise ModelCodeError(f"route {route.label}: '{route.function}' in {route.relative_file} is not callable")
        _check_signature(route, function)
        yield route, function


def _import(root: Path, route: Route):
    name = route.module_name
    existing = sys.modules.get(name)
    if existing is not None and not _inside(root, getattr(existing, "__file__", None)):
        raise ModelCodeError(
            f"route {route.label}: {route.relative_file} has the name of the installed module '{name}'; rename the file"
        )
    try:
        # What Python would import may not be the file checked: a package `predict/` (perhaps a link out of the
        # model dir) or an extension module wins over `predict.py`. It must come from the model dir too.
        spec = importlib.util.find_spec(name)
        if spec is None or not _inside(root, spec.origin):
            raise ModelCodeError(
                f"route {route.label}: file '{route.file}' resolves outside the model directory: Python would import "
                f"'{name}' from {spec.origin if spec else 'nowhere'}"
            )
        return importlib.import_module(name)
    except ModelCodeError:
        raise
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from user code are load failures too
        raise ModelCodeError(
            f"route {route.label}: importing {route.relative_file} failed:\n{user_traceback(exc, root)}"
        ) from None


def _check_signature(route: Route, function: Callable) -> None:
    """Refuse at start a function that could never accept the route's body template."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return  # builtins and some C callables have no signature; let calls tell
    names = [p.name for p in route.body]
    try:
        if route.positional:
            signature.bind(*names)
        else:
            signature.bind(**{n: None for n in names})
    except TypeError as exc:
        how = ("positional" if route.positional else "keyword") + " arguments"
        if route.batch is not None:  # the same names arrive, each holding a list: one value per request
            how += ", one list each (the route is batched)"
        raise ModelCodeError(
            f"route {route.label}: {route.function}{signature} cannot take the body params "
            f"({', '.join(names) or 'none'}) as {how}: {exc}"
        ) from None


def _inside(root: Path, filename: str | None) -> bool:
    if not filename or not os.path.isabs(filename):  # "<frozen importlib._bootstrap>" would resolve into cwd
        return False
    try:
        Path(filename).resolve().relative_to(root)
        return True
    except ValueError:
        return False


def user_traceback(exc: BaseException, root: Path) -> str:
    """The traceback with only the frames of the user's code (ours and importlib's are noise to them)."""
    tb = traceback.TracebackException.from_exception(exc)
    tb.stack = traceback.StackSummary.from_list([f for f in tb.stack if _inside(root, f.filename)])
    return "".join(tb.format()).rstrip()
