"""Key builders: a function and its arguments in, one canonical cache key out.

The default builder, prepared once per decorated function:

1. binds the call to the function's signature with a binder built at decoration
   time (:mod:`memokit.binding`; defaults applied, so ``f(1)``, ``f(1, b=2)`` and
   ``f(b=2, a=1)`` agree when ``b`` defaults to 2);
2. encodes the bound values with :func:`~memokit.keyencoding.encode`, an
   injective, type-aware text encoding that is the same in every process;
3. prefixes the key format (``k2:``) and the function's identity
   (:func:`function_identity`, ``module:qualname`` for a module-level function);
4. replaces the encoded arguments by a BLAKE2b digest when the key would be
   longer than ``MAX_KEY_LENGTH - len(LOCK_SUFFIX)`` or contain anything but
   printable ASCII without spaces, so every key, and its lock key, is safe for
   memcached.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import fractions
import inspect
import pathlib
import re
import string
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeAlias

from .binding import Binder, bound_names, make_binder
from .exceptions import UnkeyableArgument
from .generated import define
from .identity import (
    digest_text,
    function_identity,
    function_name,
    runtime_method_problem,
    signature_of,
    watched_cells,
)
from .keyencoding import KEY_FORMAT, encode, key_by_repr, register_key, unregister_key

__all__ = [
    "KEY_FORMAT",
    "LOCK_SUFFIX",
    "MAX_KEY_LENGTH",
    "Binder",
    "KeyBuilder",
    "UnkeyableArgument",
    "bound_names",
    "encode",
    "function_identity",
    "function_name",
    "key_by_repr",
    "make_binder",
    "make_callable_builder",
    "make_key_builder",
    "make_template_builder",
    "register_key",
    "unregister_key",
]

MAX_KEY_LENGTH: Final = 200
"""Longest key memokit makes itself (before prefix and version), lock keys included;
leaves 50 of memcached's 250 bytes for a ``KEY_PREFIX`` of up to 47 and the version."""
LOCK_SUFFIX: Final = "~lock"
"""Appended to an entry's key to make its lock's key (see :mod:`memokit.locks`)."""
_BUILT_KEY_LENGTH: Final = MAX_KEY_LENGTH - len(LOCK_SUFFIX)
"""Longest key a default builder returns: its lock key must fit as well."""

_SMALL_INT: Final = 10**18
_MEMO_SIZE: Final = 1024
"""Keys remembered per builder for calls with small int and short str arguments."""

_EMPTY = inspect.Parameter.empty

KeyBuilder: TypeAlias = Callable[[tuple[Any, ...], dict[str, Any]], str]
"""Turns ``(args, kwargs)`` of one call into its cache key."""

# -- builders ---------------------------------------------------------------------


