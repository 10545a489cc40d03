"""The model code the Create form points at, as the server can read it: an uploaded archive, a folder on this
machine or a stored model. Next checks that each route's file is there and defines its function, so a typo in
either is named beside its field before anything is created (the runtime would only find it after the build),
and reads a `routes.json` at the model's root for the form to fill its routes from.

The function check reads the file's syntax tree, never imports it (user code runs only in its endpoint): a name
the module binds at its top level (def, class, assignment, import) is found; a module that could make names in
ways the tree does not show (`from x import *`, a module `__getattr__`, `globals()`) is given the benefit of the
doubt, and so is a file that does not parse (the runtime reports its syntax error with its line).
"""

from __future__ import annotations

import ast
import json
import tarfile
from pathlib import Path

from ...errors import NotFound, RouteSpecError, UsageError
from ...routespec import Route, parse_routes, route_label

ROUTES_FILE = "routes.json"
MAX_SOURCE = 2 * 1024 * 1024  # a route's file larger than this is not read here: the runtime judges it

_UPLOADED: dict[str, frozenset] = {}  # upload id -> its file names; an upload never changes once stored


def uploaded_files(platform, upload_id: str) -> frozenset:
    """The names of the files in an upload (read once per upload: Next may be clicked many times)."""
    if upload_id not in _UPLOADED:
        names = set()
        with tarfile.open(platform.uploads.path(upload_id), "r:gz") as archive:  # already checked when received
            for member in archive:
                if member.isfile():
                    names.add(_name(member))
        if len(_UPLOADED) > 64:
            _UPLOADED.clear()
        _UPLOADED[upload_id] = frozenset(names)
    return _UPLOADED[upload_id]


def _name(member: tarfile.TarInfo) -> str:
    return member.name[2:] if member.name.startswith("./") else member.name


def read_uploaded(platform, upload_id: str, name: str, limit: int = MAX_SOURCE) -> bytes | None:
    """One regular file of an upload, or None when it is not there or larger than `limit`."""
    with tarfile.open(platform.uploads.path(upload_id), "r:gz") as archive:
        for member in archive:
            if member.isfile() and _name(member) == name:
                if member.size > limit:
                    return None
                handle = archive.extractfile(member)
                return handle.read() if handle else None
    return None


def read_in_folder(folder: Path, name: str, limit: int = MAX_SOURCE) -> bytes | None:
    """A file inside a folder (never through a link out of it), or None when absent, unreadable or too large."""
    try:
        root = folder.resolve()
        path = (root / name).resolve()
        if root not in path.parents or not path.is_file() or path.stat().st_size > limit:
            return None
        return path.read_bytes()
    except OSError:
        return None


def model_reader(platform, model: dict):
    """read(name) -> bytes | None for the model the checked form names, or None when the server cannot read it
    (a git repository is fetched only when the job is created)."""
    if model.get("upload_id"):
        return lambda name: read_uploaded(platform, model["upload_id"], name)
    if model.get("directory"):
        return lambda name: read_in_folder(Path(model["directory"]), name)
    if model.get("source_type") == "trainml":
        return lambda name: read_in_folder(platform.models.path(model["source_uri"]), name)
    return None


def defined_names(source: bytes) -> frozenset | None:
    """The names a module binds at its top level, or None when they cannot be known from its text."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    names: set[str] = set()
    statements = list(tree.body)
    while statements:
        node = statements.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    return None
                names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor, ast.With,
                               ast.AsyncWith)):
            for target in _targets(node):
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        # Blocks at the top level (if, try, for, with, while) bind names at the top level too.
        for field in ("body", "orelse", "finalbody", "handlers"):
            statements.extend(getattr(node, field, None) or [])
        for case in getattr(node, "cases", None) or []:  # match
            statements.extend(case.body)
    if "__getattr__" in names or any(isinstance(n, ast.Name) and n.id in ("globals", "exec", "setattr")
                                     for n in ast.walk(tree)):
        return None
    return frozenset(names)


def _targets(node) -> list:
    if isinstance(node, ast.Assign):
        return list(node.targets)
    if isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor)):
        return [node.target]
    return [item.optional_vars for item in node.items if item.optional_vars is not None]


def sound_routes(raws) -> list[tuple[int, str, Route]]:
    """(index, label, route) for each route of a form whose file and function are well formed, whatever else is
    wrong with it: their files can be looked for while the rest of the form has problems."""
    routes = []
    for index, raw in enumerate(raws if isinstance(raws, list) else []):
        if not isinstance(raw, dict):
            continue
        try:  # only the file and function matter here; the form's other checks name the rest
            route = parse_routes([{"verb": "POST", "path": "/", "file": raw.get("file"),
                                   "function": raw.get("function")}])[0]
        except (RouteSpecError, UsageError):
            continue
        routes.append((index, route_label(index, raw), route))
    return routes


def check_model_code(platform, routes: list[tuple[int, str, Route]], model: dict) -> None:
    """Each route's file is in the model and defines its function; RouteSpecError naming every miss."""
    read = model_reader(platform, model)
    if read is None:
        return
    names = uploaded_files(platform, model["upload_id"]) if model.get("upload_id") else None
    found = []
    for index, label, route in routes:
        source = read(route.relative_file)
        if source is None:
            if names is not None and route.relative_file in names:
                continue  # there, only too large to read here
            found.append((index, label, ("file",), _missing(route, model, names)))
            continue
        defined = defined_names(source)
        if defined is not None and route.function not in defined:
            public = sorted(n for n in defined if not n.startswith("_"))
            hint = f" (it defines {', '.join(public[:8])}{', ...' if len(public) > 8 else ''})" if public else ""
            found.append((index, label, ("function",),
                          f"{route.relative_file} has no function {route.function!r}{hint}"))
    if found:
        raise RouteSpecError.of(found)


def _missing(route: Route, model: dict, names: frozenset | None) -> str:
    where = {"upload_id": "the uploaded folder", "directory": model.get("directory")}
    place = next((text for key, text in where.items() if model.get(key)), "the stored model")
    message = f"{route.file!r} not found in {place} (looked for {route.relative_file})"
    if names:
        tops = {n.split("/", 1)[0] for n in names}
        top = next(iter(tops))
        if len(tops) == 1 and f"{top}/{route.relative_file}" in names:
            message += f"; the archive holds everything in the folder {top!r}: pack what is inside it"
    return message


def read_routes_file(read) -> list[dict] | None:
    """The routes of a `routes.json` at the model's root, as the form's route blocks take them; None if none."""
    source = read(ROUTES_FILE)
    if source is None:
        return None
    try:
        data = json.loads(source)
    except (ValueError, RecursionError):
        raise UsageError(f"{ROUTES_FILE} in the model is not valid JSON") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise UsageError(f"{ROUTES_FILE} in the model must hold a list of routes")
    return data


def stored_model_reader(platform, ref: str):
    try:
        stored = platform.models.find(ref)
    except NotFound as exc:
        raise UsageError.at(("model", "model"), exc.message) from None
    return lambda name: read_in_folder(platform.models.path(stored["id"]), name)
