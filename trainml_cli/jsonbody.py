"""A JSON request body's bounds, the same on both servers: the endpoint runtime and the control plane's API.

A leaf importing nothing of ours: the runtime runs in an environment holding only its own requirements, and the
control plane must not import the runtime, so what both need about a hostile body lives here.

- MAX_DEPTH: objects and arrays nest at most 100 levels deep (the body's own object is level 1). Deeper gets a
  422 naming the bound, whatever the body's size, never a RecursionError: Python's json module recurses once
  per level (RecursionError near 1,000) and pydantic's parser gives up at 200 with an error of its own. 100
  leaves a real payload (a tensor of ten dimensions, a route list) ample room.
- MAX_ERRORS: a 422 lists the first 20 problems and counts the rest ("... and N more"), so its answer stays
  small whatever the body (a body of a million unknown keys would otherwise get an answer ten times its size).
- OFF_LOOP_BYTES: bodies larger than this are checked on a thread, so the event loop keeps answering; smaller
  ones inline, where a thread hop would cost more than the check.
"""

from __future__ import annotations

import json

MAX_DEPTH = 100
MAX_ERRORS = 20
OFF_LOOP_BYTES = 64 * 1024
TOO_DEEP = f"objects and arrays nested more than {MAX_DEPTH} levels deep; the limit is {MAX_DEPTH}"


class TooDeep(ValueError):
    """A body nested deeper than MAX_DEPTH; `loc` is where the first too-deep value is (keys and indexes)."""

    def __init__(self, loc: list | tuple = ()):
        super().__init__(TOO_DEEP)
        self.loc = list(loc)


def summary(problems: list[str], total: int | None = None, separator: str = "; ") -> str:
    """The first MAX_ERRORS problems joined, and how many more there are of `total`."""
    total = len(problems) if total is None else total
    shown = problems[:MAX_ERRORS]
    text = separator.join(shown)
    if total > len(shown):
        text += f"{separator}... and {total - len(shown):,} more"
    return text


def might_be_deep(body: bytes) -> bool:
    """False when the body cannot nest past MAX_DEPTH: it has no more opening brackets than that (a count at C
    speed; brackets inside strings only make it cautious)."""
    return body.count(b"[") + body.count(b"{") > MAX_DEPTH


class TooMany(ValueError):
    """A body of more keys and array items than its receiver takes."""

    def __init__(self, bound: int, value):
        super().__init__(f"more than {bound:,} keys and array items in one body; the limit is {bound:,}")
        self.bound = bound
        self.value = value  # parsed: the receiver may name the first few unknown keys


def loads(body: bytes | str, max_members: int | None = None):
    """json.loads, raising TooDeep for a body nested past MAX_DEPTH (however deep: the parser's own recursion
    limit becomes TooDeep too), TooMany for one of more than `max_members` keys and array items, and ValueError
    for one that is not JSON. The walk that counts runs only when a count of brackets and commas at C speed
    says the body might break a bound, and it yields the GIL as any Python loop does."""
    try:
        value = json.loads(body)
    except RecursionError:
        raise TooDeep() from None
    raw = body.encode() if isinstance(body, str) else body
    brackets = raw.count(b"[") + raw.count(b"{")
    # Every member but a container's first follows a comma: members <= commas + containers.
    many = max_members is not None and brackets + raw.count(b",") > max_members
    if brackets > MAX_DEPTH or many:
        where, members = _walk(value, MAX_DEPTH, max_members if many else None)
        if where is not None:
            raise TooDeep(where)
        if many and members > max_members:
            raise TooMany(max_members, value)
    return value


def deeper_than(value, bound: int = MAX_DEPTH) -> list | None:
    """Where in a parsed JSON value a container sits deeper than `bound` levels (a path of keys and indexes),
    or None."""
    return _walk(value, bound, None)[0]


def _walk(value, depth: int, members: int | None) -> tuple[list | None, int]:
    """(where a container sits deeper than `depth`, or None; how many keys and array items, counted until past
    `members`). Iterative, so its own depth costs no stack."""
    stack = [(value, 1, ())]
    count = 0
    while stack:
        item, level, path = stack.pop()
        if level > depth:
            return list(path), count
        if isinstance(item, dict):
            count += len(item)
            stack.extend((v, level + 1, (*path, k)) for k, v in item.items() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            count += len(item)
            stack.extend((v, level + 1, (*path, i)) for i, v in enumerate(item) if isinstance(v, (dict, list)))
        if members is not None and count > members:
            return None, count
    return None, count