def make_key_builder(
    func: Callable[..., Any],
    *,
    ignore: Iterable[str] = (),
    name: str | None = None,
    derived: bool | None = None,
) -> KeyBuilder:
    """Prepare the default key builder of ``func`` (see the module docstring).

    ``derived`` says ``name`` was derived from ``func`` (not given by the user),
    so it follows the function's captured values when they are rebound.

    The builder is generated as source code for this signature, the way
    ``dataclasses`` generates ``__init__``: positional calls unpack straight into
    locals, and ints and strs are encoded inline, which halves the cost of the
    per-call loop it replaces. Locals are named ``v0, v1 ...``, never after the
    parameters, so no parameter name can shadow the builder's own names.

    Positional calls whose arguments are all small ints or short strs (the
    usual ids and names) find their key in a small per-builder dict keyed by
    the args tuple, after an exact type check, since ``(1,) == (True,)``.
    """
    ignore = tuple(ignore)
    bind = make_binder(func, ignore=())
    make_binder(func, ignore)  # checks the names in ignore
    if derived is None:
        derived = name is None
    problem = runtime_method_problem(func, ignore) if derived else None
    if problem is not None:
        raise UnkeyableArgument(problem)
    layout = bound_names(func)
    identity = function_identity(func, name)
    prefix = f"k{KEY_FORMAT}:{identity}"
    params = list(signature_of(func).parameters.values())
    kinds = inspect.Parameter
    positional = [
        p for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
    ]
    simple = len(positional) == len(params)
    local = [f"v{i}" for i in range(len(layout))]
    kept = [(i, n) for i, n in enumerate(layout) if n not in ignore]
    memo: dict[tuple[Any, ...], str] = {}
    namespace: dict[str, Any] = {
        "bind": bind,
        "encode": encode,
        "small": _SMALL_INT,
        "prefix": prefix,
        "limit": _BUILT_KEY_LENGTH,
        "digest": digest_text,
        "shown": f"{getattr(func, '__qualname__', identity)}()",
        "Unkeyable": UnkeyableArgument,
        "kept": kept,
        "defaults": tuple(p.default for p in positional),
        "EMPTY": _EMPTY,
        "memo": memo,
        "remembered": memo.get,
        "memo_size": _MEMO_SIZE,
    }
    lines = ["def build(args, kwargs):", "    remember = None"]
    watched = watched_cells(func) if derived else []
    if watched:
        # A captured value rebound after decoration (n = None; @cached def f ...;
        # n = k) changes what f computes: a new identity, and a new prefix.
        def refresh() -> None:
            # The new prefix goes in before the new cell snapshot: a thread that
            # sees the snapshot up to date also sees the prefix that goes with it.
            contents = [cell.cell_contents for cell, _ in watched]
            namespace["prefix"] = f"k{KEY_FORMAT}:{function_identity(func)}"
            memo.clear()
            for i, value in enumerate(contents):
                namespace[f"o{i}"] = value

        namespace["refresh"] = refresh
        for i, (cell, contents) in enumerate(watched):
            namespace[f"c{i}"], namespace[f"o{i}"] = cell, contents
        changed = " or ".join(f"c{i}.cell_contents is not o{i}" for i in range(len(watched)))
        lines += [f"    if {changed}:", "        refresh()"]
    unpack_all = f"    {', '.join(local)}, = " if local else "    "
    if simple and local:
        first = "if"
        for count in range(len(positional), -1, -1):
            if count < len(positional) and positional[count].default is _EMPTY:
                break
            lines.append(f"    {first} not kwargs and len(args) == {count}:")
            head = ", ".join(local[:count])
            lines.append(f"        {head}, = args" if count else "        pass")
            lines.extend(f"        {local[j]} = defaults[{j}]" for j in range(count, len(local)))
            # Arguments that are all small ints or short strs: their key is
            # remembered per args tuple. Exact types only, checked before the
            # lookup, so (True,) or (1.0,) never find the key of (1,).
            atomic = " and ".join(
                f"(type({v}) is int and -small < {v} < small "
                f"or type({v}) is str and len({v}) <= 64)"
                for v in local[:count]
            )
            lines += [
                f"        if {atomic or 'True'}:",
                "            key = remembered(args)",
                "            if key is not None:",
                "                return key",
                "            remember = args",
            ]
            first = "elif"
        # Keywords: each parameter from args, else by name, else its default. A
        # keyword left unused (unknown, or given twice) hands over to bind(),
        # which raises Python's own TypeError.
        lines += [
            f"    elif len(args) <= {len(positional)}:",
            "        n = len(args)",
            "        get = kwargs.get",
            "        used = 0",
        ]
        for j, param in enumerate(positional):
            by_name = param.kind is kinds.POSITIONAL_OR_KEYWORD
            lines += [
                f"        if n > {j}:",
                f"            {local[j]} = args[{j}]",
                "        else:",
                f"            {local[j]} = get({param.name!r}, EMPTY)"
                if by_name
                else f"            {local[j]} = EMPTY",
                f"            if {local[j]} is EMPTY:",
                f"                {local[j]} = defaults[{j}]",
                f"                if {local[j]} is EMPTY:",
                "                    bind(args, kwargs)",
                "            else:",
                "                used += 1",
            ]
        lines += [
            "        if used != len(kwargs):",
            "            bind(args, kwargs)",
            "    else:",
            "    " + unpack_all + "bind(args, kwargs)",
        ]
    elif local:
        lines.append(unpack_all + "bind(args, kwargs)")
    else:
        lines.append("    if args or kwargs:")
        lines.append("        bind(args, kwargs)")
    encoders = [
        f"(f'i{{{v}}}' if type({v}) is int and -small < {v} < small "
        f"else f's{{len({v})}}:{{{v}}}' if type({v}) is str else encode({v}))"
        for v in (local[i] for i, _ in kept)
    ]
    # One f-string makes the whole key: fewer intermediate strings than concatenation.
    fields = ",".join("{" + e + "}" for e in encoders)
    lines += [
        "    try:",
        f'        key = f"{{prefix}}({fields})"',
        "    except Unkeyable as exc:",
        f"        values = ({', '.join(local[i] for i, _ in kept)}{',' if kept else ''})",
        "        for (_, argument), value in zip(kept, values):",
        "            try:",
        "                encode(value)",
        "            except Unkeyable:",
        "                raise Unkeyable(f'argument {argument!r} of {shown}: {exc}') from None",
        "        raise",
        # isprintable() on ASCII text rules out control characters; space is printable.
        "    if not (len(key) <= limit and key.isascii() and key.isprintable()",
        "            and ' ' not in key):",
        "        key = prefix + '#' + digest(key[len(prefix):])",
        "    if remember is not None:",
        "        if len(memo) >= memo_size:",
        "            memo.clear()",
        "        memo[remember] = key",
        "    return key",
    ]
    build: KeyBuilder = define("\n".join(lines) + "\n", "build", namespace, "key builder", func)
    return build


