"""A .zip upload, turned into the tar.gz every other upload is, so that it meets the same checks and unpacking.

The dashboard sends a dropped .zip as it is (browsers have no zip reader); POST /api/uploads sees the zip
signature and converts it here before the archive is scanned. Only what the tar checks would let through gets
through: regular files and folders (a zip can carry Unix links in its external attributes; they are refused),
no encrypted members, at most MAX_MEMBERS members and MAX_UNPACKED_BYTES, counted as the bytes actually
inflated, not as the sizes the zip declares (a zip bomb declares small ones). Names keep their zip spelling,
and the tar scan then refuses absolute ones and `..` as for any archive. Windows tools write `\\` between
folders: those become `/`. The `__MACOSX/` resource forks that macOS adds are left out.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from pathlib import Path

from ..errors import UsageError
from .archives import MAX_MEMBERS, MAX_UNPACKED_BYTES

SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members; an empty zip
CHUNK = 1024 * 1024


def is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in SIGNATURES


def zip_to_tar_gz(source: Path, target: Path, max_bytes: int = MAX_UNPACKED_BYTES) -> None:
    """Write `source` (a zip) as a tar.gz at `target`; UsageError naming the member for anything refused."""
    try:
        with zipfile.ZipFile(source) as archive, tarfile.open(target, "w:gz", compresslevel=1) as out:
            members = archive.infolist()
            if len(members) > MAX_MEMBERS:
                raise UsageError(f"archive: more than {MAX_MEMBERS} files")
            written = 0
            for member in members:
                name = member.filename.replace("\\", "/")
                if name.startswith("__MACOSX/") or name.rstrip("/") == "__MACOSX":
                    continue
                where = f"archive member {name[:80]!r}"
                mode = member.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise UsageError(f"{where}: links are refused; pack the file itself")
                if member.flag_bits & 0x1:
                    raise UsageError(f"{where}: encrypted members are refused")
                info = tarfile.TarInfo(name.rstrip("/") if member.is_dir() else name)
                info.mtime = max(0, int(_timestamp(member)))
                if member.is_dir():
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    out.addfile(info)
                    continue
                info.mode = 0o755 if mode & 0o111 else 0o644
                # Inflate to a spool first: the tar header needs the size, and the zip's own claim is not trusted.
                with archive.open(member) as data, _spool(target) as spool:
                    size = 0
                    while block := data.read(CHUNK):
                        size += len(block)
                        written += len(block)
                        if written > max_bytes:
                            raise UsageError(f"archive: more than {_size(max_bytes)} unpacked")
                        spool.write(block)
                    spool.seek(0)
                    info.size = size
                    out.addfile(info, spool)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise UsageError(f"archive: not a valid zip ({exc})") from None
    except RuntimeError as exc:  # zipfile's "password required" and the like
        raise UsageError(f"archive: {exc}") from None


def _size(count: int) -> str:
    return f"{count >> 30} GiB" if count >= 1 << 30 else f"{count >> 20} MiB"


def _spool(target: Path):
    import tempfile

    return tempfile.SpooledTemporaryFile(max_size=16 * CHUNK, dir=target.parent)


def _timestamp(member: zipfile.ZipInfo) -> float:
    import time

    try:
        return time.mktime((*member.date_time, 0, 0, -1))
    except (OverflowError, ValueError):
        return 0.0
