"""Uploaded model folders: tar.gz archives received, checked and unpacked, so nothing lands outside its folder.

The client packs its directory as tar.gz and POSTs it to /api/uploads (a zip is converted to a tar.gz first,
with the same checks: zipped.py). The archive is checked as it arrives and again as it is unpacked: only
regular files and folders, no absolute paths, no `..`, no links, no devices, so nothing can land outside the
destination; and no sparse files or extended headers bigger than a real one, which tarfile would read whole (or
parse for hours) before we could look. Unpacking stops at the job's disk_size (and at MAX_UNPACKED_BYTES: a gzip
bomb) and when the job is removed meanwhile. Unused uploads are deleted after a day.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tarfile
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath

from ..errors import NotFound, UsageError
from .sources import fresh_partial

MAX_UPLOAD_BYTES = 10 * 1024**3
MAX_UNPACKED_BYTES = 50 * 1024**3  # a gzip bomb stops here
MAX_MEMBERS = 200_000
# A pax or GNU long-name header is read whole into memory by tarfile, and parsed in quadratic time by CPython
# before 3.11.10 (CVE-2024-6232): a few KB of gzip could ask for gigabytes or hours. Real ones are a few hundred
# bytes (a path is at most 4 KiB); the budget bounds the sum of their squared sizes, i.e. the parsing work.
MAX_HEADER_BYTES = 64 * 1024
HEADER_WORK = MAX_HEADER_BYTES**2
UPLOAD_MAX_AGE = 24 * 3600
# Requirements files kept from an upload as it is scanned, so a job's requirements can be checked when it is
# created (localpaths.py) without reading the whole archive again.
TEXT_SUFFIXES = (".txt", ".in")
MAX_TEXT_BYTES = 256 * 1024
MAX_TEXTS_BYTES = 4 * 1024**2


class _Member(tarfile.TarInfo):
    """A TarInfo that refuses, before tarfile reads them, extended headers too big to hold and sparse maps."""

    def _proc_member(self, archive):
        where = f"archive header at byte {self.offset}"
        if self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                         tarfile.SOLARIS_XHDTYPE):
            archive.header_work += self.size * self.size
            if self.size > MAX_HEADER_BYTES or archive.header_work > HEADER_WORK:
                limit = f"at most {MAX_HEADER_BYTES >> 10} KiB" if self.size > MAX_HEADER_BYTES else "too many big ones"
                raise UsageError(f"{where}: an extended header of {self.size} bytes is refused "
                                 f"({limit}); pack the folder with `trainml`")
        elif self.type == tarfile.GNUTYPE_SPARSE:
            raise UsageError(f"{where}: sparse files are refused; pack the file itself")
        return super()._proc_member(archive)

    # A pax header's sparse map can list billions of blocks (a memory bomb); model folders hold no sparse files.
    def _proc_gnusparse_00(self, *args):
        raise UsageError(f"archive header at byte {self.offset}: sparse files are refused; pack the file itself")

    _proc_gnusparse_01 = _proc_gnusparse_10 = _proc_gnusparse_00


class _Archive(tarfile.TarFile):
    tarinfo = _Member
    header_work = 0  # the sum of the squared sizes of the extended headers read so far


MAX_NAME_BYTES = 255  # a path component, as Linux filesystems allow
MAX_PATH_BYTES = 4096  # a whole path (PATH_MAX)
SHOWN_NAME = 80  # characters of a member's name quoted in a message


def _shown(name: str) -> str:
    return repr(name) if len(name) <= SHOWN_NAME else repr(name[:SHOWN_NAME]) + f"... ({len(name)} characters)"


def check_member(member: tarfile.TarInfo) -> None:
    """Refuse anything that could write outside the destination, is not plain data, or has a name too long to
    create."""
    name = member.name
    where = f"archive member {_shown(name)}"
    if len(name.encode(errors="surrogateescape")) > MAX_PATH_BYTES:
        raise UsageError(f"{where}: the path is longer than {MAX_PATH_BYTES} bytes")
    for part in PurePosixPath(name).parts:
        if len(part.encode(errors="surrogateescape")) > MAX_NAME_BYTES:
            raise UsageError(f"{where}: a file or folder name is longer than {MAX_NAME_BYTES} bytes")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or "\\" in name:
        raise UsageError(f"{where}: absolute paths are refused")
    if ".." in PurePosixPath(name).parts:
        raise UsageError(f"{where}: '..' would place it outside the model folder")
    if member.issym() or member.islnk():
        raise UsageError(f"{where}: links are refused (it points to {member.linkname!r}); pack the file itself")
    if member.isdev() or member.isfifo():
        raise UsageError(f"{where}: devices and fifos are refused")
    if not (member.isfile() or member.isdir()):
        raise UsageError(f"{where}: only regular files and folders are allowed")


def scan_archive(path: Path, texts: dict[str, str] | None = None) -> dict:
    """Check every member of a tar.gz; returns {"files": n, "size": unpacked bytes}. Raises UsageError.

    `texts` receives the small .txt and .in files by name (requirements files), up to MAX_TEXTS_BYTES in all.
    """
    files = size = kept = 0
    kinds: dict[PurePosixPath, bool] = {}  # name -> is a folder (a repeated file is fine: the last one wins)
    try:
        with _Archive.open(path, "r:gz") as archive:
            for count, member in enumerate(archive, 1):
                check_member(member)
                _check_kind(kinds, PurePosixPath(member.name), member.isdir())
                files += member.isfile()
                size += member.size
                if (texts is not None and member.isfile() and member.name.endswith(TEXT_SUFFIXES)
                        and member.size <= MAX_TEXT_BYTES and kept + member.size <= MAX_TEXTS_BYTES):
                    # The member's data comes next in the stream: reading it now costs no seek back.
                    with archive.extractfile(member) as data:
                        texts[str(PurePosixPath(member.name))] = data.read(MAX_TEXT_BYTES).decode(errors="replace")
                    kept += member.size
                if count > MAX_MEMBERS or size > MAX_UNPACKED_BYTES:
                    raise UsageError(f"archive: more than {MAX_MEMBERS} files or "
                                     f"{MAX_UNPACKED_BYTES >> 30} GiB unpacked")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UsageError(f"archive: not a valid tar.gz ({exc})") from None
    return {"files": files, "size": size}


def _check_kind(kinds: dict[PurePosixPath, bool], name: PurePosixPath, is_dir: bool) -> None:
    """Refuse a name used both as a file and as a folder (unpacking would fail half way)."""
    for path, folder in [(parent, True) for parent in name.parents if parent.parts] + [(name, is_dir)]:
        if kinds.setdefault(path, folder) != folder:
            raise UsageError(f"archive member {str(name)!r}: {str(path)!r} is both a file and a folder")


class Cancelled(Exception):
    """The job went away while its code was being fetched (see `unpack`'s `cancel`)."""


COPY_CHUNK = 1024 * 1024


def unpack(archive_path: Path, dest: Path, limit: int | None = None, cancel: threading.Event | None = None) -> None:
    """Unpack a checked tar.gz into `dest` (which must not exist yet), checking each member again.

    `limit` (bytes, the job's disk_size) is held twice: the sizes the members declare, summed before each one is
    written, and the bytes actually written. `cancel`, set from another thread, stops it within one chunk. Either
    way nothing is left behind.
    """
    partial = fresh_partial(dest)
    declared = written = 0
    try:
        with _Archive.open(archive_path, "r:gz") as archive:
            for member in archive:
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                check_member(member)
                declared += member.size
                if limit is not None and declared > limit:
                    raise UsageError(f"the model folder unpacks to more than disk_size ({_size(limit)}): "
                                     f"{_size(declared)} by member {_shown(member.name)}")
                if not member.isfile():
                    # "data" also drops set-uid bits and owner ids; our own check already refused links and devices.
                    archive.extract(member, partial, filter="data")
                    continue
                written = _write_member(archive, member, partial, written, limit, cancel)
    except (tarfile.TarError, EOFError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise UsageError(f"archive: cannot unpack ({exc})") from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(dest)


def _write_member(archive: tarfile.TarFile, member: tarfile.TarInfo, root: Path, written: int,
                  limit: int | None, cancel: threading.Event | None) -> int:
    """Copy one regular file out in chunks, counting (the header's size could lie) and looking for `cancel`."""
    target = root.joinpath(*PurePosixPath(member.name).parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    source = archive.extractfile(member)
    with source, open(target, "wb") as out:
        while chunk := source.read(COPY_CHUNK):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            written += len(chunk)
            if limit is not None and written > limit:
                raise UsageError(f"the model folder unpacks to more than disk_size ({_size(limit)}), "
                                 f"in member {_shown(member.name)}")
            out.write(chunk)
    os.chmod(target, 0o755 if member.mode & 0o100 else 0o644)
    os.utime(target, (member.mtime, member.mtime))
    return written


def _size(count: int) -> str:
    return f"{count / 1024**3:.1f} GB" if count >= 1024**3 else f"{count / 1024**2:.1f} MB"


class Uploads:
    """Archives received over HTTP and waiting to be used by a job or a model."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, upload_id: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{32}", upload_id or ""):
            raise UsageError(f"upload id {upload_id!r} is malformed")
        path = self.folder / f"{upload_id}.tar.gz"
        if not path.exists():
            raise NotFound(f"upload {upload_id} not found (uploads are kept for {UPLOAD_MAX_AGE // 3600} hours)")
        return path

    async def receive(self, chunks: AsyncIterator[bytes]) -> dict:
        upload_id = uuid.uuid4().hex
        partial = self.folder / f"{upload_id}.partial"
        received = 0
        try:
            with open(partial, "wb") as out:
                async for chunk in chunks:
                    received += len(chunk)
                    if received > MAX_UPLOAD_BYTES:
                        raise UsageError(f"upload: larger than {MAX_UPLOAD_BYTES >> 30} GiB")
                    out.write(chunk)
            if not received:
                raise UsageError("upload: the request body is empty; send a tar.gz (or zip) archive")
            await asyncio.to_thread(_unzip_if_zip, partial)
            texts: dict[str, str] = {}
            summary = await asyncio.to_thread(scan_archive, partial, texts)
            (self.folder / f"{upload_id}.texts.json").write_text(json.dumps(texts))
            partial.rename(self.folder / f"{upload_id}.tar.gz")
        finally:
            partial.unlink(missing_ok=True)
        return {"id": upload_id, "size": received, "files": summary["files"], "unpacked_size": summary["size"]}

    def texts(self, upload_id: str) -> dict[str, str] | None:
        """The upload's small .txt and .in files by name (see scan_archive); None for an upload made before."""
        try:
            return json.loads((self.folder / f"{upload_id}.texts.json").read_text())
        except (OSError, ValueError):
            return None

    def discard(self, upload_id: str) -> None:
        (self.folder / f"{upload_id}.tar.gz").unlink(missing_ok=True)
        (self.folder / f"{upload_id}.texts.json").unlink(missing_ok=True)

    def collect_garbage(self) -> None:
        cutoff = time.time() - UPLOAD_MAX_AGE
        for path in self.folder.iterdir():
            try:
                if path.stat().st_mtime < cutoff or path.suffix in (".partial", ".converting"):
                    path.unlink()
            except OSError:
                pass


def _unzip_if_zip(path: Path) -> None:
    """A zip (the dashboard sends a dropped one as it is) becomes a tar.gz in place, checked as it is converted."""
    from .zipped import is_zip, zip_to_tar_gz

    if not is_zip(path):
        return
    converted = path.with_suffix(".converting")
    try:
        zip_to_tar_gz(path, converted)
        converted.replace(path)
    finally:
        converted.unlink(missing_ok=True)