def make_template_builder(func: Callable[..., Any], template: str) -> KeyBuilder:
    """Prepare a builder that formats ``template`` with the bound arguments by name.

    ``"user:{user_id}:{page}"`` gives ``"user:5:1"`` for ``f(5)`` when ``page``
    defaults to 1. Every placeholder must name a parameter; this is checked now.
    """
    names = bound_names(func)
    for _, field, _, _ in string.Formatter().parse(template):
        if field is None:
            continue
        base = re.split(r"[.\[]", field, maxsplit=1)[0]
        if base == "" or base.isdigit():
            raise ValueError(
                f"key={template!r} uses a positional placeholder {{{field}}}; name the "
                f"parameter instead, for example {{{names[0] if names else 'arg'}}}"
            )
        if base not in names:
            raise ValueError(
                f"key={template!r} names {base!r}, which {getattr(func, '__qualname__', func)} "
                f"does not take; its parameters are {', '.join(names) or 'none'}"
            )
    bind = make_binder(func)
    formatter = string.Formatter()
    parsed = list(formatter.parse(template))
    shown = getattr(func, "__qualname__", "the function")

    def build(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        values = dict(zip(names, bind(args, kwargs), strict=True))
        out = []
        for literal, field, spec, conversion in parsed:
            out.append(literal)
            if field is None:
                continue
            value = formatter.get_field(field, (), values)[0]
            if type(value) not in _PLAIN and not isinstance(value, _PLAIN_BASES):
                # str.format would print its repr() or str(): the value's key instead.
                try:
                    value = encode(value)
                except UnkeyableArgument as exc:
                    raise UnkeyableArgument(
                        f"placeholder {{{field}}} of key={template!r} of {shown}(): {exc}"
                    ) from None
            if conversion:
                value = formatter.convert_field(value, conversion)
            out.append(formatter.format_field(value, spec or ""))
        return "".join(out)

    return build


_PLAIN: Final = frozenset(
    {str, int, float, complex, bool, type(None), bytes, decimal.Decimal, fractions.Fraction}
    | {uuid.UUID, datetime.date, datetime.datetime, datetime.time, datetime.timedelta}
)
"""Types a key template formats as ``str.format`` does: their text is their value."""
_PLAIN_BASES: Final = (enum.Enum, pathlib.PurePath)


def make_callable_builder(key: Callable[..., Any]) -> KeyBuilder:
    """Wrap a user's ``key=`` callable: it takes the call's arguments and returns a str."""

    def build(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        made = key(*args, **kwargs)
        if not isinstance(made, str):
            raise TypeError(
                f"key={getattr(key, '__qualname__', key)!r} returned {made!r} "
                f"({type(made).__name__}); a key callable must return a str"
            )
        return made

    return build
