"""Version counters: their keys, reading them with an entry, bumping them.

Every decorated function has a counter in its cache (``memokit.fn:<module:qualname>``)
and so does every tag (``memokit.tag:<tag>``), stored at :data:`COUNTER_VERSION`
whatever the cache's ``VERSION`` or the function's ``version=``, so that caches
of two deploys with different versions on one store share them.

A read fetches the entry and its counters with one ``get_many`` (one round
trip) and accepts the entry only when the versions stored in it equal the
counters read. Invalidating bumps a counter with ``incr``; old entries are
then never served and expire on their own. A store that only this process
sees (the memory backend) keeps the counters it read until this process
changes one, so that a hit reads the entry alone.

A missing counter (never created, expired, evicted, deleted by hand) is
created with :func:`fresh_counter`, a time-based value with random low bits,
never 0 or 1: a lost counter never comes back at a value that old entries
carry. A reader creates a missing counter *before* it computes, so a value
computed from old data is always stored under a version that an invalidation
after the data change has already moved past.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import secrets
import string
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from .backends.base import MISSING, UNREADABLE, BaseCache
from .entry import Versions, plan_is_current
from .keybuilders import (
    MAX_KEY_LENGTH,
    bound_names,
    function_identity,
    function_name,
    make_binder,
)
from .keys import MEMCACHE_MAX_KEY_LENGTH, default_key_func, key_is_clean

if TYPE_CHECKING:
    from .fnstate import CachedState

COUNTER_VERSION: Final = 0
"""The ``version`` counters are stored under, the same for every cache ``VERSION``."""

FUNCTION_COUNTER: Final = "memokit.fn:"
TAG_COUNTER: Final = "memokit.tag:"
_MAX_NAME: Final = 150
"""Longest tag or function name kept readable in a counter key; longer ones are digested."""
_MAX_COUNTER: Final = len(TAG_COUNTER) + _MAX_NAME
"""Longest counter key (before prefix and version): a tag of ``_MAX_NAME`` characters."""
_MEMO_SIZE: Final = 4096
"""Made counter keys of per-call tags remembered per function and cache."""
_SAFE_NAME = re.compile(r"[\x21-\x7e]+").fullmatch

TagsSpec: TypeAlias = str | Iterable[str] | Callable[..., Iterable[str]]
"""What ``@cached(tags=...)`` takes: a template, several templates, or a callable."""
TagsBuilder: TypeAlias = Callable[[tuple[Any, ...], dict[str, Any]], Iterable[str]]
"""Turns one call's ``(args, kwargs)`` into its tags."""


UNREADABLE_PAYLOAD: Final = ("unreadable",)
"""What a read returns for an entry it could not decode: not an entry, so a miss
that the computation replaces (it is not ``MISSING``)."""
_REPLACED: Final = "it counts as a miss and the next computation replaces it"
_NOT_A_COUNTER: Final[tuple[type[Exception], ...]] = (TypeError, *UNREADABLE)
"""What ``incr`` raises for a counter key holding something else, or damaged bytes."""

epoch = 0
"""Moves at every counter change this process makes (see ``ReadPlan.local``);
read it as ``counters.epoch``, since it is rebound."""
_ticks = itertools.count(1)


def _moved() -> None:
    # A fresh value from an atomic counter: two threads moving at once never
    # both write the same value back, as `epoch += 1` could.
    global epoch
    epoch = next(_ticks)


