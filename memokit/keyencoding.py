"""How one value becomes key text: the canonical encoding, the type registry, refusals.

Every value becomes a tag letter and a payload. Containers are ``tag(item,item)``;
scalar payloads never contain ``,``, ``(``, ``)`` or ``=``, except strings, which
carry their length (``s3:a,b``). A key can therefore be read back token by token
in exactly one way, so two different argument lists never share an encoding.

Which values are keyed, and how, is decided once per type (the first time a
value of that type is seen) and remembered, so a call pays one dict lookup per
argument. A value whose type memokit cannot prove an identity for is refused
with :class:`~memokit.exceptions.UnkeyableArgument`; nothing is ever keyed by a
``repr()`` unless the application opted in for that type with :func:`key_by_repr`.

Types of numpy, Django and pydantic are keyed only when the application has
imported that package itself (looked up in ``sys.modules``; memokit never
imports them).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import fractions
import pathlib
import re
import reprlib
import struct
import sys
import types
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeVar

from .exceptions import UnkeyableArgument, _Unnamed

T = TypeVar("T")

KEY_FORMAT: Final = 2
"""Version of the encoding; part of every default key, so formats never meet in a store."""

_SMALL_INT: Final = 10**18
_DISPATCH_SIZE: Final = 4096
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+").search
_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60


# -- scalars and containers -------------------------------------------------------


def _text(value: str) -> str:
    return f"s{len(value)}:{value}"


def _int(value: int) -> str:
    # str() of an int over 4,300 digits raises on CPython 3.11+; hex has no limit.
    if -_SMALL_INT < value < _SMALL_INT:
        return f"i{value}"
    return f"x{value:x}"


def _float_text(value: float) -> str:
    # repr() round-trips every float exactly (so 0.0 and -0.0 differ); NaNs all
    # print "nan", so they are written by bit pattern.
    if value == value:
        return repr(value)
    return "n" + struct.pack(">d", value).hex()


def _float(value: float) -> str:
    return "f" + _float_text(value)


def _items(tag: str, values: Iterable[Any]) -> str:
    return f"{tag}({','.join([encode(v) for v in values])})"


def _unordered(tag: str, values: Iterable[Any]) -> str:
    # Sorted by encoding, not by value: works for mixed types and never uses hash().
    return f"{tag}({','.join(sorted([encode(v) for v in values]))})"


def _mapping(tag: str, value: Mapping[Any, Any]) -> str:
    pairs = sorted([f"{encode(k)}={encode(v)}" for k, v in value.items()])
    return f"{tag}({','.join(pairs)})"


def _timedelta(value: datetime.timedelta) -> str:
    return f"r{value.days}_{value.seconds}_{value.microseconds}"


def _tz(value: datetime.tzinfo | None) -> str:
    # The zone, not only the offset: Paris and a fixed +01:00 agree today and
    # not after a DST change, so a result computed for one may not fit the other.
    return "" if value is None else "@" + encode(value)


def _datetime(value: datetime.datetime) -> str:
    # isoformat() leaves out fold, which tells the two sides of a DST change apart.
    return f"D{value.isoformat()}_{value.fold}{_tz(value.tzinfo)}"


def _time(value: datetime.time) -> str:
    return f"h{value.isoformat()}_{value.fold}{_tz(value.tzinfo)}"


def _timezone(value: datetime.timezone) -> str:
    return f"Z({_timedelta(value.utcoffset(None))},{_text(value.tzname(None))})"


_ENCODERS: dict[type, Callable[[Any], str]] = {
    type(None): lambda v: "N",
    bool: lambda v: "T" if v else "F",
    int: _int,
    float: _float,
    complex: lambda v: f"j{_float_text(v.real)}_{_float_text(v.imag)}",
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
    decimal.Decimal: lambda v: f"m{v}",  # str() is the exact text: 1.0 and 1.00 differ
    fractions.Fraction: lambda v: f"q{_int(v.numerator)}_{_int(v.denominator)}",
    uuid.UUID: lambda v: f"u{v.hex}",
    datetime.datetime: _datetime,
    datetime.date: lambda v: f"a{v.isoformat()}",
    datetime.time: _time,
    datetime.timedelta: _timedelta,
    datetime.timezone: _timezone,
    pathlib.PurePosixPath: lambda v: f"p{_text(str(v))}",
    pathlib.PosixPath: lambda v: f"p{_text(str(v))}",
    pathlib.PureWindowsPath: lambda v: f"P{_text(str(v))}",
    pathlib.WindowsPath: lambda v: f"P{_text(str(v))}",
    collections.deque: lambda v: f"Q{'N' if v.maxlen is None else _int(v.maxlen)}{_items('', v)}",
    collections.OrderedDict: lambda v: _items("O", [(k, x) for k, x in v.items()]),
    types.SimpleNamespace: lambda v: _mapping("v", vars(v)),
}
"""Exact built-in types, keyed by value; their subclasses also carry their class."""

KEYED_BY_DEFAULT: Final = frozenset(_ENCODERS)
"""The built-in types keyed by value without any declaration."""

_registry: dict[type, Callable[[Any], object]] = {}
_by_repr: set[type] = set()
_dispatch: dict[type, Callable[[Any], str]] = {}


# -- the public registry ----------------------------------------------------------


def register_key(cls: type[T], to_key: Callable[[T], object]) -> None:
    """Declare how instances of ``cls`` (and its subclasses) are keyed.

    ``to_key(value)`` returns what identifies the value: any keyable value (an
    int, a str, a tuple of them ...), which is encoded with the value's class.
    Registering ``cls`` again replaces its entry. Use it for types you cannot
    give a ``__cache_key__`` method, for example a library's::

        memokit.register_key(Money, lambda m: (m.amount, m.currency))
    """
    if not isinstance(cls, type):
        raise TypeError(f"register_key takes a class, not {cls!r}")
    if not callable(to_key):
        raise TypeError(
            f"register_key({cls.__qualname__}, ...) needs a callable that returns what "
            f"identifies an instance, not {to_key!r}; e.g. lambda value: value.id"
        )
    _registry[cls] = to_key
    _dispatch.clear()


def key_by_repr(cls: type) -> None:
    """Opt in to keying instances of exactly ``cls`` by their ``repr()``.

    Only for a class whose ``repr()`` shows everything that tells two values
    apart, the same in every process. A repr with a memory address
    (``at 0x...``) or an ellipsis is still refused.
    """
    if not isinstance(cls, type):
        raise TypeError(f"key_by_repr takes a class, not {cls!r}")
    _by_repr.add(cls)
    _dispatch.clear()


def unregister_key(cls: type) -> None:
    """Forget what :func:`register_key` or :func:`key_by_repr` declared for ``cls``."""
    _registry.pop(cls, None)
    _by_repr.discard(cls)
    _dispatch.clear()


# -- refusals -----------------------------------------------------------------------


def describe(value: object) -> str:
    """Return a short, safe ``repr()`` of ``value`` for a message."""
    try:
        return _short.repr(value)
    except Exception:  # a broken __repr__ must not hide the real message
        return f"<{type(value).__qualname__} object>"


def refusal(value: object, why: str) -> UnkeyableArgument:
    """Return the error for a value that cannot go into a key, with the ways out."""
    if isinstance(value, type):
        return _class_refusal(value, why)
    cls = type(value)
    name = cls.__qualname__
    return UnkeyableArgument(
        f"cannot build a cache key from {name} object {describe(value)}: {why}. "
        f"Ways out: give {name} a __cache_key__(self) method that returns what "
        f"identifies it (for example its primary key); or declare it once with "
        f"memokit.register_key({name}, lambda value: ...) (or memokit.key_by_repr({name}) "
        f"if its repr() shows everything that tells two values apart); or pass key=... "
        f"to @cached, or list the argument in ignore=..."
    )


def _class_refusal(value: type, why: str) -> UnkeyableArgument:
    # The value is a class: "give type a __cache_key__" would point at the
    # wrong class. Registering the metaclass keys every class it makes, which
    # only makes sense for an application's own metaclass.
    meta = type(value)
    register = (
        f"or declare how classes of metaclass {meta.__qualname__} are identified with "
        f"memokit.register_key({meta.__qualname__}, lambda cls: ...); "
        if meta is not type and meta.__module__ not in ("builtins", "abc", "enum", "typing")
        else ""
    )
    return UnkeyableArgument(
        f"cannot build a cache key from class {value.__name__} "
        f"({describe(value)}): {why}. Ways out: pass what identifies the class "
        f"(for example its table name) instead of the class; {register}or pass key=... "
        f"to @cached, or list the argument in ignore=..."
    )


def _refusing(why: str) -> Callable[[Any], str]:
    def refuse(value: Any) -> str:
        raise refusal(value, why)

    return refuse


# -- names of classes and functions -------------------------------------------------


def _lookup(module: str, qualname: str) -> object:
    found: object = sys.modules.get(module)
    if found is None:
        return None
    for part in qualname.split("."):
        found = getattr(found, part, None)
        if found is None:
            return None
    return found


def name_problem(obj: Any) -> str | None:
    """Why ``obj`` (a class or function) cannot be known by ``module:qualname``, or None."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or not qualname:
        return "it has no module and qualified name to be known by"
    if "<lambda>" in qualname:
        return "a lambda has no name of its own: every lambda of a module shares one"
    if "<locals>" in qualname:
        return (
            f"{qualname} is made at run time, and every one made by the same code shares that name"
        )
    if module in sys.modules:
        found = _lookup(module, qualname)
        if found is not obj and getattr(found, "__wrapped__", None) is not obj:
            # type() in a loop, a redefinition: the name leads to another object.
            return f"{module}.{qualname} names another object, so the name is not its identity"
    return None


