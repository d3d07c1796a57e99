"""How values become bytes and back.

A serializer is any object with ``dumps(value) -> bytes`` and
``loads(data) -> value``. Pickle is the default, as in Django: it round-trips
almost any Python object, and it trusts the store completely (anyone who can
write to the cache can run code in every reader), so a shared store must be
reachable by trusted processes only.
"""

from __future__ import annotations

import pickle
from typing import Any, Protocol, runtime_checkable

from .exceptions import ImproperlyConfigured, UnreadableEntry
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
        except (AttributeError, TypeError, RecursionError) as exc:
            # Python reports an unpicklable value with one of several exception types
            # (AttributeError for local objects, TypeError for locks); callers get one.
            raise pickle.PicklingError(f"cannot pickle {type(value).__name__!r}: {exc}") from exc

    def loads(self, data: bytes) -> Any:
        """Unpickle ``data``; any failure to read it is raised as :class:`UnreadableEntry`.

        ``UnreadableEntry`` is a ``pickle.UnpicklingError``.
        """
        try:
            return pickle.loads(data)  # noqa: S301 - pickle trusts the store, as documented above
        except (
            pickle.UnpicklingError,
            EOFError,
            AttributeError,
            ImportError,
            IndexError,
            KeyError,
            TypeError,
            ValueError,
        ) as exc:
            # Damaged bytes, or a class that moved or vanished since the value was stored;
            # one type lets the cache tell an unreadable entry from a bug. The message
            # names the error's type only: pickle's messages can quote the stored bytes.
            # from None: the cause's message (e.g. int()'s, pickle's) can quote the stored bytes.
            raise UnreadableEntry(f"cannot unpickle the stored value ({describe(exc)})") from None

    def __repr__(self) -> str:
        return f"PickleSerializer(protocol={self.protocol})"


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
