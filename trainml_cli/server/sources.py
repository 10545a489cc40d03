"""Model sources other than uploads: git repositories and stored models, fetched into a folder of their own.

Uploads (`source_type: local`) are archives.py.
- Git (`source_type: git`): `git clone --depth 1 [--branch REF] -- URI DEST`, or for a commit SHA (7 to
  40 hex digits) `git clone --no-checkout` then `git checkout --detach SHA`; only https, http, ssh, git and
  file URIs (git itself is told the same through GIT_ALLOW_PROTOCOL, which also covers submodules), nothing
  starting with `-`, never prompting for a password. Credentials in the URI never reach git's command line or
  the clone: git gets the URI without them and finds them through its environment (gitcredentials.py). A
  failed clone raises with git's own message.
- Stored models (`source_type: trainml`): copied into the job's folder, file by file and never hard-linked:
  the job's code may write its own files, and a link would write them into the stored model of every later job.

Every fetch writes into `DEST.partial` and renames it at the end, so a crash never leaves a half copy behind
that looks complete.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlsplit

from ..errors import UsageError
from . import gitcredentials
from .redaction import redact

CLONE_TIMEOUT = 900.0

GIT_SCHEMES = ("https", "http", "ssh", "git", "file")
COMMIT = re.compile(r"^[0-9a-fA-F]{7,40}$")  # a --git-ref that is a commit SHA (full or abbreviated)
_GIT_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://\S+$")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s-][^\s]*$")  # git@github.com:org/repo.git (ssh)
_GIT_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")


def redact_uri(uri: str) -> str:
    """The URI with any password or token in it replaced, for anything shown (see redaction.py)."""
    return redact(uri)


def check_git_uri(uri: str, loc: tuple = ("model", "source_uri")) -> str:
    if not isinstance(uri, str) or not uri.strip():
        raise UsageError.at(loc, "a git URI is required")
    uri = uri.strip()
    if uri.startswith("-"):
        raise UsageError.at(loc, f"{redact(uri)!r} starts with '-'; a git URI must not look like an option")
    match = _GIT_URL.match(uri)
    if match:
        if match["scheme"].lower() not in GIT_SCHEMES:
            raise UsageError.at(loc,
                                f"{redact(uri)!r} uses {match['scheme']}://; only "
                                f"{', '.join(GIT_SCHEMES)} URIs are allowed")
        gitcredentials.take(uri, loc)  # refuses credentials git could not be handed
        if match["scheme"].lower() == "file":  # refused at create, as the CLI refuses it, not at the clone
            path = unquote(urlsplit(uri).path)
            if not os.path.isdir(path):
                raise UsageError.at(loc, f"no folder {redact(path)} on the control plane's machine (a file:// "
                                         "repository is cloned from there)")
        return uri
    if _SCP_LIKE.match(uri):
        return uri
    hint = f" (for a local repository write file://{os.path.abspath(uri)})" if uri.startswith(("/", ".")) else ""
    raise UsageError.at(loc,
                        f"{redact(uri)!r} is not a git URI; use one of "
                        f"{', '.join(s + '://' for s in GIT_SCHEMES)}{hint}")


def check_git_ref(ref: str | None, loc: tuple = ("model", "git_ref")) -> str | None:
    if ref is None or ref == "":
        return None
    if not isinstance(ref, str) or not _GIT_REF.match(ref) or ".." in ref:
        raise UsageError.at(loc,
                            f"{ref!r} is not a branch, tag or commit SHA (letters, digits, '.', '_', "
                            "'/', '-'; not starting with '-')")
    return ref


# -- git ----------------------------------------------------------------------------------------------------------


async def clone(uri: str, ref: str | None, dest: Path, on_line: Callable[[str], None]) -> str:
    """Clone `uri` at `ref` into `dest`; returns the commit. Every output line of git goes to `on_line`."""
    uri = check_git_uri(uri)
    ref = check_git_ref(ref)
    bare, credentials = gitcredentials.take(uri)  # git sees `bare` only; the credentials go in its environment
    partial = fresh_partial(dest)
    partial.rmdir()  # git wants to create it
    by_commit = bool(ref and COMMIT.match(ref))
    if by_commit:  # `clone --branch` takes branches and tags only: clone without checking out, then the commit
        command = ["git", "clone", "--no-checkout", "--", bare, str(partial)]
    else:
        command = ["git", "clone", "--depth", "1", *(["--branch", ref] if ref else []), "--", bare, str(partial)]
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": ":".join(GIT_SCHEMES),
        "GIT_SSH_COMMAND": os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes"),
        "LC_ALL": "C",
        **gitcredentials.environment(credentials),
    }
    on_line("$ " + " ".join(command[:-1] + ["<job folder>"]))
    lines: list[str] = []
    try:
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=env,
        )
    except FileNotFoundError:
        raise UsageError("git is not installed on the control plane's machine") from None

    def emit(raw: bytes) -> None:
        if raw.strip():
            lines.append(redact(raw.decode(errors="replace")))
            on_line(lines[-1])

    async def follow() -> int:
        buffer = b""
        while chunk := await process.stdout.read(4096):
            buffer += chunk
            # git redraws progress with \r; treat it as a line end so progress shows without a flood.
            *done, buffer = re.split(rb"[\r\n]", buffer)
            for raw in done:
                emit(raw)
        emit(buffer)
        return await process.wait()

    try:
        code = await asyncio.wait_for(follow(), CLONE_TIMEOUT)
    except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
        if process.returncode is None:
            process.kill()
            await process.wait()
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, asyncio.TimeoutError):
            raise UsageError(f"git clone {redact_uri(uri)}: no result after {CLONE_TIMEOUT:.0f} seconds") from None
        raise
    if code != 0:
        shutil.rmtree(partial, ignore_errors=True)
        message = _failure(lines) or f"exit code {code}"
        raise UsageError(f"git clone {redact_uri(uri)}{' --branch ' + ref if ref else ''} failed: {message}")
    if by_commit:
        first_error = ""
        for candidate in (ref, f"origin/{ref}"):  # a commit (or tag); else a branch whose name looks like one
            checkout = await asyncio.create_subprocess_exec(
                "git", "-C", str(partial), "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach",
                f"{candidate}^{{commit}}", "--", stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env=env,
            )
            try:
                output = (await checkout.communicate())[0].decode(errors="replace").strip()
            except asyncio.CancelledError:  # the job was stopped or removed: leave nothing behind
                if checkout.returncode is None:
                    checkout.kill()
                    await checkout.wait()
                shutil.rmtree(partial, ignore_errors=True)
                raise
            if checkout.returncode == 0:
                break
            first_error = first_error or output
        else:
            shutil.rmtree(partial, ignore_errors=True)
            reason = redact(first_error.splitlines()[0]) if first_error else "git checkout failed"
            raise UsageError(f"git clone {redact_uri(uri)}: commit {ref} not found in the repository ({reason})")
        on_line(f"$ git checkout --detach {ref}")
    rev = await asyncio.create_subprocess_exec(
        "git", "-C", str(partial), "rev-parse", "HEAD", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL
    )
    commit = (await rev.communicate())[0].decode().strip()
    partial.rename(dest)
    return commit


def _failure(lines: list[str]) -> str:
    """Why a clone failed, as git says it: its first `fatal:` (or `error:`) line, not a `warning:` printed before it
    nor the advice after it (every line is in the job's log already)."""
    said = [line.strip() for line in lines if not line.startswith(("Cloning into", "remote: "))]
    for prefix in ("fatal:", "error:"):
        found = next((line for line in said if line.startswith(prefix)), None)
        if found:
            return found
    return "\n".join(said)


# -- stored models ------------------------------------------------------------------------------------------------


def copy_tree(source: Path, dest: Path) -> None:
    """Copy a stored model into a job's folder (links stay links, pointing where they pointed)."""
    partial = fresh_partial(dest)
    partial.rmdir()
    try:
        shutil.copytree(source, partial, symlinks=True, copy_function=shutil.copy2)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(dest)


def tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def fresh_partial(dest: Path) -> Path:
    """An empty DEST.partial to fetch into (renamed to DEST when complete), left over ones removed."""
    if dest.exists():
        raise FileExistsError(f"{dest} already exists")
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    return partial