def qualified(cls: type) -> str:
    """Return ``module:qualname`` of a class, refusing one made at run time."""
    problem = name_problem(cls)
    if problem is not None:
        raise _Unnamed(problem)
    return f"{cls.__module__}:{cls.__qualname__}"


def _class_value(value: type) -> str:
    problem = name_problem(value)
    if problem is not None:
        raise refusal(value, problem)
    return f"k{_text(f'{value.__module__}:{value.__qualname__}')}"


def _module_value(value: types.ModuleType) -> str:
    if sys.modules.get(value.__name__) is not value:
        raise refusal(value, "a module that is not in sys.modules is not known by its name")
    return f"M{_text(value.__name__)}"


def _function_value(value: Any) -> str:
    problem = name_problem(value)
    if problem is not None:
        raise refusal(value, problem)
    return f"w{_text(f'{value.__module__}:{value.__qualname__}')}"


# -- choosing an encoder per type ---------------------------------------------------


def _with_class(cls: type, tag: str, inner: Callable[[Any], str]) -> Callable[[Any], str]:
    head = f"{tag}({_text(qualified(cls))},"
    return lambda value: f"{head}{inner(value)})"


def _enum(value: enum.Enum) -> str:
    # The value, not the name: Flag(0) and combined flags have no name.
    try:
        return encode(value._value_)
    except UnkeyableArgument:
        if value.name is None:  # pragma: no cover - flags always have int values
            raise
        return "~" + _text(value.name)


