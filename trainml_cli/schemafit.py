"""Whether a value surely fits a JSON Schema, for the few keywords this project's own schemas use, without jsonschema.

jsonschema takes longer to import than the endpoint runtime's server libraries together (referencing, attrs, its
format checkers), and the runtime checks its routes on every start, where they are almost always sound (the control
plane checked them already). So a route is first tried here: True means jsonschema would accept it too; False means
"not sure", and the caller asks jsonschema, which says what is wrong in its own detail. Hence the rule of this
module: anything it does not know (a keyword, a type name, a subtle case such as 32.0 for an integer) is False.
"""

from __future__ import annotations

import re
from typing import Any

# Keywords that only describe: they never make a value fail.
_ANNOTATIONS = frozenset({"$schema", "title", "description", "default"})
_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: type(v) is int,  # jsonschema takes 32.0 too: "not sure" here
    "number": lambda v: type(v) in (int, float),
    "boolean": lambda v: type(v) is bool,
    "null": lambda v: v is None,
    "array": lambda v: type(v) is list,
    "object": lambda v: type(v) is dict and all(isinstance(k, str) for k in v),
}


def fits(schema: dict, value: Any) -> bool:
    """True only when `value` is valid against `schema` (draft 2020-12) for certain."""
    for keyword, expected in schema.items():
        check = _KEYWORDS.get(keyword)
        if check is None:
            if keyword in _ANNOTATIONS:
                continue
            return False
        if not check(expected, value, schema):
            return False
    return True


def _type(expected, value, _schema) -> bool:
    names = expected if isinstance(expected, list) else [expected]
    return any(name in _TYPES and _TYPES[name](value) for name in names)


def _surely_not(schema: dict, value: Any) -> bool:
    """The value's type alone rules this schema out."""
    return "type" in schema and not _type(schema["type"], value, schema)


def _one_of(branches, value, _schema) -> bool:
    # Exactly one branch: the one that fits, every other ruled out by type (a stricter "no" proves nothing).
    fitting = [branch for branch in branches if fits(branch, value)]
    return len(fitting) == 1 and all(branch is fitting[0] or _surely_not(branch, value) for branch in branches)


def _properties(expected, value, schema) -> bool:
    if type(value) is not dict:
        return True  # applies to objects only
    return all(fits(expected[key], item) for key, item in value.items() if key in expected)


def _additional(expected, value, schema) -> bool:
    if expected is not False:
        return False
    return type(value) is not dict or all(key in schema.get("properties", {}) for key in value)


def _applies(kind, test):
    """A keyword that constrains only values of one type (others pass it)."""
    return lambda expected, value, _schema: not _TYPES[kind](value) or test(expected, value)


_KEYWORDS = {
    "type": _type,
    "enum": lambda expected, value, _s: any(type(value) is type(item) and value == item for item in expected),
    "oneOf": _one_of,
    "properties": _properties,
    "additionalProperties": _additional,
    "required": _applies("object", lambda names, v: all(name in v for name in names)),
    "items": _applies("array", lambda item, v: isinstance(item, dict) and all(fits(item, x) for x in v)),
    "minItems": _applies("array", lambda n, v: len(v) >= n),
    "maxItems": _applies("array", lambda n, v: len(v) <= n),
    "minLength": _applies("string", lambda n, v: len(v) >= n),
    "maxLength": _applies("string", lambda n, v: len(v) <= n),
    "pattern": _applies("string", lambda pattern, v: re.search(pattern, v) is not None),
    "minimum": _applies("number", lambda n, v: v >= n),
    "maximum": _applies("number", lambda n, v: v <= n),
}
