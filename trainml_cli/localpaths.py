"""The model folder's own files a requirement installs: found, kept inside the folder, and hashed.

A requirements file (or a pip package of the payload) can install from the model folder itself: `./mylib`,
`-e ./mylib`, `mylib @ file:./mylib`, `wheels/foo-1.0-py3-none-any.whl`, `--find-links ./wheels`, and it can
include other files with `-r other.txt` / `-c constraints.txt`. An environment is shared by every job whose key
is the same, so the key must change when any of those files does, or an edited package would be served stale.

How uv (like pip) reads them, measured with uv 0.13: a path on a requirement line is relative to the working
directory, which the build sets to the model folder, wherever the line's file is; the file named by `-r` or `-c`
is relative to the file that names it. The model's code is not trusted: a path that leads out of the folder
(`../x`, an absolute path, `~`, a symbolic link) would read the control plane's own files into a build, so it is
refused, naming the file and line. Hashing reads at most MAX_FILES files and MAX_BYTES bytes.

Stdlib only: the CLI checks a local folder with it before uploading, the control plane keys environments by it.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable
from urllib.parse import unquote, urlsplit

from .errors import UsageError

MAX_FILES = 50_000
MAX_BYTES = 1024**3
MAX_INCLUDES = 100
MAX_REQUIREMENTS_BYTES = 1024**2  # one requirements file: read whole, so `-r weights.bin` must not be
# Made by building or running the package, not part of what it installs: hashing them would give a job that
# restarts on its own folder (where a build may have left them) a new environment each time.
SKIPPED_DIRS = {".git", ".hg", ".svn", "__pycache__", "build", ".eggs", ".tox", ".nox", ".venv", ".mypy_cache",
                ".pytest_cache", ".ruff_cache", "node_modules"}
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".egg-info")

_INCLUDE = {"-r", "--requirement", "-c", "--constraint"}
_PATH_OPTIONS = {"-e", "--editable", "-f", "--find-links", "-i", "--index-url", "--extra-index-url"}
_NAMED_URL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\s*(?:\[[^\]]*\])?\s*@\s*(\S+)")
_ARCHIVE = re.compile(r"\.(whl|tar\.gz|tgz|tar\.bz2|tar\.xz|tar|zip)$", re.IGNORECASE)


@dataclass(frozen=True)
class Reference:
    """A local path a requirement refers to: where it was written, as written, and inside the model folder."""

    where: str  # 'requirements.txt line 3' or 'environment.packages.pip[0]'
    text: str
    path: str  # relative to the model folder, POSIX, normalised ('.' is the folder itself)


def _logical_lines(text: str):
    """(line number, line) with comments dropped and backslash continuations joined, as pip reads them."""
    pending, start = "", 0
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), 1):  # (a BOM, as editors save one)
        if not pending:
            start = number
        line = re.sub(r"(^|\s)#.*$", "", raw)
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            yield start, line


def _local_target(spec: str) -> str | None:
    """The path a requirement or an option's value installs from, or None when it names a project or a remote URL."""
    spec = spec.strip()
    named = _NAMED_URL.match(spec)
    if named:
        spec = named[1]
    else:
        spec = re.split(r"\s+--?[A-Za-z]|\s*;", spec, maxsplit=1)[0].strip()  # per-line options, markers
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", spec)
    if scheme and len(scheme[1]) > 1:  # (a one-letter 'scheme' is a Windows drive)
        if scheme[1].lower() != "file" and not scheme[1].lower().endswith("+file"):
            return None
        url = urlsplit(spec.split("+", 1)[1] if "+" in scheme[1] else spec)
        if url.netloc not in ("", "localhost"):
            return f"//{url.netloc}{unquote(url.path)}"
        return unquote(url.path) or "."
    spec = spec.split("#", 1)[0]  # '#egg=name'
    if named:
        return spec  # 'name @ ./path' is a path to uv
    spec = re.sub(r"\[[^\]]*\]$", "", spec)  # extras
    if spec.startswith((".", "/", "~")) or "/" in spec or "\\" in spec or _ARCHIVE.search(spec):
        return spec
    return None


