"""The public API's algorithms, each written once for ``BaseCache``'s sync and async twins.

Each function is a generator of primitive calls (see ``_primitives``): it decides
what to store or remove and how to answer, and yields only the storage calls.
``BaseCache.set_many`` runs one with ``run`` and ``aset_many`` with ``arun``, so a
fix lands in both. The hot path of each method (one primitive call: a hit, a
plain write) is written out in both twins, since driving a generator costs about as
much as a whole memory get; every branch beyond it is here.
A timeout of zero or less never reaches a primitive: it removes, or stores nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..exceptions import ValueTooLarge
from ..keys import MEMCACHE_MAX_KEY_LENGTH, clean_batch
from ..timeouts import Timeout
from ._primitives import MISSING, UNREADABLE, Steps, is_entry

if TYPE_CHECKING:
    from .base import BaseCache  # it imports this module


def removes(seconds: float | None) -> bool:
    """True for a resolved timeout that means "remove the key" (zero or less)."""
    return seconds is not None and seconds <= 0


def unreadable(
    cache: BaseCache, made: str, exc: BaseException, default: Any, payload: Any
) -> Steps[Any]:
    """An entry that cannot be read: reported, removed, and a miss (``default``).

    A decorated call's entry is no value to the plain API but nothing is wrong
    with it: a quiet miss, kept for the decorator (``memokit.Entry.read`` reads it).
    """
    if is_entry(payload):
        return default
    cache._unreadable(made, exc)
    yield "_delete", made
    return default


def fill(
    cache: BaseCache,
    made: str,
    default: Any,
    seconds: float | None,
    unread: BaseException | None,
    payload: Any = None,
) -> Steps[Any]:
    """``get_or_set`` after its read missed (``unread``: the ``payload`` found could
    not be read; a decorated call's entry there is replaced, as asked, unreported)."""
    if unread is not None:
        if is_entry(payload):
            yield "_delete", made
        else:
            yield from unreadable(cache, made, unread, None, payload)
    value = default() if callable(default) else default  # called, never awaited
    encoded = cache._encode(value)
    if removes(seconds):
        return cache._decode(encoded)
    # If another caller stored a value between our read and our add, theirs wins.
    # Either way the caller gets the stored form: what a later hit returns, also
    # with a lossy serializer.
    try:
        found = yield "_add_or_get", made, encoded, seconds
    except ValueTooLarge as exc:
        cache._not_stored(made, exc)
        found = MISSING
    if found is not MISSING:
        try:
            return cache._decode(found)
        except UNREADABLE as exc:
            if not is_entry(found):
                cache._unreadable(made, exc)  # theirs cannot be read; ours is returned
    return cache._decode(encoded)


_KEY_MAKERS = ("make_key", "validate_key", "make_and_validate_key")


def concatenated(cache: BaseCache, keys: list[Any], version: int | None) -> list[str] | None:
    """The made keys of ``keys``, in one pass, when each is exactly what
    ``cache.make_and_validate_key(key, version)`` returns with nothing to warn about:
    the cache's made keys are a plain concatenation (``_plain_key_prefix``, and no
    instance overrides a key maker) and every key is a clean ASCII ``str``.

    None otherwise: the caller makes and validates each key, so every warning and
    error is the single-key path's, in the same order.
    """
    if not keys:
        return None
    prefix = cache._plain_key_prefix(cache.version if version is None else version, 0)
    if prefix is None or not clean_batch(keys, MEMCACHE_MAX_KEY_LENGTH - len(prefix)):
        return None
    own = cache.__dict__
    if own and any(name in own for name in _KEY_MAKERS):
        return None  # e.g. a test's cache.make_key = ...: the instance's is the one used
    # Clean keys hold no newline: one join and one split make them all in C.
    return (prefix + ("\n" + prefix).join(keys)).split("\n")


def made_keys(cache: BaseCache, keys: Iterable[Any], version: int | None) -> dict[str, Any]:
    """``{made key: key}`` for ``keys``, as ``make_and_validate_key`` makes each."""
    if type(keys) is not list:
        keys = list(keys)
    made = concatenated(cache, keys, version)
    if made is not None:
        return dict(zip(made, keys, strict=True))
    make = cache.make_and_validate_key
    return {make(key, version): key for key in keys}


def get_many(cache: BaseCache, keys: Iterable[Any], version: int | None) -> Steps[dict[Any, Any]]:
    made = made_keys(cache, keys, version)
    if not made:
        return {}  # no round trip (and MGET refuses no keys)
    found = yield "_get_many", list(made)
    values: dict[Any, Any] = {}
    unread: list[str] = []
    decode = cache._decode
    for m, key in made.items():
        if m in found:
            payload = found[m]
            try:
                values[key] = decode(payload)
            except UNREADABLE as exc:
                if not is_entry(payload):
                    cache._unreadable(m, exc)
                    unread.append(m)
    if unread:
        yield "_delete_many", unread
    return values


def set_many(
    cache: BaseCache, data: Mapping[Any, Any], timeout: Timeout, version: int | None
) -> Steps[list[Any]]:
    seconds = cache._seconds(timeout)
    # Every key is validated and every value encoded before anything is stored,
    # so an unpicklable value leaves the store untouched.
    encode = cache._encode
    made = concatenated(cache, list(data), version) if type(data) is dict else None
    if made is not None:
        originals = dict(zip(made, data, strict=True))
        items = {m: encode(value) for m, value in zip(made, data.values(), strict=True)}
    else:
        # Key by key: a bad key raises (on a strict backend) where the loop reaches it,
        # after the values before it were encoded, as always.
        originals = {}
        items = {}
        for key, value in data.items():
            m = cache.make_and_validate_key(key, version)
            originals[m] = key
            items[m] = encode(value)
    if not items:
        return []
    if removes(seconds):
        yield "_delete_many", list(items)
        return []
    failed = yield "_set_many", items, seconds
    return cache._failed_keys(originals, failed)


def delete_many(cache: BaseCache, keys: Iterable[Any], version: int | None) -> Steps[None]:
    if type(keys) is not list:
        keys = list(keys)
    made = concatenated(cache, keys, version)
    if made is None:
        made = [cache.make_and_validate_key(key, version) for key in keys]
    if made:
        yield "_delete_many", made


def incr_version(cache: BaseCache, key: Any, delta: int, version: int | None) -> Steps[int]:
    if version is None:
        version = cache.version
    old = cache.make_and_validate_key(key, version)
    payload = yield "_get", old
    if payload is MISSING:
        raise ValueError(f"Key '{key}' not found")
    if delta == 0:
        return version  # nothing to move (Django would delete the value here)
    new = cache.make_and_validate_key(key, version + delta)
    seconds = cache.default_timeout  # as in Django, the moved entry gets the default
    if removes(seconds):
        yield "_delete", new
    else:
        yield "_set", new, payload, seconds
    yield "_delete", old
    return version + delta
