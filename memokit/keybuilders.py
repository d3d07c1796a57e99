"""Key builders: a function and its arguments in, one canonical cache key out.

The default builder, prepared once per decorated function:

1. binds the call to the function's signature with a binder built at decoration
   time (defaults applied, so ``f(1)``, ``f(1, b=2)`` and ``f(b=2, a=1)`` agree
   when ``b`` defaults to 2);
2. encodes the bound values with :func:`encode`, an injective, type-aware text
   encoding that is the same in every process (no ``hash()``);
3. prefixes the function's ``module:qualname``;
4. replaces the encoded arguments by a BLAKE2b digest when the key would be
   longer than :data:`MAX_KEY_LENGTH` or contain anything but printable ASCII
   without spaces, so every key is safe for memcached.

Why the encoding is injective: every value becomes a tag letter and a payload.
Containers are ``tag(item,item)``; scalar payloads never contain ``,``, ``(``,
``)`` or ``=``, except strings, which carry their length (``s3:a,b``).
A key can therefore be read back token by token in exactly one way, so two
different argument lists never share an encoding.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import fractions
import hashlib
import inspect
import pathlib
import re
import string
import types
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeAlias

from .exceptions import MemokitError

MAX_KEY_LENGTH: Final = 200
"""Longest key a builder returns; leaves 50 of memcached's 250 bytes for prefix and version."""

_MAX_NAME_LENGTH: Final = 120
_SMALL_INT: Final = 10**18
_MEMO_SIZE: Final = 1024
"""Keys remembered per builder for calls with small int and short str arguments."""
_UNSAFE = re.compile(r"[^\x21-\x7e]").search
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+").search

Binder: TypeAlias = Callable[[tuple[Any, ...], dict[str, Any]], tuple[Any, ...]]
"""Turns ``(args, kwargs)`` into the bound values in signature order."""
KeyBuilder: TypeAlias = Callable[[tuple[Any, ...], dict[str, Any]], str]
"""Turns ``(args, kwargs)`` of one call into its cache key."""


class UnkeyableArgument(MemokitError, TypeError):
    """An argument has no identity that can go into a cache key (only a memory address)."""


# -- encoding ---------------------------------------------------------------------


def _text(value: str) -> str:
    return f"s{len(value)}:{value}"


def _int(value: int) -> str:
    # str() of an int over 4,300 digits raises on CPython 3.11+; hex has no limit.
    if -_SMALL_INT < value < _SMALL_INT:
        return f"i{value}"
    return f"x{value:x}"


def _float(value: float) -> str:
    return f"f{value!r}"


def _items(tag: str, values: Iterable[Any]) -> str:
    return f"{tag}({','.join([encode(v) for v in values])})"


def _unordered(tag: str, values: Iterable[Any]) -> str:
    # Sorted by encoding, not by value: works for mixed types and never uses hash().
    return f"{tag}({','.join(sorted([encode(v) for v in values]))})"


def _mapping(tag: str, value: Mapping[Any, Any]) -> str:
    pairs = sorted([f"{encode(k)}={encode(v)}" for k, v in value.items()])
    return f"{tag}({','.join(pairs)})"


def _qualified(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


_ENCODERS: dict[type, Callable[[Any], str]] = {
    type(None): lambda v: "N",
    bool: lambda v: "T" if v else "F",
    int: _int,
    float: _float,
    complex: lambda v: f"j{v.real!r}_{v.imag!r}",
    str: _text,
    bytes: lambda v: f"b{v.hex()}",
    bytearray: lambda v: f"B{v.hex()}",
    tuple: lambda v: _items("t", v),
    list: lambda v: _items("l", v),
    dict: lambda v: _mapping("d", v),
    set: lambda v: _unordered("S", v),
    frozenset: lambda v: _unordered("z", v),
    range: lambda v: f"R{_int(v.start)}_{_int(v.stop)}_{_int(v.step)}",
    type(Ellipsis): lambda v: "E",
    decimal.Decimal: lambda v: f"m{v}",
    fractions.Fraction: lambda v: f"q{_int(v.numerator)}_{_int(v.denominator)}",
    uuid.UUID: lambda v: f"u{v.hex}",
    datetime.datetime: lambda v: f"D{v.isoformat()}",
    datetime.date: lambda v: f"a{v.isoformat()}",
    datetime.time: lambda v: f"h{v.isoformat()}",
    datetime.timedelta: lambda v: f"r{v.days}_{v.seconds}_{v.microseconds}",
    pathlib.PurePosixPath: lambda v: f"p{_text(str(v))}",
    pathlib.PosixPath: lambda v: f"p{_text(str(v))}",
    pathlib.PureWindowsPath: lambda v: f"P{_text(str(v))}",
    pathlib.WindowsPath: lambda v: f"P{_text(str(v))}",
}


def _refuse(value: object, why: str) -> UnkeyableArgument:
    cls = type(value)
    return UnkeyableArgument(
        f"cannot build a cache key from {cls.__qualname__} object {value!r}: {why}. "
        f"Give {cls.__qualname__} a __cache_key__(self) method that returns what identifies "
        f"it (for example its primary key), pass key=... to @cached, or list the argument "
        f"in ignore=..."
    )


def _encode_other(value: Any) -> str:
    cls = type(value)
    cache_key = getattr(cls, "__cache_key__", None)
    if cache_key is not None and not isinstance(value, type):
        return f"o({_text(_qualified(cls))},{encode(cache_key(value))})"
    if isinstance(value, enum.Enum):
        return f"e({_text(_qualified(cls))},{_text(value.name)})"
    if isinstance(value, type):
        return f"k{_text(_qualified(value))}"
    if isinstance(value, types.FunctionType) or (
        isinstance(value, types.BuiltinFunctionType)
        and isinstance(getattr(value, "__self__", None), types.ModuleType | None)
    ):
        return _function(value)
    if dataclasses.is_dataclass(value):
        fields = [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value) if f.compare]
        parts = [f"{_text(name)}={encode(v)}" for name, v in fields]
        return f"g({_text(_qualified(cls))},{','.join(parts)})"
    for base, encoder in _ENCODERS.items():
        # A subclass of a built-in (a NamedTuple, an IntFlag-free int subclass ...):
        # its class and its built-in value, so it never collides with the base type.
        if isinstance(value, base) and base is not type(None):
            return f"n({_text(_qualified(cls))},{encoder(value)})"
    return _by_repr(value)


