"""The param spec: one body param of a route, its type, its JSON Schema, its default and the checks on it.

A route's `body` is a list of params; each names an argument of the user's function and the type a request's
value must have. The route spec (routespec.py) checks a route as a whole and hands each param here. Like the
route spec, this module stays light: the CLI imports it on every start.
"""

from __future__ import annotations

import ast
import json
import keyword
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

TYPES = ("str", "int", "float", "bool", "dict", "list", "file")
# A `file` param reaches the function as a pathlib.Path to the upload (runtime/uploads.py); body verbs only.
PYTHON_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool, "dict": dict, "list": list,
                                 "file": Path}
ITEM_TYPES = ("str", "int", "float", "bool", "dict")  # what a list param's `items` may be
CHOICE_TYPES = ("str", "int", "float")  # the types a param's `choices` may limit
MAX_CHOICES = 1000
MAX_DEFAULT_LENGTH = 10_000  # a deeply nested literal can exhaust the parser; no real default is this long

PARAM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "type"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "type": {"type": "string", "enum": list(TYPES)},
        "optional": {"type": "boolean", "default": False},
        "default_value": {"type": ["string", "null"]},
        "items": {"type": "string", "enum": list(ITEM_TYPES)},
        "choices": {"type": "array", "minItems": 1, "maxItems": MAX_CHOICES, "items": {"type": ["string", "number"]}},
    },
}

# Where in a route a problem is, and what it is: the route spec collects these and names the route once.
Problem = Callable[[tuple, str], None]


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    optional: bool = False
    default_value: str | None = None  # as the user wrote it (a Python literal), kept for round trips
    default: Any = None  # the parsed literal; None when the param is required or has no default
    items: str | None = None  # a list's item type
    choices: tuple | None = None  # the values allowed, of the param's type

    @property
    def python_type(self) -> type:
        return PYTHON_TYPES[self.type]

    def to_dict(self) -> dict:
        data: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.optional:
            data["optional"] = True
            if self.default_value is not None:
                data["default_value"] = self.default_value
        if self.items is not None:
            data["items"] = self.items
        if self.choices is not None:
            data["choices"] = list(self.choices)
        return data

    def describe(self) -> str:
        """`xs: list[float]`, `size: str in ('small', 'large') = 'small'`: the param as `job get` shows it."""
        text = f"{self.name}: {self.type}" + (f"[{self.items}]" if self.items else "")
        if self.choices is not None:
            text += f" in ({', '.join(map(repr, self.choices))})"
        if self.optional:
            text += f" = {self.default_value if self.default_value is not None else 'None'}"
        return text


_EXAMPLES = {"str": "text", "int": 1, "float": 0.5, "bool": True, "dict": {}, "list": [], "file": "aGVsbG8="}


def example_value(param: Param) -> Any:
    if param.optional and param.default is not None:
        return param.default
    if param.choices:
        return param.choices[0]
    if param.items is not None:
        return [_EXAMPLES[param.items]]
    return _EXAMPLES[param.type]


def parse_default(text: str, type_name: str) -> Any:
    """Parse a default value written as a Python literal; never evaluates code. Raises ValueError."""
    if len(text) > MAX_DEFAULT_LENGTH:
        raise ValueError(f"is longer than {MAX_DEFAULT_LENGTH} characters")
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        bare_word = type_name == "str" and not any(c in text for c in "()[]{}'\"")
        hint = f" (write strings with quotes, e.g. \"'{text}'\")" if bare_word else ""
        raise ValueError(f"{text!r} is not a Python literal{hint}") from None
    if value is None:
        return None
    if type_name == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = PYTHON_TYPES[type_name]
    if type_name == "int" and isinstance(value, bool) or not isinstance(value, expected):
        raise ValueError(f"{text!r} is {a(type(value).__name__)}, not {a(type_name)}")
    # A non-finite default would reach the model as inf or nan, which requests themselves may not send (422).
    if type_name == "float" and not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number (requests may not send inf or nan either)")
    if type_name in ("dict", "list"):
        try:
            json.dumps(value, allow_nan=False)
        except TypeError:
            raise ValueError(f"{text!r} cannot be sent as JSON (use only str, int, "
                             "float, bool, None, lists and dicts)") from None
        except ValueError:
            raise ValueError(f"{text!r} holds a number that is not finite (requests "
                             "may not send inf or nan either)") from None
    return value


def a(noun: str) -> str:
    """`an int`, `a str`: the article a type name takes in a message."""
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def build_params(raws: list[dict], positional: bool, problem: Problem) -> list[Param]:
    """Params from a route's schema-valid `body`; `problem((where in the route, ...), message)` for the rest."""
    params: list[Param] = []
    names: set[str] = set()
    seen_optional = False
    for i, p in enumerate(raws):
        where = ("body", i)
        name = p["name"]
        if not name.isidentifier() or keyword.iskeyword(name):
            problem((*where, "name"), f"{name!r} is not a valid Python parameter name")
        elif name in names:
            problem((*where, "name"), f"{name!r} appears twice")
        names.add(name)
        optional = p.get("optional", False)
        default_value = p.get("default_value")
        default = None
        if default_value is not None and not optional:
            problem((*where, "default_value"), "only optional params take a default (set \"optional\": true)")
        elif default_value is not None:
            try:
                default = parse_default(default_value, p["type"])
            except ValueError as exc:
                problem((*where, "default_value"), str(exc))
        if optional:
            seen_optional = True
        elif seen_optional and positional:
            problem(where, f"required param {name!r} comes after an optional one in a positional route")
        items = p.get("items")
        if items is not None and p["type"] != "list":
            problem((*where, "items"), f"only list params take items (this param is {a(p['type'])})")
        choices = _choices(p, where, problem)
        if choices is not None and default is not None and default not in choices:
            problem((*where, "default_value"), f"{default_value!r} is not one of the choices "
                                                f"{', '.join(map(repr, choices))}")
        params.append(Param(name, p["type"], optional, default_value, default, items, choices))
    return params


def _choices(raw: dict, where: tuple, problem: Problem) -> tuple | None:
    """A param's choices, each of its type (an int is a float's choice, as it is a float's value); None if none."""
    choices = raw.get("choices")
    if choices is None:
        return None
    type_name = raw["type"]
    if type_name not in CHOICE_TYPES:
        problem((*where, "choices"), f"only {', '.join(CHOICE_TYPES)} params take choices "
                                     f"(this param is {a(type_name)})")
        return None
    found = []
    for i, choice in enumerate(choices):
        if type_name == "float" and isinstance(choice, (int, float)):
            choice = float(choice)
            if not math.isfinite(choice):
                problem((*where, "choices", i), f"{choice!r} is not a finite number")
        elif not isinstance(choice, PYTHON_TYPES[type_name]):
            problem((*where, "choices", i), f"{choice!r} is {a(type(choice).__name__)}, not {a(type_name)}")
        found.append(choice)
    return tuple(found)
