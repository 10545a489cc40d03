"""Packing a local model folder as tar.gz for upload (`model.source_type: local`).

Skipped: `.git`, `__pycache__`, and virtualenvs (`.venv`, `venv`, and any folder holding a `pyvenv.cfg`), which
are large, machine-specific and never model code. A link to a file is packed as the file it points to (the
server refuses links, and weights are often linked from a cache); links to folders, dangling links, sockets
and devices are left out. Members are stored relative to the folder, so the server unpacks them in place.
"""

from __future__ import annotations

import os
import stat
import tarfile
import tempfile
from pathlib import Path

from ..errors import UsageError

SKIP_DIRS = frozenset({".git", "__pycache__", ".venv", "venv", ".mypy_cache", ".pytest_cache"})


def is_virtualenv(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "pyvenv.cfg"))


def files_to_pack(root: Path) -> list[tuple[str, str]]:
    """(absolute path, name in the archive) for every file to pack, folders included, sorted."""
    entries: list[tuple[str, str]] = []
    for folder, dirs, files in os.walk(root):
        keep = []
        for name in sorted(dirs):
            path = os.path.join(folder, name)
            if name in SKIP_DIRS or os.path.islink(path) or is_virtualenv(path):
                continue
            keep.append(name)
            entries.append((path, os.path.relpath(path, root)))
        dirs[:] = keep
        for name in sorted(files):
            path = os.path.join(folder, name)
            try:
                mode = os.stat(path).st_mode  # follows links: a linked file counts as the file
            except OSError:
                continue  # dangling link
            if stat.S_ISREG(mode):
                entries.append((path, os.path.relpath(path, root)))
    return entries


def pack(folder: str | os.PathLike):
    """The folder as a tar.gz in a temporary file, rewound; raises UsageError if it is not a folder."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise UsageError(f"model folder {root} does not exist or is not a folder")
    out = tempfile.TemporaryFile()
    # dereference: a linked file goes in as a regular file, and hard-linked files as copies, never as links.
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=6, dereference=True) as archive:
        for path, name in files_to_pack(root):
            info = archive.gettarinfo(path, arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isfile():
                with open(path, "rb") as f:
                    archive.addfile(info, f)
            else:
                archive.addfile(info)
    out.seek(0)
    return out
