"""Git credentials: taken out of the URI before git sees it, kept readable by this user only, and handed to git
through its environment.

A URI may carry credentials (`https://alice:PASSWORD@host/repo.git`, or a token alone, `https://TOKEN@host/...`).
git is given the URI without them (`take`), so they are on no command line (`ps` shows every user's) and in no
clone's `.git/config` (the model's own code reads its folder). They reach git through a credential helper set
in git's environment (`environment`): a few lines of Python that read them from their own environment and answer
only for the URI's protocol and host, so a redirect to another host gets nothing. The helpers the user has
configured are reset first, so none of them answers instead or saves the credentials (`credential.helper=store`
would write them to ~/.git-credentials in clear).

A job's full URI is kept for its clones (a job whose folder is lost clones again) in `TRAINML_HOME/
git-credentials/job_ID`, a Vault (mode 0600 in a 0700 folder, as `--secret` values are), until the job is
removed; a stored model's is used by its one clone and never kept. `migrate` moves what an earlier version kept
in clear (the URI in trainml.db, the clone's remote) on start.

Over ssh (`ssh://git@host/...`, `git@host:org/repo`) the user name is a login, not a secret, and stays; the key
does the authenticating. Over git:// there is no authentication, so nothing is handed over.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import sys
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote

from ..errors import NotFound, UsageError
from .vault import Vault

log = logging.getLogger("trainml.server")

HELPER_SCHEMES = ("http", "https")  # where git asks a credential helper
LOGIN_SCHEMES = ("ssh", "git+ssh", "ssh+git", "file")  # a user name there is a login and stays in the URI
VARIABLE = "TRAINML_GIT_CREDENTIAL"  # the helper's one input: JSON {protocol, host, username, password}
_AUTHORITY = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<rest>.*)$", re.S)
_URL_LINE = re.compile(r"^(?P<key>[ \t]*url[ \t]*=[ \t]*)(?P<uri>\S+)[ \t]*$", re.M | re.I)

# git runs it as `sh -c '<helper> "$@"' <helper> get|store|erase`, the request on stdin; it answers `get` only.
_HELPER_CODE = rf"""
import json, os, sys
if sys.argv[1:] == ["get"]:
    given = json.loads(os.environ["{VARIABLE}"])
    asked = dict(line.partition("=")[::2] for line in sys.stdin.read().splitlines())
    if asked.get("protocol") == given["protocol"] and asked.get("host", "").lower() == given["host"]:
        sys.stdout.write("username=%(username)s\npassword=%(password)s\n" % given)
"""


class Credentials(NamedTuple):
    protocol: str
    host: str  # as git names it in the credential protocol: host[:port], lower case
    username: str
    password: str  # "" for a token alone (it is the user name)


def take(uri: str, loc: tuple = ("model", "source_uri")) -> tuple[str, Credentials | None]:
    """(the URI for git's command line, with no secret in it; the credentials to hand git, or None)."""
    match = _AUTHORITY.match(uri)
    if not match or "@" not in match["authority"]:
        return uri, None
    scheme = match["scheme"].lower()
    userinfo, _, hostport = match["authority"].rpartition("@")
    user, _, password = userinfo.partition(":")
    username, password = unquote(user), unquote(password)
    if any(ord(c) < 32 or ord(c) == 127 for c in username + password):
        raise UsageError.at(loc, "the credentials in the git URI hold a control character")
    kept = f"{user}@" if scheme in LOGIN_SCHEMES and user else ""
    bare = f"{match['scheme']}://{kept}{hostport}{match['rest']}"
    if scheme not in HELPER_SCHEMES or not username:
        return bare, None
    return bare, Credentials(scheme, hostport.lower(), username, password)


def environment(credentials: Credentials | None) -> dict[str, str]:
    """What to add to git's environment so it finds `credentials` (and only them); {} for none."""
    if credentials is None:
        return {}
    helper = f"!{shlex.quote(sys.executable)} -I -S -c {shlex.quote(_HELPER_CODE)}"
    return {
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "credential.helper", "GIT_CONFIG_VALUE_0": "",  # empty: forget the configured ones
        "GIT_CONFIG_KEY_1": "credential.helper", "GIT_CONFIG_VALUE_1": helper,
        VARIABLE: json.dumps(credentials._asdict()),
    }


def scrub_clone(folder: Path) -> bool:
    """Take credentials out of the remote URLs in a clone's .git/config (what git wrote when it was given them);
    True when there were some."""
    config = folder / ".git" / "config"
    try:
        text = config.read_text()
    except (OSError, UnicodeDecodeError):
        return False
    scrubbed = _URL_LINE.sub(lambda m: m["key"] + take(m["uri"])[0] if _takes(m["uri"]) else m[0], text)
    if scrubbed == text:
        return False
    partial = config.with_name("config.scrubbed")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(scrubbed)
    os.chmod(partial, config.stat().st_mode & 0o777)
    os.replace(partial, config)
    return True


def _takes(uri: str) -> bool:
    try:
        return take(uri)[0] != uri
    except UsageError:
        return False


class GitCredentials:
    """Each job's git URI with its credentials, for the job's clones only."""

    def __init__(self, folder: Path):
        self.vault = Vault(folder)

    @staticmethod
    def _name(job_id: str) -> str:
        return f"job_{job_id}"

    def keep(self, job_id: str, uri: str) -> bool:
        """Keep `uri` when it carries credentials; True when it did."""
        if take(uri)[0] == uri:
            return False
        self.vault.put(self._name(job_id), uri)
        return True

    def uri(self, job_id: str) -> str | None:
        return self.vault.values([self._name(job_id)]).get(self._name(job_id))

    def forget(self, job_id: str) -> None:
        try:
            self.vault.remove(self._name(job_id))
        except NotFound:
            pass

    def migrate(self, store, clones: list[Path]) -> None:
        """Move what an earlier version kept in clear: a job's full URI in trainml.db goes here (and is erased
        from the database's files), and credentials in a clone's remote are taken out."""
        for job in store.jobs():
            uri = job.secrets.get("source_uri")
            if uri:
                self.keep(job.id, uri)
                store.erase_job_secret(job.id, "source_uri")
                log.info("job %s: its git credentials moved out of the database", job.id)
        for folder in clones:
            if scrub_clone(folder):
                log.info("%s: credentials taken out of the clone's remote URL", folder)