def _inside(text: str, base: PurePosixPath, where: str) -> str:
    """`text` as a path relative to the model folder, lexically; refused when it leads out of it."""
    if "${" in text or text.startswith("~"):
        raise UsageError(f"{where}: {text} depends on the control plane's environment and leaves the model folder; "
                         f"give a path inside the model folder, relative to it (e.g. ./mylib)")
    posix = text.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        raise UsageError(f"{where}: {text} is absolute and leaves the model folder; give a path relative to the "
                         f"model folder (e.g. ./mylib)")
    parts: list[str] = []
    for part in (base / posix).parts:
        if part == "..":
            if not parts:
                raise UsageError(f"{where}: {text} leaves the model folder")
            parts.pop()
        elif part not in (".", ""):
            parts.append(part)
    return "/".join(parts) or "."


def references(requirements_file: str | None, pip, read: Callable[[str, str], str | None]) -> list[Reference]:
    """Every local path the job's requirements refer to, its included files among them, checked lexically.

    `read(path, where)` gives a file's text by its path relative to the model folder (None when there is no such
    file); `where` is the line naming it, for its messages.
    """
    found: list[Reference] = []
    root = PurePosixPath(".")
    for i, spec in enumerate(pip or ()):
        target = _local_target(spec)
        if target is not None:
            where = f"environment.packages.pip[{i}]"
            found.append(Reference(where, spec, _inside(target, root, where)))
    pending = [(requirements_file, "")] if requirements_file else []
    seen: set[str] = set()
    while pending:
        name, named_at = pending.pop(0)
        if name in seen:
            continue
        seen.add(name)
        if len(seen) > MAX_INCLUDES:
            raise UsageError(f"{named_at}: more than {MAX_INCLUDES} requirements files include each other")
        text = read(name, named_at or "environment.requirements")
        if text is None:
            raise UsageError(f"{named_at or 'environment.requirements'}: {name} is not a file in the model folder")
        for number, line in _logical_lines(text):
            where = f"{name} line {number}"
            option, _, value = line.partition(" ")
            if "=" in option and option.startswith("--"):
                option, _, value = option.partition("=")
            elif len(option) > 2 and option[:2] in ("-r", "-c", "-e", "-f", "-i"):  # '-rother.txt'
                option, value = option[:2], option[2:]
            value = value.strip()
            if option in _INCLUDE and value:
                included = _inside(value, PurePosixPath(name).parent, where)  # relative to the file naming it
                found.append(Reference(where, value, included))
                pending.append((included, where))
            elif option in _PATH_OPTIONS and value:
                target = _option_path(value)
                if target is not None:
                    found.append(Reference(where, value, _inside(target, root, where)))
            elif not line.startswith("-"):
                target = _local_target(line)
                if target is not None:
                    found.append(Reference(where, line, _inside(target, root, where)))
    return found


def _option_path(value: str) -> str | None:
    """The local path an option's value names (-e, --find-links, an index), or None for a remote URL."""
    if value.lower().startswith("file:"):
        return _local_target(value)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", value):
        return None
    return re.sub(r"\[[^\]]*\]$", "", re.split(r"\s*;|#", value, maxsplit=1)[0].strip())


class _Budget:
    def __init__(self, where: str, max_files: int, max_bytes: int):
        self.where, self.files, self.bytes, self.max_files, self.max_bytes = where, 0, 0, max_files, max_bytes

    def take(self, size: int) -> None:
        self.files += 1
        self.bytes += size
        if self.files > self.max_files or self.bytes > self.max_bytes:
            amount = (f"{self.max_files:,} files" if self.files > self.max_files else
                      f"{self.max_bytes / 1024**3:g} GiB" if self.max_bytes >= 1024**3 else f"{self.max_bytes:,} bytes")
            raise UsageError(f"{self.where}: the local paths the requirements install hold more than {amount}, the "
                             f"most read to tell whether an environment can be reused; keep data, weights and build "
                             f"artefacts out of them")


