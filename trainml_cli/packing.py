"""Packing a local model folder as tar.gz for upload (`model.source_type: local`).

A leaf: the SDK packs a client's folder with it, the dashboard a folder on the control plane's machine.

Skipped: the folders contracts.SKIPPED_FOLDERS names (`.git`, `__pycache__`, `.venv`, `venv`, tool caches,
`node_modules`) and any folder holding a `pyvenv.cfg` (a virtualenv), which are large, machine-specific and never
model code; a Ray package leaves out the same, so both backends run the same files. A symbolic link that leads out of
the folder is refused, naming it, before anything is packed: packing it would send a file the user never meant to (a
link to /etc/passwd, to ~/.aws/credentials), and a server-side folder (the dashboard's) must not read the control
plane's files either. A link inside the folder to a file is packed as the file it points to (the server refuses links
in an archive); links to folders, dangling links, sockets and devices are left out. Members are stored relative to
the folder, so the server unpacks them in place.
"""

from __future__ import annotations

import os
import stat
import tarfile
import tempfile
from pathlib import Path

from .contracts import skipped_folder
from .errors import UsageError


def check_link(root: Path, path: str) -> None:
    """Refuse a symbolic link whose target (all links followed) is outside the folder; UsageError naming it."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        name = os.path.relpath(path, root)
        raise UsageError(f"model folder {root}: {name} is a symbolic link to {os.readlink(path)}, outside the "
                         "folder; copy what it points to into the folder (cp -L), or remove the link")


def files_to_pack(root: Path) -> list[tuple[str, str]]:
    """(absolute path, name in the archive) for every file to pack, folders included, sorted. Raises UsageError
    for a symbolic link leading out of the folder."""
    entries: list[tuple[str, str]] = []
    for folder, dirs, files in os.walk(root):
        keep = []
        for name in sorted(dirs):
            path = os.path.join(folder, name)
            if skipped_folder(folder, name):
                continue
            if os.path.islink(path):
                check_link(root, path)
                continue
            keep.append(name)
            entries.append((path, os.path.relpath(path, root)))
        dirs[:] = keep
        for name in sorted(files):
            path = os.path.join(folder, name)
            if os.path.islink(path):
                check_link(root, path)
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
    entries = files_to_pack(root)  # first: a link out of the folder is refused before anything is written
    out = tempfile.TemporaryFile()
    # dereference: a linked file goes in as a regular file, and hard-linked files as copies, never as links.
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=6, dereference=True) as archive:
        for path, name in entries:
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
