"""Which captured calls a reader asks for (`trainml job requests`, GET /api/jobs/{job}/requests): a status or
class, a route, an age or a time. A leaf: the CLI checks its options with it, the control plane filters with it.
"""

from __future__ import annotations

import datetime
import re

from .errors import UsageError

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
STATUSES = ("2xx", "3xx", "4xx", "5xx")


def since_time(since: str | None, now: float | None = None) -> str | None:
    """The ISO time an age (`10m`) or an ISO time stands for, comparable with the entries' times; None: no bound."""
    if not since:
        return None
    match = _AGE.match(since.strip())
    if match:
        moment = (now if now is not None else datetime.datetime.now(datetime.timezone.utc).timestamp())
        moment -= float(match.group(1)) * _UNITS[match.group(2)]
        return datetime.datetime.fromtimestamp(moment, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    try:
        parsed = datetime.datetime.fromisoformat(since.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"since: {since!r} is neither an age (10m, 2h, 1d) nor an ISO time") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return parsed.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def check_status(status: str | None) -> str | None:
    if status is None or status in STATUSES or (status.isdigit() and len(status) == 3):
        return status
    raise UsageError(f"status: {status!r} must be a status (200) or a class ({', '.join(STATUSES)})")


def matches(entry: dict, status: str | None, route: str | None, since: str | None) -> bool:
    if since is not None and entry.get("time", "") < since:
        return False
    if status is not None:
        code = str(entry.get("status"))
        if (code[0] + "xx" if status.endswith("xx") else code) != status:
            return False
    if route is not None:
        label = entry.get("route", "")
        if label != route and label.split(" ", 1)[-1] != route:
            return False
    return True
