"""How values become bytes and back.

A serializer is any object with ``dumps(value) -> bytes`` and
``loads(data) -> value``. Pickle is the default, as in Django: it round-trips
almost any Python object, and it trusts the store completely (anyone who can
write to the cache can run code in every reader), so a shared store must be
reachable by trusted processes only, or its payloads signed
(``SERIALIZER='signed-pickle'``, :mod:`memokit.framing`).

JSON and msgpack never run code on read, and round-trip fewer types: they
refuse a value they would change (a tuple that would come back a list, a dict
key that would come back a str) with :class:`UnsupportedValue`, rather than
store something else than they were given.
"""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from .exceptions import ImproperlyConfigured, UnreadableEntry, UnsupportedValue
from .keys import import_string


@runtime_checkable
class Serializer(Protocol):
    """Turns values into bytes and back."""

    def dumps(self, value: Any) -> bytes:
        """Return ``value`` as bytes; raise ``pickle.PickleError`` when it cannot."""
        ...

    def loads(self, data: bytes) -> Any:
        """Return the value that ``dumps`` turned into ``data``.

        Raise ``pickle.UnpicklingError`` (or ``EOFError``) when ``data`` cannot be
        read: the entry then counts as a miss and is replaced (see ``memokit.resilience``).
        """
        ...


