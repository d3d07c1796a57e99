"""A decorated function named on the command line, and the arguments of one call.

``inspect`` and ``invalidate`` import the function's module (the only commands
that import application code). Arguments are Python literals read with
``ast.literal_eval`` (``42``, ``'42'``, ``(1, 2)``, ``name=literal`` for a keyword),
or JSON with ``--args-json``: keys are type-aware, so ``42`` and ``'42'`` are two
entries.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import sys
from typing import Any

from memokit.exceptions import UnkeyableArgument
from memokit.fnstate import CachedState

from ._settings import SettingsError

_KEYWORD = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)


UsageError = SettingsError
"""A bad function path or argument: exit 2, saying what to write instead."""


def load_function(path: str) -> Any:
    """Import ``package.module:qualname`` and return the ``@cached`` function it names."""
    module_name, colon, qualname = path.partition(":")
    if not colon or not module_name or not qualname:
        raise UsageError(
            f"{path!r} is not a function path; write 'package.module:function' "
            f"(or 'package.module:Class.method')"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: the project's own modules
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(
            f"cannot import {module_name!r} ({exc}); run from the project's directory or set "
            f"PYTHONPATH"
        ) from None
    for name in qualname.split("."):
        try:
            found = getattr(found, name)
        except AttributeError:
            raise UsageError(f"{module_name!r} has no {qualname!r}") from None
    if not isinstance(getattr(found, "_state", None), CachedState):
        raise UsageError(f"{path!r} is not decorated with @memokit.cached")
    return found


def parse_arguments(
    literals: tuple[str, ...], args_json: str | None, kwargs_json: str | None
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The positional and keyword arguments the command line gives for one call."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for text in literals:
        keyword = _KEYWORD.match(text)
        value = _literal(keyword[2] if keyword else text)
        if keyword:
            kwargs[keyword[1]] = value
        elif kwargs:
            raise UsageError(f"positional argument {text!r} after a keyword argument")
        else:
            args.append(value)
    if args_json is not None:
        loaded = _json(args_json, "--args-json")
        if not isinstance(loaded, list):
            raise UsageError(
                f"--args-json takes a JSON array, such as '[42, \"eur\"]', not {args_json!r}"
            )
        args.extend(loaded)
    if kwargs_json is not None:
        loaded = _json(kwargs_json, "--kwargs-json")
        if not isinstance(loaded, dict):
            raise UsageError(
                f"--kwargs-json takes a JSON object, such as '{{\"page\": 2}}', not {kwargs_json!r}"
            )
        kwargs.update(loaded)
    return tuple(args), kwargs


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise UsageError(
            f"argument {text!r} is not a Python literal; write 42, 'text' (quoted, inside "
            f"the shell's quotes: \"'text'\"), (1, 2), None, or give --args-json"
        ) from None


def _json(text: str, flag: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: {text!r} is not JSON ({exc})") from None


def call_key(fn: Any, path: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The key ``fn`` stores this call under; a call its signature refuses is bad usage."""
    try:
        key: str = fn.key(*args, **kwargs)
    except (TypeError, UnkeyableArgument) as exc:
        raise UsageError(f"{describe_call(path, args, kwargs)}: {exc}") from None
    return key


def describe_call(path: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """``module:function(42, page=2)``, as the call reads in Python."""
    shown = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{path}({', '.join(shown)})"