def fresh_counter() -> int:
    """Return a start value for a missing counter: milliseconds << 20 | 20 random bits.

    Never near 0 or 1, so a counter that was lost and recreated does not step
    back onto the values old entries carry; well below 2**63 (Redis and
    memcached counters are 64-bit) for the next two centuries.
    """
    return (time.time_ns() // 1_000_000) << 20 | secrets.randbits(20)


def _counter_name(prefix: str, name: str) -> str:
    if len(name) <= _MAX_NAME and _SAFE_NAME(name):
        return prefix + name
    # Spaces, non-ASCII or a long name: a digest keeps every key memcached-safe.
    digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()
    return f"{prefix}#{digest}"


def tag_counter_key(tag: str) -> str:
    """Return the key (before prefix and version) of ``tag``'s counter."""
    return _counter_name(TAG_COUNTER, tag)


def function_counter_key(
    func: Callable[..., Any], key: object = None, identity: str | None = None
) -> str:
    """Return the key of the per-function counter of ``func`` (decorated with ``key=``).

    ``identity`` is the function's identity in keys (``function_identity``), when
    it has one; without it, a ``key=`` template or callable stands for the function.
    """
    if identity is not None:
        return _counter_name(FUNCTION_COUNTER, identity)
    try:
        name = function_identity(func)
    except TypeError:
        # A partial or callable object has no stable name; its key= stands for it.
        if isinstance(key, str):
            name = f"key={key}"
        elif callable(key):
            name = f"key={function_name(key)}"
        else:
            raise
    return _counter_name(FUNCTION_COUNTER, name)


def prepare_counters(
    func: Callable[..., Any], key: object, tags: object, identity: str | None = None
) -> tuple[list[str], TagsBuilder | None]:
    """Return the counters every call of ``func`` reads, and the builder of per-call tags.

    The names are the function's counter, then one per fixed tag; a tag that
    depends on the arguments is built per call by the builder (None if none).
    """
    static, dynamic = make_tags_builder(func, tags)
    names = [function_counter_key(func, key, identity), *(tag_counter_key(tag) for tag in static)]
    return list(dict.fromkeys(names)), dynamic


def make_tags_builder(
    func: Callable[..., Any], tags: object
) -> tuple[tuple[str, ...], TagsBuilder | None]:
    """Validate ``@cached(tags=...)`` now; return the fixed tags and a per-call builder.

    A template names parameters (``"user:{user_id}"``, ``"org:{org.pk}"``) and is
    formatted with the call's bound arguments; a callable takes the call's
    arguments and returns an iterable of str.
    """
    if callable(tags):
        return (), _callable_tags(tags)
    if isinstance(tags, str):
        templates: tuple[Any, ...] = (tags,)
    elif isinstance(tags, Iterable):
        templates = tuple(tags)
    else:
        raise TypeError(
            f"tags must be a template such as 'user:{{user_id}}', a list of them, or a "
            f"callable returning tags, not {tags!r}"
        )
    names = bound_names(func)
    static: list[str] = []
    dynamic: list[str] = []
    for template in templates:
        if not isinstance(template, str) or not template:
            raise TypeError(
                f"tags must hold non-empty str templates such as 'user:{{user_id}}', "
                f"not {template!r}"
            )
        fields = [
            field for _, field, _, _ in string.Formatter().parse(template) if field is not None
        ]
        (dynamic if fields else static).append(template)
        for field in fields:
            base = re.split(r"[.\[]", field, maxsplit=1)[0]
            if base == "" or base.isdigit() or base not in names:
                raise ValueError(
                    f"tag {template!r} uses {{{field}}}, which does not name a parameter of "
                    f"{getattr(func, '__qualname__', func)}; its parameters are "
                    f"{', '.join(names) or 'none'}"
                )
    fixed = tuple(dict.fromkeys(static))
    if not dynamic:
        return fixed, None
    bind = make_binder(func)

    def build(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterable[str]:
        values = dict(zip(names, bind(args, kwargs), strict=True))
        return [template.format_map(values) for template in dynamic]

    return fixed, build


def _callable_tags(tags: Callable[..., Iterable[str]]) -> TagsBuilder:
    def build(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterable[str]:
        made = tags(*args, **kwargs)
        if isinstance(made, str) or not isinstance(made, Iterable):
            raise TypeError(
                f"tags={getattr(tags, '__qualname__', tags)!r} returned {made!r}; a tags "
                f"callable must return an iterable of str, for example [f'user:{{user_id}}']"
            )
        made = list(made)
        for tag in made:
            if not isinstance(tag, str) or not tag:
                raise TypeError(
                    f"tags={getattr(tags, '__qualname__', tags)!r} returned {tag!r} among its "
                    f"tags; each tag must be a non-empty str"
                )
        return made

    return build


# -- reading: one get_many for the entry and its counters -------------------------


class ReadPlan:
    """How one decorated function reads from one cache; rebuilt when the cache changes."""

    __slots__ = (
        "cache",
        "counter_prefix",
        "decode",
        "entry_prefix",
        "get",
        "get_many",
        "key_prefix",
        "local",
        "made_tags",
        "seen",
        "single",
        "static_keys",
        "version",
    )

    def __init__(self, state: CachedState, cache: BaseCache) -> None:
        self.cache = cache
        self.key_prefix = cache.key_prefix
        self.version = cache.version
        self.get = cache._get
        self.get_many = cache._get_many
        self.decode = cache._decode
        # A store no other process sees (the memory backend) changes its counters
        # only through this process's invalidations, which move ``epoch``: the
        # counters read are kept, with the epoch they were read at, until then.
        self.local = not cache.capabilities.cross_process and state.tags is None
        self.seen: tuple[int, Versions] | None = None
        self.entry_prefix: str | None = None
        self.counter_prefix: str | None = None
        cls = type(cache)
        if (
            cls.make_and_validate_key is BaseCache.make_and_validate_key
            and cache.key_func is default_key_func
            and isinstance(cache.key_prefix, str)
        ):
            # With Django's key function and a clean, short prefix, keys that are
            # clean by construction need no validation: the made key is a concatenation.
            counters = f"{cache.key_prefix}:{COUNTER_VERSION}:"
            if key_is_clean(counters) and len(counters) + _MAX_COUNTER <= MEMCACHE_MAX_KEY_LENGTH:
                self.counter_prefix = counters
            if state.safe_keys:
                version = cache.version if state.version is None else state.version
                entries = f"{cache.key_prefix}:{version}:"
                if (
                    key_is_clean(entries)
                    and len(entries) + MAX_KEY_LENGTH <= MEMCACHE_MAX_KEY_LENGTH
                ):
                    self.entry_prefix = entries
        self.static_keys = [self.counter(name) for name in state.counter_names]
        self.made_tags: dict[str, str] = {}  # per-call tag -> made counter key, bounded
        # The common case, read without building lists: a made entry key by
        # concatenation and exactly one counter (the function's).
        self.single: str | None = None
        if self.entry_prefix is not None and state.tags is None and len(self.static_keys) == 1:
            self.single = self.static_keys[0]

    def counter(self, name: str) -> str:
        """Return the made key of the counter ``name``."""
        if self.counter_prefix is not None:
            return self.counter_prefix + name
        return self.cache.make_and_validate_key(name, COUNTER_VERSION)

    def keys(
        self, state: CachedState, key: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> list[str]:
        """Return the made keys to read: the entry's, then its counters'."""
        prefix = self.entry_prefix
        made = (
            prefix + key
            if prefix is not None
            else self.cache.make_and_validate_key(key, state.version)
        )
        tags = state.tags
        if tags is None:
            return [made, *self.static_keys]
        keys = [made, *self.static_keys]
        memo = self.made_tags
        for tag in tags(args, kwargs):
            counter = memo.get(tag)
            if counter is None:
                if len(memo) >= _MEMO_SIZE:
                    memo.clear()
                counter = memo[tag] = self.counter(tag_counter_key(tag))
            if counter not in keys:
                keys.append(counter)
        return keys


def plan_for(state: CachedState, cache: BaseCache) -> ReadPlan:
    """Return ``state``'s read plan for ``cache``, building it when the cache changed."""
    plan = state.fast
    if plan is None or not plan_is_current(plan, cache):
        plan = state.fast = ReadPlan(state, cache)
    return plan


def read_entry(
    state: CachedState, cache: BaseCache, key: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, Versions]:
    """Read the entry at ``key`` and its counters with one ``get_many``.

    Return ``(payload, versions)``: the decoded entry (``MISSING`` when absent)
    and the current versions, the tuple a valid entry carries and the one a
    value computed now must be stored with. Missing counters are created
    before this returns (that costs extra round trips, once per counter).
    ``(key, versions)`` identifies one computation: a caller that read other
    versions must not share its result.
    """
    plan = plan_for(state, cache)
    if plan.local:
        seen = plan.seen
        if seen is not None and seen[0] == epoch:
            # No invalidation in this process since the counters were read: the
            # entry alone, one lock on the memory backend.
            prefix = plan.entry_prefix
            made = (
                prefix + key
                if prefix is not None
                else cache.make_and_validate_key(key, state.version)
            )
            payload = plan.get(made)
            if payload is not MISSING and type(payload) is not tuple:
                try:  # inline rather than decode_entry(): this is a hit path
                    payload = plan.decode(payload)
                except UNREADABLE as exc:
                    payload = unreadable_entry(state, cache, made, exc)
            return payload, seen[1]
        epoch_read = epoch  # read before the counters: a later invalidation moves it
        payload, versions = _read_all(plan, state, cache, key, args, kwargs)
        plan.seen = (epoch_read, versions)
        return payload, versions
    single = plan.single
    if single is not None:
        made = plan.entry_prefix + key  # type: ignore[operator]  # set whenever single is
        found = plan.get_many([made, single])
        counter = found.get(single, MISSING)
        # The memory backend keeps ints as they are: skip decoding those.
        if type(counter) is not int:
            counter = _counter(cache, plan, counter, single, state)
        payload = found.get(made, MISSING)
        # A tuple is an entry the memory backend kept as it is (serialisers
        # return bytes or str): decoding it would return it unchanged.
        if payload is not MISSING and type(payload) is not tuple:
            try:
                payload = plan.decode(payload)
            except UNREADABLE as exc:
                payload = unreadable_entry(state, cache, made, exc)
        return payload, (counter,)
    return _read_all(plan, state, cache, key, args, kwargs)


def _read_all(
    plan: ReadPlan,
    state: CachedState,
    cache: BaseCache,
    key: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> tuple[Any, Versions]:
    keys = plan.keys(state, key, args, kwargs)
    found = plan.get_many(keys)
    payload = found.get(keys[0], MISSING)
    if payload is not MISSING:
        payload = decode_entry(state, cache, keys[0], payload)
    versions = []
    for made in keys[1:]:
        counter = found.get(made, MISSING)
        if type(counter) is not int:
            counter = _counter(cache, plan, counter, made, state)
        versions.append(counter)
    return payload, tuple(versions)


def decode_entry(state: CachedState, cache: BaseCache, made: str, payload: Any) -> Any:
    """Decode an entry read for a decorated call; one that cannot be read is a miss.

    The value failure is counted and reported (once per key and window), and
    ``UNREADABLE_PAYLOAD`` returned: the caller computes and replaces the entry.
    """
    try:
        return cache._decode(payload)
    except UNREADABLE as exc:
        return unreadable_entry(state, cache, made, exc)


def unreadable_entry(state: CachedState, cache: BaseCache, made: str, exc: BaseException) -> Any:
    """Count and report an entry that could not be decoded; return ``UNREADABLE_PAYLOAD``."""
    state.value_errors += 1
    cache._unreadable(made, exc, _REPLACED)
    return UNREADABLE_PAYLOAD


def _decoded_counter(cache: BaseCache, made: str, payload: Any) -> int | None:
    """The counter stored as ``payload``; None when it is not one (damaged, or not an int)."""
    try:
        value = cache._decode(payload)
    except UNREADABLE as exc:
        cache._unreadable(made, exc, "a fresh counter replaces it")
        return None
    return value if type(value) is int else None


def _counter(cache: BaseCache, plan: ReadPlan, payload: Any, made: str, state: CachedState) -> int:
    """Decode a counter read with an entry; create it when it is missing or not a counter."""
    if payload is not MISSING:
        value = _decoded_counter(cache, made, payload)
        if value is not None:
            return value
    return _create(cache, made, cache._seconds(state.timeout))


async def aread_entry(
    state: CachedState, cache: BaseCache, key: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, Versions]:
    """The async twin of :func:`read_entry`."""
    plan = plan_for(state, cache)
    if plan.local:
        seen = plan.seen
        if seen is not None and seen[0] == epoch:
            made = cache.make_and_validate_key(key, state.version)
            payload = await cache._aget(made)
            if payload is not MISSING:
                payload = decode_entry(state, cache, made, payload)
            return payload, seen[1]
        epoch_read = epoch
        payload, versions = await _aread_all(plan, state, cache, key, args, kwargs)
        plan.seen = (epoch_read, versions)
        return payload, versions
    return await _aread_all(plan, state, cache, key, args, kwargs)


async def _aread_all(
    plan: ReadPlan,
    state: CachedState,
    cache: BaseCache,
    key: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> tuple[Any, Versions]:
    keys = plan.keys(state, key, args, kwargs)
    found = await cache._aget_many(keys)
    payload = found.get(keys[0], MISSING)
    if payload is not MISSING:
        payload = decode_entry(state, cache, keys[0], payload)
    versions = []
    for made in keys[1:]:
        value = found.get(made, MISSING)
        if value is not MISSING:
            value = _decoded_counter(cache, made, value)
        if type(value) is not int:
            value = await _acreate(cache, made, cache._seconds(state.timeout))
        versions.append(value)
    return payload, tuple(versions)


def _create(cache: BaseCache, made: str, seconds: float | None) -> int:
    """Create the missing counter ``made``; return its value (another creator's if first).

    Creating does not move the epoch: values other read plans keep for a lost
    counter still describe entries that no invalidation has touched.
    """
    if seconds is not None and seconds <= 0:
        return fresh_counter()  # nothing is stored for this function: no counter either
    for _ in range(3):
        value = fresh_counter()
        if cache._add(made, cache._encode(value), seconds):
            return value
        current = cache._get(made)
        if current is not MISSING:
            counter = _decoded_counter(cache, made, current)
            if counter is not None:
                return counter
            # Not a counter (damaged, overwritten by hand): replace it; that only causes misses.
            cache._set(made, cache._encode(value), seconds)
            return value
    # Created and gone three times in a row (a store evicting at once): this
    # value is valid for this call only, which is safe: the entry is a miss.
    return fresh_counter()


async def _acreate(cache: BaseCache, made: str, seconds: float | None) -> int:
    if seconds is not None and seconds <= 0:
        return fresh_counter()
    for _ in range(3):
        value = fresh_counter()
        if await cache._aadd(made, cache._encode(value), seconds):
            return value
        current = await cache._aget(made)
        if current is not MISSING:
            counter = _decoded_counter(cache, made, current)
            if counter is not None:
                return counter
            await cache._aset(made, cache._encode(value), seconds)
            return value
    return fresh_counter()


# -- bumping ------------------------------------------------------------------------


def bump(cache: BaseCache, name: str, delta: int) -> int:
    """Add ``delta`` to the counter ``name``; create it fresh when missing. Return it."""
    try:
        return _bump_once(cache, name, delta)
    finally:
        _moved()  # also after an error: the store may have changed all the same


def _bump_once(cache: BaseCache, name: str, delta: int) -> int:
    made = cache.make_and_validate_key(name, COUNTER_VERSION)
    seconds = cache._seconds(cache.default_timeout)
    for _ in range(3):
        try:
            result = cache._incr(made, delta)
        except _NOT_A_COUNTER as exc:
            # Not a counter (damaged, overwritten by hand): start afresh.
            if not isinstance(exc, TypeError):
                cache._unreadable(made, exc, "a fresh counter replaces it")
            value = fresh_counter()
            cache._set(made, cache._encode(value), seconds)
            return value
        if result is not MISSING:
            return int(result)
        # Missing: a fresh value differs from whatever entries carry. It must be
        # stored, since a reader may be about to create the counter itself.
        value = fresh_counter()
        if cache._add(made, cache._encode(value), seconds):
            return value
    raise RuntimeError(
        f"could not bump the counter {name!r}: it kept disappearing between incr and add "
        f"(is the cache evicting everything at once?)"
    )


async def abump(cache: BaseCache, name: str, delta: int) -> int:
    try:
        return await _abump_once(cache, name, delta)
    finally:
        _moved()


async def _abump_once(cache: BaseCache, name: str, delta: int) -> int:
    made = cache.make_and_validate_key(name, COUNTER_VERSION)
    seconds = cache._seconds(cache.default_timeout)
    for _ in range(3):
        try:
            result = await cache._aincr(made, delta)
        except _NOT_A_COUNTER as exc:
            if not isinstance(exc, TypeError):
                cache._unreadable(made, exc, "a fresh counter replaces it")
            value = fresh_counter()
            await cache._aset(made, cache._encode(value), seconds)
            return value
        if result is not MISSING:
            return int(result)
        value = fresh_counter()
        if await cache._aadd(made, cache._encode(value), seconds):
            return value
    raise RuntimeError(
        f"could not bump the counter {name!r}: it kept disappearing between incr and add "
        f"(is the cache evicting everything at once?)"
    )


def read_counter(cache: BaseCache, name: str) -> int:
    made = cache.make_and_validate_key(name, COUNTER_VERSION)
    payload = cache._get(made)
    if payload is not MISSING:
        value = _decoded_counter(cache, made, payload)
        if value is not None:
            return value
    return _create(cache, made, cache._seconds(cache.default_timeout))


async def aread_counter(cache: BaseCache, name: str) -> int:
    made = cache.make_and_validate_key(name, COUNTER_VERSION)
    payload = await cache._aget(made)
    if payload is not MISSING:
        value = _decoded_counter(cache, made, payload)
        if value is not None:
            return value
    return await _acreate(cache, made, cache._seconds(cache.default_timeout))