def _dataclass(cls: type) -> Callable[[Any], str]:
    # Every field, also compare=False ones: a field left out of == can still
    # change what a function computes from the object.
    names = [f.name for f in dataclasses.fields(cls)]
    return lambda v: ",".join([f"{_text(n)}={encode(getattr(v, n))}" for n in names])


def _by_repr_encoder(value: Any) -> str:
    text = repr(value)
    if _ADDRESS(text):
        raise refusal(value, "its repr() contains a memory address")
    if "..." in text:
        raise refusal(value, "its repr() looks truncated ('...'), so it is not an identity")
    return _text(text)


def _registered(to_key: Callable[[Any], object]) -> Callable[[Any], str]:
    return lambda value: encode(to_key(value))


def _numpy(cls: type) -> Callable[[Any], str] | None:
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return None
    if cls is numpy.ndarray or issubclass(cls, numpy.generic):

        def encode_array(value: Any) -> str:
            if value.dtype.hasobject:
                raise refusal(value, "an array of Python objects has no bytes to key by")
            descr = encode([tuple(field) for field in value.dtype.descr])
            shape = encode(tuple(int(n) for n in getattr(value, "shape", ())))
            data = value.tobytes() if cls is numpy.ndarray else numpy.asarray(value).tobytes()
            return f"A({_text(cls.__name__)},{descr},{shape},b{data.hex()})"

        return encode_array
    if issubclass(cls, numpy.ndarray):
        return _refusing("a subclass of numpy.ndarray may hold more than its bytes")
    return None


def _django(cls: type) -> Callable[[Any], str] | None:
    models = sys.modules.get("django.db.models")
    if models is None or not issubclass(cls, models.Model):
        return None

    def encode_model(value: Any) -> str:
        if value.pk is None or value._state.adding:
            raise refusal(value, "an unsaved model instance has no primary key yet")
        label = value._meta.concrete_model._meta.label_lower
        return f"M({_text(label)},{encode(value.pk)})"

    return encode_model


