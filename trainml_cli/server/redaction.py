"""Credentials in git URIs, kept out of every output.

A git URI may carry a secret: `https://alice:PASSWORD@host/repo.git`, or a token alone,
`https://TOKEN@host/repo.git` (how GitHub and GitLab tokens are usually passed). The job keeps the URI
redacted in its spec (what the API, the CLI and the dashboard show) and the full one apart, for its clones only
(gitcredentials.py). Anything else that may quote a URI (events, git's messages, failure reasons, server.log)
goes through `redact`.

Over http(s), git and ftp a user name alone is taken for a token and hidden too; over ssh it is a login
(`ssh://git@host/...`, `git@host:org/repo`), the key does the authenticating, and it stays.
"""

from __future__ import annotations

import re

HIDDEN = "***"
_TOKEN_SCHEMES = ("http", "https", "git", "ftp", "ftps")
# scheme://userinfo@ ; the userinfo ends at the last '@' before a '/', '?', '#', whitespace or quote (as git and
# urllib read it: an unencoded '@' in a password stays hidden)
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*)://(?P<userinfo>[^/?#\s'\"<>]+)@")


def _hide(match: re.Match) -> str:
    scheme, userinfo = match["scheme"], match["userinfo"]
    user, colon, _password = userinfo.partition(":")
    if colon:
        shown = f"{user}:{HIDDEN}" if user and user != HIDDEN else HIDDEN
    elif scheme.lower() in _TOKEN_SCHEMES:
        shown = HIDDEN
    else:
        shown = userinfo
    return f"{scheme}://{shown}@"


def redact(text: str) -> str:
    """`text` with every credential in a URI replaced by ***."""
    if not isinstance(text, str) or "@" not in text:
        return text
    return _USERINFO.sub(_hide, text)