def _function(value: Any) -> str:
    qualname = getattr(value, "__qualname__", "")
    if "<lambda>" in qualname or "<locals>" in qualname or not qualname:
        raise _refuse(
            value,
            "a lambda or a function defined at run time is known only by its memory address",
        )
    return f"w{_text(f'{value.__module__}:{qualname}')}"


def _by_repr(value: Any) -> str:
    cls: Any = type(value)  # Any: mypy sees __repr__ on the class as an unbound method
    if cls.__repr__ is object.__repr__:
        raise _refuse(value, "its repr() is the default one, which shows only a memory address")
    text = repr(value)
    if _ADDRESS(text):
        raise _refuse(value, "its repr() contains a memory address")
    if "..." in text:
        raise _refuse(value, "its repr() looks truncated ('...'), so it is not an identity")
    return f"y({_text(_qualified(cls))},{_text(text)})"


def encode(value: Any) -> str:
    """Return the canonical, injective text encoding of ``value`` used in keys.

    Types are kept apart (``1``, ``1.0``, ``True`` and ``"1"`` encode differently);
    dicts and sets are ordered by their items' encodings; objects take part
    through ``__cache_key__()``, their dataclass fields, or a ``repr()`` that has
    no memory address, and anything else raises :class:`UnkeyableArgument`.
    """
    encoder = _ENCODERS.get(type(value))
    if encoder is not None:
        return encoder(value)
    return _encode_other(value)


# -- names and digests ------------------------------------------------------------


def _digest(text: str, size: int = 32) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=size).hexdigest()


def function_name(func: Callable[..., Any]) -> str:
    """Return ``"module:qualname"`` of ``func``, made safe for a memcached key."""
    func = inspect.unwrap(func)
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        # A partial or a callable object: its repr() carries an address, not a name.
        raise TypeError(
            f"@cached needs a function with a module and a qualified name to build its key, "
            f"and {func!r} has none; wrap it in a def, or pass key=... to @cached"
        )
    name = f"{module}:{qualname}"
    if len(name) <= _MAX_NAME_LENGTH and not _UNSAFE(name):
        return name
    # Keep a readable start; the digest keeps distinct names apart. '~' never
    # occurs in a module or qualified name, so this cannot meet a plain name.
    readable = re.sub(r"[^\x21-\x7e]", "_", name)[: _MAX_NAME_LENGTH - 34]
    return f"{readable}~{_digest(name, 16)}"


# -- binding ----------------------------------------------------------------------

_EMPTY = inspect.Parameter.empty


def make_binder(func: Callable[..., Any], ignore: Iterable[str] = ()) -> Binder:
    """Prepare, once, a function that binds ``(args, kwargs)`` to ``func``'s signature.

    The result is the tuple of argument values in signature order, defaults
    applied, ``*args`` as a tuple and ``**kwargs`` as a dict, without the
    parameters named in ``ignore``. A call that does not fit the signature
    raises the ``TypeError`` Python itself would raise.
    """
    signature = inspect.signature(func)
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

    def fail(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        signature.bind(*args, **kwargs)  # raises the TypeError Python would raise
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
    params = list(inspect.signature(func).parameters.values())
    return [name for name in _layout(params) if name not in ignored]


# -- builders ---------------------------------------------------------------------


def make_key_builder(
    func: Callable[..., Any], *, ignore: Iterable[str] = (), name: str | None = None
) -> KeyBuilder:
    """Prepare the default key builder of ``func`` (see the module docstring).

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
    layout = bound_names(func)
    prefix = function_name(func) if name is None else name
    params = list(inspect.signature(func).parameters.values())
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
        "limit": MAX_KEY_LENGTH,
        "digest": _digest,
        "Unkeyable": UnkeyableArgument,
        "kept": kept,
        "defaults": tuple(p.default for p in positional),
        "EMPTY": _EMPTY,
        "memo": memo,
        "remembered": memo.get,
        "memo_size": _MEMO_SIZE,
    }
    lines = ["def build(args, kwargs):", "    remember = None"]
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
        "                raise Unkeyable(f'argument {argument!r} of {prefix}: {exc}') from None",
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
    exec("\n".join(lines), namespace)  # noqa: S102 - source built above from indexes only
    build: KeyBuilder = namespace["build"]
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

    def build(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        return template.format_map(dict(zip(names, bind(args, kwargs), strict=True)))

    return build


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