class PickleSerializer:
    """Pickle at the highest protocol (Django's choice), with clear errors."""

    def __init__(self, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        if not isinstance(protocol, int) or not 0 <= protocol <= pickle.HIGHEST_PROTOCOL:
            raise ValueError(
                f"protocol must be an int from 0 to {pickle.HIGHEST_PROTOCOL}, not {protocol!r}"
            )
        self.protocol = protocol

    def dumps(self, value: Any) -> bytes:
        """Pickle ``value``; any failure to pickle is raised as ``pickle.PicklingError``."""
        try:
            return pickle.dumps(value, self.protocol)
        except pickle.PickleError:
            raise
        except PICKLING_ERRORS as exc:
            raise pickling_failed(value, exc) from exc

    def loads(self, data: bytes) -> Any:
        """Unpickle ``data``; any failure to read it is raised as :class:`UnreadableEntry`.

        ``UnreadableEntry`` is a ``pickle.UnpicklingError``.
        """
        try:
            return pickle.loads(data)  # noqa: S301 - pickle trusts the store, as documented above
        except UNPICKLING_ERRORS as exc:
            return after_failed_unpickling(data, exc)

    def __repr__(self) -> str:
        return f"PickleSerializer(protocol={self.protocol})"


UNPICKLING_ERRORS: tuple[type[Exception], ...] = (
    pickle.UnpicklingError,
    EOFError,
    AttributeError,
    ImportError,
    IndexError,
    KeyError,
    TypeError,
    ValueError,
)
"""What ``pickle.loads`` raises for damaged bytes, or for a class that moved or vanished
since the value was stored."""


def unpickling_failed(exc: Exception) -> UnreadableEntry:
    """The error for a payload ``pickle.loads`` refused with ``exc`` (one of
    :data:`UNPICKLING_ERRORS`): one type lets the cache tell an unreadable entry from
    a bug. It names the error's type only: pickle's messages can quote the stored bytes."""
    return UnreadableEntry(f"cannot unpickle the stored value ({describe(exc)})")


PICKLING_ERRORS: tuple[type[Exception], ...] = (AttributeError, TypeError, RecursionError)
"""What ``pickle.dumps`` raises, besides ``pickle.PickleError``, for a value it cannot
pickle (AttributeError for a local object, TypeError for a lock)."""


def pickling_failed(value: Any, exc: Exception) -> pickle.PicklingError:
    """The one error for a value ``pickle.dumps`` refused with ``exc`` (one of
    :data:`PICKLING_ERRORS`; a ``pickle.PickleError`` is raised as it is)."""
    return pickle.PicklingError(f"cannot pickle {type(value).__name__!r}: {exc}")


def after_failed_unpickling(data: Any, exc: Exception) -> Any:
    """What a plain pickle reader does once ``pickle.loads(data)`` raised ``exc`` (one
    of :data:`UNPICKLING_ERRORS`): read a frame, or raise :class:`UnreadableEntry`.

    Shared by ``PickleSerializer.loads`` and the backends that call ``pickle.loads``
    themselves, so that a payload is never unpickled twice (its reconstructors would
    run twice).
    """
    if _frame_readers and isinstance(data, bytes) and data[:2] == FRAME_MAGIC:
        # A framed payload (compressed pickle, or another serializer's): only here,
        # after pickle refused it, so plain pickle's hit path pays nothing.
        return _frame_readers[0](data)
    # from None: the cause's message (e.g. int()'s, pickle's) can quote the stored bytes.
    raise unpickling_failed(exc) from None


_frame_readers: list[Callable[[bytes], Any]] = []
"""How a plain pickle serializer reads a frame: memokit.framing (above this module)
puts its reader here when it is imported, as every backend does."""

FRAME_MAGIC: bytes = b"\x80\xe5"
"""The start of every framed payload (:mod:`memokit.framing`): pickle's PROTO opcode
with a protocol no pickle has, so it is neither a pickle nor a raw integer."""


def describe(exc: BaseException) -> str:
    """Say why a payload could not be read, without quoting any of its bytes."""
    if isinstance(exc, UnreadableEntry):
        return str(exc)  # memokit's own message, made by this function
    if isinstance(exc, ImportError | AttributeError):
        # These name a module or a class that moved (from the pickle's references).
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


def get_serializer(serializer: Serializer | str | None) -> Serializer:
    """Return the serializer named by the ``SERIALIZER`` option (instance, dotted path, None)."""
    if serializer is None:
        return PickleSerializer()
    if isinstance(serializer, str):
        serializer = import_string(serializer, "SERIALIZER")
    if isinstance(serializer, type):
        serializer = serializer()
    if not isinstance(serializer, Serializer):
        raise ImproperlyConfigured(
            f"SERIALIZER must have dumps(value) -> bytes and loads(bytes) -> value, "
            f"not {serializer!r}"
        )
    return serializer


def _refuse(name: str, path: str, what: str, fix: str) -> UnsupportedValue:
    where = f" at value{path}" if path else ""
    return UnsupportedValue(f"{name} cannot store {what}{where} as it is; {fix}")


class _Checker:
    """Walks a value and refuses what a format would not give back unchanged.

    Exact types only: a subclass (an ``IntEnum``, an ``OrderedDict``) would come
    back as its base type.
    """

    def __init__(
        self,
        name: str,
        scalars: frozenset[type],
        keys: frozenset[type],
        *,
        finite: bool,
        int_range: tuple[int, int] | None,
    ) -> None:
        self.name = name
        self.scalars = scalars
        self.keys = keys
        self.finite = finite
        self.int_range = int_range

    def check(self, value: Any) -> None:
        try:
            self._walk(value, "")
        except RecursionError:
            raise UnsupportedValue(
                f"{self.name} cannot store this value: it is nested too deeply or contains itself"
            ) from None

    def _scalar(self, value: Any, path: str) -> None:
        kind = type(value)
        if kind is float:
            if self.finite and not math.isfinite(value):
                raise _refuse(
                    self.name,
                    path,
                    f"the float {value!r}",
                    "it has no NaN or infinity (store None, or a str)",
                )
        elif kind is int and self.int_range is not None:
            low, high = self.int_range
            if not low <= value <= high:
                raise _refuse(
                    self.name,
                    path,
                    "an int outside 64 bits",
                    f"it holds integers from {low} to {high} (store it as a str)",
                )

    def _walk(self, value: Any, path: str) -> None:
        kind = type(value)
        if kind in self.scalars:
            self._scalar(value, path)
        elif kind is list:
            for i, item in enumerate(value):
                self._walk(item, f"{path}[{i}]")
        elif kind is dict:
            for key, item in value.items():
                if type(key) not in self.keys:
                    names = " or ".join(sorted(t.__name__ for t in self.keys))
                    raise _refuse(
                        self.name,
                        path,
                        f"a dict key of type {type(key).__name__!r}",
                        f"its dict keys must be {names} (it would give back another type); "
                        f"convert the keys, or use SERIALIZER 'pickle'",
                    )
                self._scalar(key, path)
                self._walk(item, f"{path}[{key!r}]")
        else:
            fix = (
                "store a list (it would give back a list)"
                if kind is tuple
                else "convert it to None, bool, int, float, str, list, dict"
                + (", bytes" if bytes in self.scalars else "")
                + " (exactly these types), or use SERIALIZER 'pickle'"
            )
            raise _refuse(self.name, path, f"a {kind.__qualname__!r} object", fix)


_JSON_CHECK = _Checker(
    "JSON",
    frozenset({type(None), bool, int, float, str}),
    frozenset({str}),
    finite=True,
    int_range=None,
)


class JSONSerializer:
    """JSON (the standard library's), refusing every value it would not give back equal.

    Stored: ``None``, ``bool``, ``int``, finite ``float``, ``str``, and ``list`` and
    ``dict`` (with ``str`` keys) of those. Refused with :class:`UnsupportedValue`:
    tuples and sets (they would come back lists or fail), ``bytes``, non-``str`` dict
    keys (JSON turns them into strings), NaN and infinities (not JSON, and other
    readers refuse them), subclasses of the above and every other type.
    """

    def dumps(self, value: Any) -> bytes:
        """Return ``value`` as UTF-8 JSON, or raise :class:`UnsupportedValue`."""
        _JSON_CHECK.check(value)
        try:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        except (ValueError, UnicodeEncodeError) as exc:
            # An int over Python's digit limit, or a lone surrogate in a str.
            raise UnsupportedValue(f"JSON cannot store this value ({type(exc).__name__})") from None

    def loads(self, data: bytes) -> Any:
        """Return the value of JSON ``data``; unreadable data raises :class:`UnreadableEntry`."""
        try:
            return json.loads(data)
        except (ValueError, TypeError, RecursionError) as exc:
            raise UnreadableEntry(f"cannot read the stored JSON ({type(exc).__name__})") from None

    def __repr__(self) -> str:
        return "JSONSerializer()"


_MSGPACK_CHECK = _Checker(
    "msgpack",
    frozenset({type(None), bool, int, float, str, bytes}),
    frozenset({type(None), bool, int, float, str, bytes}),
    finite=False,
    int_range=(-(2**63), 2**64 - 1),
)


class MsgpackSerializer:
    """msgpack (the ``msgpack`` package, ``pip install 'memokit[msgpack]'``), refusing as JSON does.

    Stored: ``None``, ``bool``, ``int`` (64 bits), ``float`` (NaN too), ``str``,
    ``bytes``, and ``list`` and ``dict`` (keys of those scalar types) of those.
    Refused with :class:`UnsupportedValue`: tuples, sets, subclasses and every other type.
    """

    def __init__(self) -> None:
        try:
            import msgpack  # type: ignore[import-untyped]  # msgpack ships no type hints
        except ImportError:
            raise ImproperlyConfigured(
                "SERIALIZER 'msgpack' needs the msgpack package: pip install 'memokit[msgpack]'"
            ) from None
        self._msgpack = msgpack

    def dumps(self, value: Any) -> bytes:
        """Return ``value`` packed, or raise :class:`UnsupportedValue`."""
        _MSGPACK_CHECK.check(value)
        try:
            # packb returns bytes here (no stream given); msgpack ships no type hints.
            packed: bytes = self._msgpack.packb(value, use_bin_type=True)  # pyright: ignore[reportAssignmentType]
        except (ValueError, TypeError, UnicodeEncodeError) as exc:
            raise UnsupportedValue(
                f"msgpack cannot store this value ({type(exc).__name__})"
            ) from None
        return packed

    def loads(self, data: bytes) -> Any:
        """Return the value of packed ``data``; unreadable data raises :class:`UnreadableEntry`."""
        try:
            return self._msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
        except Exception as exc:
            # msgpack raises a family of its own (ExtraData, FormatError, StackError)
            # and ValueError/TypeError for unhashable keys: every one means unreadable.
            raise UnreadableEntry(
                f"cannot read the stored msgpack ({type(exc).__name__})"
            ) from None

    def __repr__(self) -> str:
        return "MsgpackSerializer()"
