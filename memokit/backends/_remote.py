"""What the network backends (Redis, memcached) share: options, locations, errors.

Both pass the ``OPTIONS`` they do not own straight to their client library, as
Django does, after checking the few that memokit needs to hold a promise: a
finite timeout, and no retry that could apply a command twice.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import re
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from ..exceptions import ImproperlyConfigured, UnreadableEntry
from ..serializers import UNPICKLING_ERRORS, describe, unpickling_failed
from .base import unknown_options


def _kind(value: object) -> str:
    """What ``value`` is, for a message; never the value, which may hold a password."""
    if isinstance(value, list | tuple):
        wrong = {type(item).__name__ for item in value if not isinstance(item, str)}
        return f"a {type(value).__name__} holding {', '.join(sorted(wrong))}"
    return f"a {type(value).__name__}"


def split_location(location: object, setting: str = "LOCATION") -> list[str]:
    """Return the servers named by ``LOCATION``: a list, or a ``;``/``,``-separated string."""
    if isinstance(location, str):
        servers = [part.strip() for part in re.split(r"[;,]", location) if part.strip()]
    elif isinstance(location, list | tuple) and all(isinstance(s, str) for s in location):
        servers = [s.strip() for s in location if s.strip()]
    else:
        raise ImproperlyConfigured(
            f"{setting} must be a server address (str) or a list of them, not {_kind(location)}"
        )
    if not servers:
        raise ImproperlyConfigured(
            f"{setting} names no server; give for example 'redis://127.0.0.1:6379' "
            f"or '127.0.0.1:11211'"
        )
    return servers


def check_seconds(value: object, name: str) -> float:
    """Return ``value`` as a finite positive number of seconds, or raise naming ``name``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ImproperlyConfigured(
            f"OPTIONS[{name!r}] must be a finite number of seconds above 0, not {value!r}; "
            f"memokit never waits forever for a server (for example {name}=1.0)"
        )
    return float(value)


def check_flag(value: object, name: str) -> bool:
    """Return ``value`` if it is a bool, or raise naming ``name``."""
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"OPTIONS[{name!r}] must be True or False, not {value!r}")
    return value


def split_options(
    cls_name: str, options: Mapping[str, Any], owned: frozenset[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``OPTIONS`` into memokit's own (lower-cased) and the client's (as given)."""
    if not isinstance(options, Mapping):
        raise ImproperlyConfigured(f"OPTIONS must be a mapping, not {_kind(options)}")
    own: dict[str, Any] = {}
    client: dict[str, Any] = {}
    for name, value in options.items():
        if not isinstance(name, str):
            raise ImproperlyConfigured(f"{cls_name} OPTIONS keys must be str, not {name!r}")
        if name.upper() in owned:
            own[name.lower()] = value
        else:
            client[name] = value
    return own, client


def parameter_names(functions: Iterable[Callable[..., Any]]) -> set[str]:
    """Return the keyword arguments the given functions accept by name."""
    names: set[str] = set()
    for function in functions:
        try:
            parameters = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):  # a builtin without a signature: nothing to learn
            continue
        names.update(
            p.name
            for p in parameters
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
        )
    return names


def refused_options(
    cls_name: str,
    library: str,
    client_options: Mapping[str, Any],
    owned: Iterable[str],
    accepted: set[str],
    error: Exception,
) -> ImproperlyConfigured:
    """Return the error for ``OPTIONS`` the client library refused when it was built.

    A key neither memokit nor the library knows is named with the likely fix;
    any other refusal keeps the library's own words.
    """
    unknown = [name for name in client_options if name not in accepted]
    if unknown:
        return unknown_options(
            cls_name,
            unknown,
            owned,
            also=accepted,
            more=f", and the keyword arguments of {library}'s client, spelled as {library} does",
        )
    return ImproperlyConfigured(f"OPTIONS for {cls_name}: {library} refused them ({error})")


_A = TypeVar("_A", bound=Callable[..., Awaitable[Any]])


def keeps_cancellation(method: _A) -> _A:
    """Make an async primitive raise ``CancelledError`` for a cancellation its I/O dropped.

    Python 3.11's ``asyncio.wait_for``, which redis-py's async client puts around
    each write, returns the inner result when it finishes in the same turn of the
    loop as a cancellation, and the cancellation is lost: the caller's task goes
    on as if never cancelled. The task still counts the request
    (``Task.cancelling()``), so a count that grew while the call ran without
    raising is a lost cancellation; it is raised when the call returns. 3.12
    rewrote ``wait_for``: nothing to do there.
    """
    if sys.version_info >= (3, 12):
        return method

    @functools.wraps(method)
    async def guarded(*args: Any, **kwargs: Any) -> Any:
        task = asyncio.current_task()
        asked = task.cancelling() if task is not None else 0
        result = await method(*args, **kwargs)
        if task is not None and task.cancelling() > asked:
            raise asyncio.CancelledError
        return result

    return guarded  # type: ignore[return-value]  # same signature as method


def unreadable_payload(exc: Exception, where: str) -> UnreadableEntry:
    """The error for a bare pickle that ``pickle.loads`` refused with ``exc``, read from
    ``where``: what ``PickleSerializer.loads`` and the backend's ``_decode`` raised."""
    if isinstance(exc, UNPICKLING_ERRORS):
        return unpickling_failed(exc)
    return UnreadableEntry(f"cannot deserialise a value read from {where} ({describe(exc)})")


def deserialised(loads: Callable[[Any], Any], payload: Any, where: str) -> Any:
    """``loads(payload)``; any error but ``UnreadableEntry`` is raised as one naming
    ``where``, never quoting the stored bytes (the cause's message can)."""
    try:
        return loads(payload)
    except UnreadableEntry:
        raise
    except Exception as exc:
        raise UnreadableEntry(
            f"cannot deserialise a value read from {where} ({describe(exc)})"
        ) from None
