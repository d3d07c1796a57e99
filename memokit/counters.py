"""Version counters: reading them with an entry (the read plan), creating and bumping them.

The counters' keys are :mod:`memokit.counterkeys`. A read fetches the entry and
its counters with one ``get_many`` (one round trip) and accepts the entry only
when the versions stored in it equal the counters read. Invalidating bumps a
counter with ``incr``; old entries are then never served and expire on their
own. A store that only this process sees (the memory backend) keeps the
counters it read until this process changes one, so that a hit reads the entry
alone.

A missing counter (never created, expired, evicted, deleted by hand) is
created with :func:`fresh_counter`, a time-based value with random low bits,
never 0 or 1: a lost counter never comes back at a value that old entries
carry. A reader creates a missing counter *before* it computes, so a value
computed from old data is always stored under a version that an invalidation
after the data change has already moved past.

Sync and async are written once: what to do with what was read is decided in
plain functions, and the algorithms that alternate I/O and decisions (creating,
bumping) are generators of :data:`Step` that :func:`run` and :func:`arun` drive
with the sync or the async primitives.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

from .backends.base import MISSING, UNREADABLE, BaseCache
from .counterkeys import (
    COUNTER_VERSION,
    MAX_COUNTER_KEY,
    TagsBuilder,
    TagsSpec,
    function_counter_key,
    prepare_counters,
    tag_counter_key,
)
from .entry import Versions, plan_is_current, valid_value
from .keybuilders import MAX_KEY_LENGTH

if TYPE_CHECKING:
    from .fnstate import CachedState

__all__ = [  # the counter keys are re-exported: they were defined here first
    "COUNTER_VERSION",
    "ReadPlan",
    "TagsBuilder",
    "TagsSpec",
    "abump",
    "aread_counter",
    "aread_entry",
    "bump",
    "entry_value",
    "fresh_counter",
    "function_counter_key",
    "plan_for",
    "prepare_counters",
    "read_counter",
    "read_entry",
    "tag_counter_key",
    "tier_only",
    "unreadable_entry",
]

T = TypeVar("T")

_MEMO_SIZE: Final = 4096
"""Made counter keys of per-call tags remembered per function and cache."""

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


# -- one algorithm, a sync and an async driver ----------------------------------------

Step: TypeAlias = tuple[Callable[..., Any], Callable[..., Awaitable[Any]], tuple[Any, ...]]
"""One I/O step: the sync primitive, its async twin, and their arguments."""
Steps: TypeAlias = Generator[Step, Any, T]
"""An algorithm that yields its I/O steps, is sent their results (or has their
exceptions thrown in) and returns its result."""


def run(steps: Steps[T]) -> T:
    """Run ``steps`` with the sync primitives; return its result."""
    try:
        step = next(steps)
        while True:
            try:
                result = step[0](*step[2])
            except Exception as exc:  # the algorithm decides; what it does not catch goes on
                step = steps.throw(exc)
            else:
                step = steps.send(result)
    except StopIteration as stop:
        done: T = stop.value
        return done


async def arun(steps: Steps[T]) -> T:
    """Run ``steps`` with the async primitives; return its result."""
    try:
        step = next(steps)
        while True:
            try:
                result = await step[1](*step[2])
            except Exception as exc:
                step = steps.throw(exc)
            else:
                step = steps.send(result)
    except StopIteration as stop:
        done: T = stop.value
        return done


# -- reading: one get_many for the entry and its counters -------------------------


class ReadPlan:
    """How one decorated function reads from one cache; rebuilt when the cache changes."""

    __slots__ = (
        "cache",
        "counter_prefix",
        "entry_prefix",
        "get",
        "get_many",
        "key_func",
        "key_prefix",
        "local",
        "made_tags",
        "seen",
        "single",
        "static_keys",
        "tier",
        "tier_seen",
        "version",
    )

    def __init__(self, state: CachedState, cache: BaseCache) -> None:
        self.cache = cache
        self.key_prefix = cache.key_prefix
        self.key_func = cache.key_func
        self.version = cache.version
        self.get = cache._get
        self.get_many = cache._get_many
        # Tier one (memokit.backends.tiered): a read it answers alone is a tier hit.
        self.tier: Callable[[list[str]], dict[str, Any] | None] | None = getattr(
            cache, "local_many", None
        )
        # Through tier one: the versions last read, with the epoch before that read
        # (memokit.fastindex learns with them; counters.epoch moves at a local bump).
        self.tier_seen: tuple[int, Versions] | None = None
        # A store no other process sees (the memory backend) changes its counters
        # only through this process's invalidations, which move ``epoch``: the
        # counters read are kept, with the epoch they were read at, until then.
        self.local = not cache.capabilities.cross_process and state.tags is None
        self.seen: tuple[int, Versions] | None = None
        # Where the cache's made keys are a plain concatenation, keys that are
        # clean by construction skip key making and validation (the cache says where).
        self.counter_prefix = cache._plain_key_prefix(COUNTER_VERSION, MAX_COUNTER_KEY)
        self.entry_prefix: str | None = None
        if state.safe_keys:
            version = cache.version if state.version is None else state.version
            self.entry_prefix = cache._plain_key_prefix(version, MAX_KEY_LENGTH)
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

    def entry(self, state: CachedState, key: str) -> str:
        """Return the made key of the entry ``key``."""
        prefix = self.entry_prefix
        if prefix is not None:
            return prefix + key
        return self.cache.make_and_validate_key(key, state.version)

    def keys(
        self, state: CachedState, key: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> list[str]:
        """Return the made keys to read: the entry's, then its counters'."""
        single = self.single
        if single is not None:
            return [self.entry_prefix + key, single]  # type: ignore[operator]  # set with single
        prefix = self.entry_prefix
        made = (
            prefix + key
            if prefix is not None
            else self.cache.make_and_validate_key(key, state.version)
        )
        keys = [made, *self.static_keys]
        tags = state.tags
        if tags is None:
            return keys
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
    if not plan.local:
        single = plan.single
        if single is not None:
            # A shared store, one counter, a made key by concatenation: every hit
            # on such a store comes here, so this is _split's first case inlined.
            made = plan.entry_prefix + key  # type: ignore[operator]  # set whenever single is
            since = epoch
            found = _tier_read(plan, state, [made, single]) or plan.get_many([made, single])
            counter = found.get(single, MISSING)
            if type(counter) is not int:
                counter = _found_counter(cache, single, counter)
                if counter is None:
                    counter = run(_create(cache, single, state.counter_seconds(cache)))
            read: Versions = (counter,)
            if plan.tier is not None:
                plan.tier_seen = (since, read)
            return found.get(made, MISSING), read
    else:
        seen = plan.seen
        if seen is not None and seen[0] == epoch:
            # No invalidation in this process since the counters were read (a local
            # store): the entry alone, one lock on the memory backend.
            made = plan.entry(state, key)
            return plan.get(made), seen[1]
    since = epoch  # read before the counters: a later invalidation moves it
    keys = plan.keys(state, key, args, kwargs)
    found = _tier_read(plan, state, keys) or plan.get_many(keys)
    payload, versions = _split(plan, state, cache, keys, found, since)
    if isinstance(versions, list):  # counters to create first
        seconds = state.counter_seconds(cache)
        created = [
            run(_create(cache, made, seconds)) if counter is None else counter
            for counter, made in zip(versions, keys[1:], strict=True)
        ]
        versions = _remember(plan, since, created)
    return payload, versions


async def aread_entry(
    state: CachedState, cache: BaseCache, key: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, Versions]:
    """The async twin of :func:`read_entry`."""
    plan = plan_for(state, cache)
    seen = plan.seen
    if seen is not None and seen[0] == epoch:
        made = plan.entry(state, key)
        return await cache._aget(made), seen[1]
    since = epoch
    keys = plan.keys(state, key, args, kwargs)
    found = _tier_read(plan, state, keys) or await cache._aget_many(keys)
    payload, versions = _split(plan, state, cache, keys, found, since)
    if isinstance(versions, list):
        seconds = state.counter_seconds(cache)
        created = [
            await arun(_create(cache, made, seconds)) if counter is None else counter
            for counter, made in zip(versions, keys[1:], strict=True)
        ]
        versions = _remember(plan, since, created)
    return payload, versions


def tier_only(
    state: CachedState, cache: BaseCache, key: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """The value tier one alone holds for a call (its entry and counters within the
    bound), or MISSING; no I/O. For calls that skip the backend (its breaker is open)."""
    if getattr(cache, "local_many", None) is None:
        return MISSING
    plan = plan_for(state, cache)
    keys = plan.keys(state, key, args, kwargs)
    found = _tier_read(plan, state, keys)
    if found is None:
        return MISSING
    payload, versions = _split(plan, state, cache, keys, found, epoch)
    if isinstance(versions, list):
        return MISSING
    try:
        return valid_value(payload, versions, cache)
    except UNREADABLE:
        return MISSING


def _tier_read(plan: ReadPlan, state: CachedState, keys: list[str]) -> dict[str, Any] | None:
    """What tier one answers alone for ``keys`` (counted as a tier hit), or None."""
    tier = plan.tier
    if tier is None:
        return None
    found = tier(keys)
    if found is not None:
        state.tier_hits += 1
    return found


def _split(
    plan: ReadPlan,
    state: CachedState,
    cache: BaseCache,
    keys: list[str],
    found: dict[str, Any],
    since: int,
) -> tuple[Any, Versions | list[int | None]]:
    """The entry and the versions read at ``keys`` (remembered on a local store).

    When a counter is missing or damaged, the versions are a list instead, None
    where a counter is to be created: the caller creates them, then remembers.
    """
    payload = found.get(keys[0], MISSING)
    if len(keys) == 2:  # the common case: one counter, no list
        made = keys[1]
        counter = found.get(made, MISSING)
        # The memory backend keeps ints as they are: skip decoding those.
        if type(counter) is not int:
            counter = _found_counter(cache, made, counter)
            if counter is None:
                return payload, [None]
        versions: Versions = (counter,)
    else:
        counters: list[int | None] = []
        for made in keys[1:]:
            counter = found.get(made, MISSING)
            counters.append(
                counter if type(counter) is int else _found_counter(cache, made, counter)
            )
        if None in counters:
            return payload, counters
        versions = tuple(counters)  # type: ignore[arg-type]  # no None in it
    if plan.local:
        plan.seen = (since, versions)
    elif plan.tier is not None:
        plan.tier_seen = (since, versions)
    return payload, versions


def _remember(plan: ReadPlan, since: int, counters: list[int | None] | list[int]) -> Versions:
    versions: Versions = tuple(counters)  # type: ignore[arg-type]  # no None left
    if plan.local:
        plan.seen = (since, versions)
    elif plan.tier is not None:
        plan.tier_seen = (since, versions)
    return versions


def entry_value(
    state: CachedState, cache: BaseCache, made: str, payload: Any, versions: Versions
) -> Any:
    """The value of the entry read at ``made`` if valid under ``versions``, else MISSING.

    :func:`memokit.entry.valid_value`, with a valid entry whose value cannot be
    decoded (damaged, a bad signature) counted and reported (once per key and
    window) as a miss: the caller computes and replaces the entry.
    """
    try:
        return valid_value(payload, versions, cache)
    except UNREADABLE as exc:
        return unreadable_entry(state, cache, made, exc)


def unreadable_entry(state: CachedState, cache: BaseCache, made: str, exc: BaseException) -> Any:
    """Count and report an entry whose value could not be decoded; return MISSING."""
    state.value_errors += 1
    cache._unreadable(made, exc, _REPLACED)
    return MISSING


def _found_counter(cache: BaseCache, made: str, payload: Any) -> int | None:
    """The counter read as ``payload``; None when it is missing, damaged or not an int."""
    if payload is MISSING:
        return None
    try:
        value = cache._decode(payload)
    except UNREADABLE as exc:
        cache._unreadable(made, exc, "a fresh counter replaces it")
        return None
    return value if type(value) is int else None


# -- creating and bumping -------------------------------------------------------------


def _create(cache: BaseCache, made: str, seconds: float | None) -> Steps[int]:
    """Create the missing counter ``made``; return its value (another creator's if first).

    Creating does not move the epoch: values other read plans keep for a lost
    counter still describe entries that no invalidation has touched.
    """
    if seconds is not None and seconds <= 0:
        return fresh_counter()  # nothing is stored for this function: no counter either
    for _ in range(3):
        value = fresh_counter()
        if (yield cache._add, cache._aadd, (made, cache._encode(value), seconds)):
            return value
        current = yield cache._get, cache._aget, (made,)
        if current is not MISSING:
            counter = _found_counter(cache, made, current)
            if counter is not None:
                return counter
            # Not a counter (damaged, overwritten by hand): replace it; that only causes misses.
            yield cache._set, cache._aset, (made, cache._encode(value), seconds)
            return value
    # Created and gone three times in a row (a store evicting at once): this
    # value is valid for this call only, which is safe: the entry is a miss.
    return fresh_counter()


def _bump(cache: BaseCache, name: str, delta: int) -> Steps[int]:
    """Add ``delta`` to the counter ``name``; create it fresh when missing. Return it."""
    made = cache.make_and_validate_key(name, COUNTER_VERSION)
    seconds = cache._seconds(cache.default_timeout)
    for _ in range(3):
        try:
            result = yield cache._incr_counter, cache._aincr_counter, (made, delta)
        except _NOT_A_COUNTER as exc:
            # Not a counter (damaged, overwritten by hand): start afresh.
            if not isinstance(exc, TypeError):
                cache._unreadable(made, exc, "a fresh counter replaces it")
            value = fresh_counter()
            yield cache._set, cache._aset, (made, cache._encode(value), seconds)
            return value
        if result is not MISSING:
            return int(result)
        # Missing: a fresh value differs from whatever entries carry. It must be
        # stored, since a reader may be about to create the counter itself.
        value = fresh_counter()
        if (yield cache._add, cache._aadd, (made, cache._encode(value), seconds)):
            return value
    raise RuntimeError(
        f"could not bump the counter {name!r}: it kept disappearing between incr and add "
        f"(is the cache evicting everything at once?)"
    )


def bump(cache: BaseCache, name: str, delta: int) -> int:
    """Add ``delta`` to the counter ``name``; create it fresh when missing. Return it."""
    try:
        return run(_bump(cache, name, delta))
    finally:
        _moved()  # also after an error: the store may have changed all the same


async def abump(cache: BaseCache, name: str, delta: int) -> int:
    """The async twin of :func:`bump`."""
    try:
        return await arun(_bump(cache, name, delta))
    finally:
        _moved()


def _read_counter(cache: BaseCache, name: str) -> Steps[int]:
    made = cache.make_and_validate_key(name, COUNTER_VERSION)
    value = _found_counter(cache, made, (yield cache._get, cache._aget, (made,)))
    if value is None:
        value = yield from _create(cache, made, cache._seconds(cache.default_timeout))
    return value


def read_counter(cache: BaseCache, name: str) -> int:
    """Return the counter ``name``, created when missing."""
    return run(_read_counter(cache, name))


async def aread_counter(cache: BaseCache, name: str) -> int:
    """The async twin of :func:`read_counter`."""
    return await arun(_read_counter(cache, name))