def _checked_real(model_dir: Path, path: Path, ref: Reference, packed_links: bool = False) -> Path:
    """The path with symbolic links followed, refused when they lead out of the model folder.

    `packed_links`: the folder is about to be packed for upload, which packs a link to a file as the file itself
    (packing.py), so only the folders leading to it must be inside.
    """
    root = Path(os.path.realpath(model_dir))
    real = Path(os.path.realpath(path))
    if packed_links and path.is_symlink() and real.is_file():
        real = Path(os.path.realpath(path.parent)) / path.name
    if real != root and root not in real.parents:
        shown = path.relative_to(model_dir).as_posix() if path != model_dir else "."
        raise UsageError(f"{ref.where}: {ref.text} leaves the model folder through a symbolic link ({shown})")
    return Path(os.path.realpath(path))


def _entries(model_dir: Path, ref: Reference, budget: _Budget, digest, packed_links: bool) -> None:
    """Walk one reference in a fixed order, checking every link, hashing each file's name and contents."""
    start = model_dir / ref.path
    _checked_real(model_dir, start, ref, packed_links)
    if not start.exists():
        raise UsageError(f"{ref.where}: {ref.text} is not in the model folder (a path on a requirement line is "
                         f"relative to the model folder itself, wherever the requirements file is)")
    stack, visited = [start], set()
    while stack:
        path = stack.pop()
        real = _checked_real(model_dir, path, ref, packed_links)
        info = os.stat(real)
        name = path.relative_to(model_dir).as_posix().encode(errors="surrogateescape")
        if stat.S_ISDIR(info.st_mode):
            if real in visited:  # a link back up the tree: already walked
                continue
            visited.add(real)
            children = sorted(os.listdir(path), reverse=True)  # popped from the end: walked in name order
            stack += [path / child for child in children
                      if child not in SKIPPED_DIRS and not child.endswith(SKIPPED_SUFFIXES)]
        elif stat.S_ISREG(info.st_mode):
            budget.take(info.st_size)
            if digest is not None:
                digest.update(b"F" + name + b"\0")
                with open(real, "rb") as f:
                    while chunk := f.read(1 << 20):
                        digest.update(chunk)
                digest.update(b"\0")


def local_digest(model_dir: Path, requirements_file: str | None, pip, *, hash_contents: bool = True,
                 packed_links: bool = False, max_files: int = MAX_FILES, max_bytes: int = MAX_BYTES) -> str | None:
    """A hash of every local file the requirements install, or None when they install none. Raises UsageError.

    Without `hash_contents` it only checks (before an upload: the control plane hashes its own copy).
    """
    model_dir = Path(model_dir)

    def read(name: str, where: str) -> str | None:
        path = model_dir / name
        _checked_real(model_dir, path, Reference(where, name, name), packed_links)
        if not path.is_file():
            return None
        with open(path, "rb") as f:
            data = f.read(MAX_REQUIREMENTS_BYTES + 1)
        if len(data) > MAX_REQUIREMENTS_BYTES:
            raise UsageError(f"{where}: {name} is larger than {MAX_REQUIREMENTS_BYTES >> 20} MiB, too large for a "
                             f"requirements file")
        return data.decode(errors="replace")

    found = references(requirements_file, pip, read)
    if not found:
        return None
    first: dict[str, Reference] = {}
    for ref in found:
        first.setdefault(ref.path, ref)  # the same path named twice is read once
    digest = hashlib.sha256() if hash_contents else None
    budget = _Budget(found[0].where, max_files, max_bytes)
    for path in sorted(first):
        budget.where = first[path].where
        try:
            _entries(model_dir, first[path], budget, digest, packed_links)
        except OSError as exc:  # unreadable (permissions), or changed while read
            shown = Path(exc.filename).name if exc.filename else path
            raise UsageError(f"{first[path].where}: {first[path].text}: cannot read {shown} ({exc.strerror})") from None
    return digest.hexdigest() if digest is not None else ""