def _pydantic(cls: type) -> Callable[[Any], str] | None:
    pydantic = sys.modules.get("pydantic")
    base = getattr(pydantic, "BaseModel", None)
    if base is None or not issubclass(cls, base) or not hasattr(cls, "model_dump"):
        return None

    # Every field's own value, through this encoder: a JSON dump would make a
    # datetime and its isoformat text one key, and leave out exclude=True fields.
    def encode_model(value: Any) -> str:
        fields = {name: getattr(value, name) for name in type(value).model_fields}
        extra = getattr(value, "__pydantic_extra__", None) or {}
        return f"{_mapping('d', fields)}{_mapping('x', extra)}"

    return _with_class(cls, "o", encode_model)


def _zoneinfo(cls: type) -> Callable[[Any], str] | None:
    zoneinfo = sys.modules.get("zoneinfo")
    if zoneinfo is None or cls is not zoneinfo.ZoneInfo:
        return None

    def encode_zone(value: Any) -> str:
        if value.key is None:
            raise refusal(value, "a ZoneInfo read from a file has no key to be known by")
        return f"Y{_text(value.key)}"

    return encode_zone


def _choose(cls: type) -> Callable[[Any], str]:
    if issubclass(cls, type):
        return _class_value
    for base in cls.__mro__:
        to_key = _registry.get(base)
        if to_key is not None:
            return _with_class(cls, "o", _registered(to_key))
    cache_key = getattr(cls, "__cache_key__", None)
    if cache_key is not None:
        return _with_class(cls, "o", lambda v: encode(v.__cache_key__()))
    if issubclass(cls, enum.Enum):
        return _with_class(cls, "e", _enum)
    for special in (_numpy, _django, _pydantic, _zoneinfo):
        found = special(cls)
        if found is not None:
            return found
    if dataclasses.is_dataclass(cls):
        return _with_class(cls, "g", _dataclass(cls))
    if cls in (types.FunctionType, types.BuiltinFunctionType):
        return _functions
    if cls is types.ModuleType:
        return _module_value
    if cls.__module__ == "argparse" and cls.__qualname__ == "Namespace":
        return lambda v: _mapping("V", vars(v))
    if issubclass(cls, collections.defaultdict):
        # defaultdict(int) and defaultdict(list) answer a missing key differently.
        return _with_class(cls, "n", _defaultdict)
    for base in cls.__mro__:
        # A subclass of a built-in (a NamedTuple, an int subclass ...): its class
        # and the value of its nearest built-in base (an OrderedDict subclass
        # keeps its order), so it never collides with the base type.
        encoder = _ENCODERS.get(base)
        if encoder is not None and base is not type(None):
            return _with_class(cls, "n", encoder)
    if cls in _by_repr:
        return _with_class(cls, "y", _by_repr_encoder)
    if cls.__repr__ is object.__repr__:
        return _refusing("its repr() is the default one, which shows only a memory address")
    return _refusing(
        f"memokit does not know what identifies a {cls.__qualname__}, and does not key "
        f"by repr() unless told to"
    )


def _defaultdict(value: Any) -> str:
    return f"D{encode(value.default_factory)}{_mapping('d', value)}"


def _functions(value: Any) -> str:
    if isinstance(value, types.BuiltinFunctionType) and not isinstance(
        getattr(value, "__self__", None), types.ModuleType | None
    ):
        raise refusal(value, "a bound method is known only by its object's memory address")
    return _function_value(value)


def _resolve(cls: type) -> Callable[[Any], str]:
    try:
        encoder = _choose(cls)
    except _Unnamed as exc:
        encoder = _refusing(f"its class cannot be known by its name: {exc}")
    if len(_dispatch) >= _DISPATCH_SIZE:
        _dispatch.clear()  # classes made at run time must not pile up here
    _dispatch[cls] = encoder
    return encoder


def encode(value: Any) -> str:
    """Return the canonical, injective text encoding of ``value`` used in keys.

    Types are kept apart (``1``, ``1.0``, ``True`` and ``"1"`` encode differently);
    dicts and sets are ordered by their items' encodings; objects take part
    through ``__cache_key__()``, the registry, their dataclass fields or their
    class; anything else raises :class:`~memokit.exceptions.UnkeyableArgument`.
    """
    cls = type(value)
    encoder = _ENCODERS.get(cls) or _dispatch.get(cls)
    if encoder is None:
        encoder = _resolve(cls)
    return encoder(value)
