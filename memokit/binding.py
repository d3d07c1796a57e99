"""Binding a call to a signature: a binder prepared once per decorated function.

A binder turns ``(args, kwargs)`` into the argument values in signature order,
defaults applied, the way Python binds them, and raises the ``TypeError`` Python
itself raises for a call that does not fit. Key builders (:mod:`memokit.keybuilders`),
tag templates (:mod:`memokit.counterkeys`) and key hints build on it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

from .generated import define
from .identity import signature_of

Binder: TypeAlias = Callable[[tuple[Any, ...], dict[str, Any]], tuple[Any, ...]]
"""Turns ``(args, kwargs)`` into the bound values in signature order."""

_EMPTY = inspect.Parameter.empty


def make_binder(func: Callable[..., Any], ignore: Iterable[str] = ()) -> Binder:
    """Prepare, once, a function that binds ``(args, kwargs)`` to ``func``'s signature.

    The result is the tuple of argument values in signature order, defaults
    applied, ``*args`` as a tuple and ``**kwargs`` as a dict, without the
    parameters named in ``ignore``. A call that does not fit the signature
    raises the ``TypeError`` Python itself would raise.
    """
    signature = signature_of(func)
    params = list(signature.parameters.values())
    names = [p.name for p in params]
    ignored = set(ignore)
    unknown = sorted(ignored - set(names))
    if unknown:
        raise ValueError(
            f"ignore={sorted(ignored)!r} names {', '.join(map(repr, unknown))}, which "
            f"{getattr(func, '__qualname__', func)} does not take; its parameters are "
            f"{', '.join(names) or 'none'}"
        )
    kinds = inspect.Parameter
    positional_kinds = (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
    positional = [p for p in params if p.kind in positional_kinds]
    var_positional = any(p.kind is kinds.VAR_POSITIONAL for p in params)
    keyword_only = [p for p in params if p.kind is kinds.KEYWORD_ONLY]
    var_keyword = any(p.kind is kinds.VAR_KEYWORD for p in params)
    n_positional = len(positional)
    positional_defaults = tuple(p.default for p in positional)
    first_default = next(
        (i for i, p in enumerate(positional) if p.default is not _EMPTY), n_positional
    )
    # fills[n]: the defaults that complete a call with n positional arguments
    # (None when n arguments cannot be a complete call).
    fills: list[tuple[Any, ...] | None] = [None] * first_default + [
        positional_defaults[n:] for n in range(first_default, n_positional + 1)
    ]
    by_name = {p.name: i for i, p in enumerate(positional) if p.kind is kinds.POSITIONAL_OR_KEYWORD}
    keyword_index = {p.name: i for i, p in enumerate(keyword_only)}
    keyword_defaults = tuple(p.default for p in keyword_only)
    keep = [i for i, name in enumerate(_layout(params)) if name not in ignored]
    drop = len(keep) != len(_layout(params))
    simple = not (var_positional or keyword_only or var_keyword)

    stub = _stand_in(func, params)

    def fail(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        if stub is not None:
            stub(*args, **kwargs)  # raises the TypeError Python gives for func
        signature.bind(*args, **kwargs)
        raise TypeError(f"cannot bind {args!r}, {kwargs!r} to {signature}")  # pragma: no cover

    def bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        values = None
        if simple and not kwargs and len(args) <= n_positional:
            fill = fills[len(args)]
            if fill is not None:
                values = args + fill if fill else args
        if values is None:
            values = _bind_general(args, kwargs)
        if drop:
            return tuple([values[i] for i in keep])
        return values

    def _bind_general(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        n_args = len(args)
        if n_args > n_positional and not var_positional:
            return fail(args, kwargs)
        slots = list(args[:n_positional]) + [_EMPTY] * max(0, n_positional - n_args)
        extra_kwargs: dict[str, Any] = {}
        keyword_values = list(keyword_defaults)
        for name, value in kwargs.items():
            index = by_name.get(name)
            if index is not None:
                if slots[index] is not _EMPTY:
                    return fail(args, kwargs)
                slots[index] = value
            elif name in keyword_index:
                keyword_values[keyword_index[name]] = value
            elif var_keyword:
                extra_kwargs[name] = value
            else:
                return fail(args, kwargs)
        for i, value in enumerate(slots):
            if value is _EMPTY:
                if positional_defaults[i] is _EMPTY:
                    return fail(args, kwargs)
                slots[i] = positional_defaults[i]
        if _EMPTY in keyword_values:
            return fail(args, kwargs)
        if var_positional:
            slots.append(args[n_positional:])
        slots.extend(keyword_values)
        if var_keyword:
            slots.append(extra_kwargs)
        return tuple(slots)

    return bind


def _stand_in(func: Callable[..., Any], params: list[inspect.Parameter]) -> Any:
    """A function with ``func``'s parameters and names and an empty body.

    Calling it with arguments that do not bind raises exactly the ``TypeError``
    Python gives for ``func`` ("price() takes 1 positional argument but 2 were
    given"), which ``Signature.bind`` words differently.
    """
    kinds = inspect.Parameter
    parts: list[str] = []
    defaults: dict[str, Any] = {}
    slash = star = False
    for i, p in enumerate(params):
        if p.kind is not kinds.POSITIONAL_ONLY and not slash:
            slash = True
            if i:
                parts.append("/")
        if p.kind is kinds.KEYWORD_ONLY and not star:
            star = True
            parts.append("*")
        stars: dict[Any, str] = {kinds.VAR_POSITIONAL: "*", kinds.VAR_KEYWORD: "**"}
        prefix = stars.get(p.kind, "")
        star = star or p.kind is kinds.VAR_POSITIONAL
        text = f"{prefix}{p.name}"
        if p.default is not inspect.Parameter.empty:
            defaults[f"d{i}"] = p.default
            text += f"=d{i}"
        parts.append(text)
    if params and not slash:
        parts.append("/")
    namespace: dict[str, Any] = dict(defaults)
    try:
        stub = define(f"def stub({', '.join(parts)}): pass\n", "stub", namespace, "binder", func)
    except SyntaxError:  # pragma: no cover - a signature Python cannot write down
        return None
    name = getattr(func, "__name__", None)
    qualname = getattr(func, "__qualname__", None)
    if isinstance(name, str) and isinstance(qualname, str):
        stub.__code__ = stub.__code__.replace(co_name=name, co_qualname=qualname)
        stub.__name__, stub.__qualname__ = name, qualname
    return stub


def _layout(params: list[inspect.Parameter]) -> list[str]:
    """Parameter names in the order the binder lays out values."""
    kinds = inspect.Parameter
    order = (
        (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD),
        (kinds.VAR_POSITIONAL,),
        (kinds.KEYWORD_ONLY,),
        (kinds.VAR_KEYWORD,),
    )
    return [p.name for group in order for p in params if p.kind in group]


def bound_names(func: Callable[..., Any], ignore: Iterable[str] = ()) -> list[str]:
    """Names of the values a binder from :func:`make_binder` returns, in order."""
    ignored = set(ignore)
    params = list(signature_of(func).parameters.values())
    return [name for name in _layout(params) if name not in ignored]
