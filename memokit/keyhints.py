"""Warnings for ``f.key(...)`` and ``f.invalidate(...)`` given a value of the wrong type.

``f.invalidate("5")`` for ``def f(user_id: int)`` drops the entry of
``f("5")``, never the entry of ``f(5)``: keys keep types apart. Nothing fails,
so the mistake would go unseen; these helpers warn instead, naming the
parameter. Only annotations that are plain classes (or unions of them, or
``Optional``) are checked, and only in those helpers, never on the call path.
"""

from __future__ import annotations

import contextlib
import types
import typing
import warnings
import weakref
from collections.abc import Callable
from typing import Any, TypeAlias

from .exceptions import ArgumentTypeWarning
from .keybuilders import bound_names, make_binder

Checker: TypeAlias = Callable[[str, tuple[Any, ...], dict[str, Any]], None]

_checkers: weakref.WeakKeyDictionary[Any, Checker] = weakref.WeakKeyDictionary()
# PEP 484's numeric tower: an int is a fine value for a float parameter.
_ALSO: dict[type, tuple[type, ...]] = {float: (int,), complex: (int, float)}


def _classes(hint: Any) -> tuple[type, ...] | None:
    """The classes an annotation allows, or None when it is not that simple."""
    if hint is None or hint is type(None):
        return (type(None),)
    if hint is typing.Any or getattr(hint, "_is_protocol", False):
        return None
    if isinstance(hint, type) and not isinstance(hint, types.GenericAlias):
        return (hint, *_ALSO.get(hint, ()))
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        found: list[type] = []
        for arm in typing.get_args(hint):
            classes = _classes(arm)
            if classes is None:
                return None
            found += classes
        return tuple(found)
    return None


def _prepare(func: Callable[..., Any]) -> Checker:
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # unresolvable annotations: nothing to check against
        hints = {}
    names = bound_names(func)
    checks = [
        (i, name, classes, hints[name])
        for i, name in enumerate(names)
        if name in hints and (classes := _classes(hints[name])) is not None
    ]
    bind = make_binder(func)
    shown = getattr(func, "__qualname__", "the function")

    def check(helper: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if not checks:
            return
        values = bind(args, kwargs)
        for i, name, classes, hint in checks:
            value = values[i]
            try:
                fits = isinstance(value, classes)
            except TypeError:  # a class that refuses isinstance(): nothing to say
                continue
            if not fits:
                warnings.warn(
                    f"{shown}.{helper}(): argument {name!r} is {value!r} "
                    f"({type(value).__qualname__}), but the parameter is annotated "
                    f"{getattr(hint, '__qualname__', hint)}; keys keep types apart, so "
                    f"this is not the key of a call with a {name} of that type",
                    ArgumentTypeWarning,
                    stacklevel=4,
                )

    return check


def check_annotations(
    func: Callable[..., Any], helper: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Warn when a value given to ``func``'s ``helper`` contradicts its annotation."""
    try:
        checker = _checkers.get(func)
    except TypeError:  # a callable object that takes no weak reference
        checker = None
    if checker is None:
        checker = _prepare(func)
        with contextlib.suppress(TypeError):
            _checkers[func] = checker
    checker(helper, args, kwargs)
