"""Exceptions and warnings raised by memokit."""

from __future__ import annotations

import pickle


class MemokitError(Exception):
    """Base class of every error memokit raises on its own account."""


class ImproperlyConfigured(MemokitError, ValueError):
    """A setting or constructor argument is wrong; the message names it and the fix."""


class InvalidCacheBackendError(ImproperlyConfigured):
    """A backend could not be found, or an alias is not configured."""


class UnsafeLocation(ImproperlyConfigured, PermissionError):
    """A filesystem or SQLite ``LOCATION``, or a parent, could let another user plant files.

    Raised at construction (an ``ImproperlyConfigured``), and at run time (a
    ``PermissionError``, so ``@cached`` fails open on it): by the filesystem store
    when the directory was removed and the one now at ``LOCATION`` fails the checks,
    by the SQLite store when a new connection finds them failing. The message names
    the directory or file and the fix.
    """


class InvalidCacheKey(MemokitError, ValueError):
    """A key that a strict backend (memcached) cannot store, raised before any I/O."""


class CacheKeyWarning(RuntimeWarning):
    """A key that works here but would break on memcached (Django's warning)."""


class UnkeyableArgument(MemokitError, TypeError):
    """An argument (or a decorated callable) has no identity memokit can put in a key.

    The message names the function, the argument, its type and the ways out:
    ``__cache_key__``, :func:`memokit.register_key`, or ``key=``/``ignore=``.
    """


class ArgumentTypeWarning(UserWarning):
    """``f.key(...)`` or ``f.invalidate(...)`` got a value its parameter's annotation rules out."""


class BackendError(MemokitError):
    """A backend failed to do its job (transport, I/O, database, deserialisation)."""


class BackendUnavailable(BackendError):
    """The backend could not be reached at all."""


class NodeUnavailable(BackendUnavailable):
    """One server of several could not be reached; the others still serve their keys.

    The backend skips that server for the breaker window on its own, so a decorated
    call that fails open on it leaves the cache's circuit breaker closed.
    """


class ValueFailure(MemokitError):
    """One entry or value is the problem, not the backend: it concerns that key only.

    A value failure never opens the circuit breaker; it is reported with a
    :class:`ValueFailureWarning`, once per key and window.
    """


class UnreadableEntry(ValueFailure, pickle.UnpicklingError):
    """A stored payload cannot be decoded (damaged bytes, a class that moved or vanished)."""


class UnsupportedValue(MemokitError, TypeError, pickle.PicklingError):
    """The serializer cannot store this value as it is (JSON and a tuple, for example).

    A ``pickle.PicklingError``, as any value a serializer cannot encode, so
    ``cache.set`` and ``@cached`` treat it as they treat an unpicklable value.
    """


class ValueTooLarge(ValueFailure):
    """The backend refused to store one value (over its item size limit)."""


class ValueFailureWarning(RuntimeWarning):
    """One entry could not be read or one value could not be stored; nothing was raised."""


class CorruptEntryWarning(ValueFailureWarning):
    """A stored entry could not be read (damaged, or its class moved); it counts as a miss.

    The entry is removed, or replaced by the next computation of a decorated call.
    """


class ValueNotStoredWarning(ValueFailureWarning):
    """A value was not stored because the backend cannot hold it (over its item size)."""


class ServerNotFound(MemokitError, RuntimeError):
    """A test server's binary (``redis-server``, ``memcached``) is not on PATH.

    Raised by :func:`memokit.testing.start_server`; the message says how to install it.
    """


class NotShareable(MemokitError, ValueError):
    """Statistics cannot be shared through this cache: the memory and dummy backends.

    Raised by :func:`memokit.stats.shared_stats`; the message names the backends that can.
    """


class _MissingPackage(ImproperlyConfigured):
    """The backend exists, but the client library it needs is not installed.

    Private: :func:`memokit.create_cache` re-raises it as plain ``ImproperlyConfigured``.
    """


class _Unnamed(Exception):
    """A class that cannot be known by its name; caught when choosing its encoder (private)."""


class _CommandUsage(ImproperlyConfigured):
    """The command line's bad usage or settings (exit 2); the message names the fix (private)."""


class _CommandFailed(MemokitError):
    """The command line's operation failed (exit 1); the message says why (private)."""
