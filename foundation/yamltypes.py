"""What a YAML value may stand for without conversion: the task's keys take their own type.

pydantic's lax mode turns 1, "yes" and "true" into True, "5" into 5, and bytes into text. A task
file is read by people and, in the service, written by strangers, so each key takes only the
values that already are of its type (``foundation.config.Section`` calls ``type_problem``).
"""
from __future__ import annotations

from pathlib import Path

# Python types that stand for each scalar annotation without any conversion.
_PLAIN = {bool: (bool,), int: (int,), float: (int, float), str: (str,), Path: (str, Path)}
_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "text", Path: "a path (text)"}


def describe_value(value) -> str:
    """How a YAML value is named in an error: ``the text 'yes'``, ``the number 1``, ``true``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the text {value[:60]!r}"
    return {dict: "a mapping", list: "a list", bytes: "binary data", type(None): "nothing"}.get(
        type(value), f"a {type(value).__name__} value")


def type_problem(annotation, value) -> str | None:
    """Why ``value`` may not stand for ``annotation`` without conversion, or None when it may (or
    when the annotation is not made of scalars and pydantic's own check decides).

    >>> type_problem(bool, "yes")
    "must be true or false, not the text 'yes'"
    >>> type_problem(int | None, True)
    'must be a whole number, not true'
    >>> type_problem(list[Path], ["a.md", b"/etc"]) is not None
    True
    >>> type_problem(float, 3) is None
    True
    """
    import types
    import typing

    if value is None:
        return None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        problems = [type_problem(a, value) for a in options]
        if any(p is None for p in problems):
            return None
        scalars = [a for a in options if a in _PLAIN]
        if len(scalars) == len(options):
            return f"must be {' or '.join(_NAMES[a] for a in scalars)}, not {describe_value(value)}"
        return problems[0]
    if origin is list and isinstance(value, list) and args:
        for i, item in enumerate(value):
            problem = type_problem(args[0], item)
            if problem:
                return f"item {i + 1} {problem}"
        return None
    if origin is typing.Literal:
        if any(type(value) is type(a) and value == a for a in args):
            return None
        names = [repr(a) for a in args]
        choices = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        return f"must be {choices}, not {describe_value(value)}"
    if annotation in _PLAIN:
        ok = isinstance(value, _PLAIN[annotation]) and (annotation is bool or not isinstance(value, bool))
        ok = ok or (annotation is int and isinstance(value, float) and value.is_integer())  # 5.0 is 5
        return None if ok else f"must be {_NAMES[annotation]}, not {describe_value(value)}"
    return None
