"""Two tiers: an in-process tier one (``_tierstore``) in front of any shared backend.

``TieredCache`` is a ``BaseCache`` whose primitives answer from tier one while a
slot is younger than the coherence bound (``TIER['BOUND']``), and otherwise read
the second tier (one ``get_many`` for an entry and its counters) and keep what
they read. Every write goes to the second tier first; what this process wrote
is then kept in tier one, so it sees its own writes at once. Keys, timeouts and
payloads are the second tier's own (``inner``): a process without a tier reads
the same store the same way. See docs/tiers.md for what is promised.

The hooks for server-assisted invalidation (``forget_local``,
``forget_all_local``, ``assisted``) are public: a backend that pushes changes
(``track_invalidations``, Redis) is handed the tier once, at start; a read of
the second tier revives its tracking where it stopped (a forked child, after
``close()``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import replace
from time import monotonic
from typing import Any, ClassVar, TypeVar

from ..exceptions import ImproperlyConfigured
from ..timeouts import DEFAULT_TIMEOUT, Timeout
from . import _steps
from ._index import IndexView
from ._primitives import MISSING, UNREADABLE, Steps, arun, run
from ._tierstore import NOT_KEPT, SAME, Slot, TierSettings, TierStore, same
from .base import BaseCache, Capabilities
from .memory import _is_immutable

__all__ = ["TierSettings", "TieredCache", "tiered"]

T = TypeVar("T")


def tiered(inner: BaseCache, tier: Any) -> TieredCache:
    """Put tier one, configured by the ``TIER`` setting ``tier``, in front of ``inner``.

    Raise ``ImproperlyConfigured`` for a bad setting, and for a backend no other
    process shares (memory, dummy): a tier in front of it only duplicates it.
    """
    settings = TierSettings.parse(tier)
    if not inner.capabilities.cross_process or not inner.capabilities.stores:
        raise ImproperlyConfigured(
            f"TIER in front of {type(inner).__name__} is refused: tier one sits in front of a "
            f"store other processes share (filesystem, sqlite, redis, memcached); this one "
            f"is in-process already. Remove TIER, or use a shared BACKEND"
        )
    return _class_for(type(inner))(inner, settings)


_MIRRORED = (
    "location",
    "key_prefix",
    "version",
    "key_func",
    "default_timeout",
    "serializer",
    "lock_timeout",
)
"""The second tier's settings a tiered cache shows as its own (and writes through)."""


@functools.cache
def _class_for(inner_cls: type[BaseCache]) -> type[TieredCache]:
    # Capabilities are a class attribute: one subclass per second-tier class.
    caps = replace(inner_cls.capabilities, keeps_objects=False)
    name = f"Tiered{inner_cls.__name__}"
    return type(name, (TieredCache,), {"capabilities": caps, "__qualname__": name})


class _Forward:
    """A class attribute: the second tier's attribute of that name."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self
        return getattr(obj.inner, self.name)


def _forward_public(cls: type[TieredCache], inner: BaseCache) -> None:
    # The second tier's other public attributes (max_entries, ...; never private ones)
    # as class attributes that forward, not a __getattr__: a class with one makes
    # CPython look every attribute up the slow way, a tenth of a fast-index hit.
    # The instance's own attributes (the mirrored settings, tier ...) get none: a
    # class attribute behind one keeps CPython from specialising its reads too.
    for name in dir(inner):
        if not (name.startswith("_") or hasattr(cls, name) or name in _OWN):
            setattr(cls, name, _Forward(name))


_OWN = frozenset({*_MIRRORED, "inner", "settings", "tier"})


def _call(steps: Steps[T]) -> T:
    """Run ``steps`` that each name their read: ``(a function, *its arguments)``."""
    try:
        step = next(steps)
        while True:
            step = steps.send(step[0](*step[1:]))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]  # the generator's return type


async def _acall(steps: Steps[T]) -> T:
    """``_call`` of steps that each name an async read: ``(a coroutine function, *arguments)``."""
    try:
        step = next(steps)
        while True:
            step = steps.send(await step[0](*step[1:]))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


class TieredCache(BaseCache):
    """Tier one in front of ``inner``; see the module docstring and docs/tiers.md."""

    capabilities: ClassVar[Capabilities] = Capabilities()
    inner: BaseCache
    """The second tier."""

    def __init__(self, inner: BaseCache, settings: TierSettings) -> None:
        # BaseCache.__init__ is not called: keys, timeouts and payloads are inner's.
        object.__setattr__(self, "inner", inner)
        for name in _MIRRORED:
            object.__setattr__(self, name, getattr(inner, name))
        # BaseCache's memo of made keys stays empty: keys are made by the second tier
        # (make_key below), which BaseCache._remember never vouches for.
        self._keys = (self.key_prefix, self.version, self.key_func, {})
        self.settings = settings
        self.tier = TierStore(settings)
        """Tier one."""
        # A re-check that reads a stamp, not the value, where the backend has one.
        self._get_unchanged = getattr(inner, "_get_unchanged", None)
        self._aget_unchanged = getattr(inner, "_aget_unchanged", None)
        # While invalidations are tracked (Redis): the re-check, or read, that also tells
        # each key's time to live (_read_through).
        self._get_expiring = getattr(inner, "_get_expiring", None)
        self._aget_expiring = getattr(inner, "_aget_expiring", None)
        # Or one that compares stamps kept in the slots (filesystem, SQLite, Memcached).
        self._get_stamped = getattr(inner, "_get_stamped", None)
        self._aget_stamped = getattr(inner, "_aget_stamped", None)
        _forward_public(type(self), inner)
        # Redis pushes every change (docs/tiers.md, server-assisted invalidation): the
        # backend's tracker calls the hooks below; None where it cannot (a cluster).
        track = getattr(inner, "track_invalidations", None)
        self._tracking: Any = track(self, within=settings.bound) if track is not None else None

    # -- the second tier's settings, mirrored -------------------------------------
    # Plain attributes, not properties: the hit path reads key_prefix, version and
    # key_func on every call. Assigning one here assigns the second tier's too.

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _MIRRORED:
            setattr(self.inner, name, value)
            if name in ("key_prefix", "key_func"):
                self._untrack()
        object.__setattr__(self, name, value)

    def _untrack(self) -> None:
        # The tracker asked the server for pushes under the prefix the keys had when
        # it was made: keys made otherwise get none, so nothing may be vouched for
        # by it any longer. The bound applies from here on.
        tracking = self.__dict__.get("_tracking")
        if tracking is not None:
            object.__setattr__(self, "_tracking", None)
            tracking.stop()
        self.tier.assisted = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(inner={self.inner!r}, bound={self.settings.bound})"

    def make_key(self, key: Any, version: int | None = None) -> str:
        """The second tier's key."""
        return self.inner.make_key(key, version)

    def validate_key(self, key: str) -> None:
        """The second tier's key rules."""
        self.inner.validate_key(key)

    def make_and_validate_key(self, key: Any, version: int | None = None) -> str:
        """The second tier's key, validated by its rules."""
        return self.inner.make_and_validate_key(key, version)

    def get_backend_timeout(self, timeout: Timeout = DEFAULT_TIMEOUT) -> float | None:
        """The second tier's answer."""
        return self.inner.get_backend_timeout(timeout)

    def _plain_key_prefix(self, version: int, longest: int) -> str | None:
        return self.inner._plain_key_prefix(version, longest)

    def _encode(self, value: Any) -> Any:
        return self.inner._encode(value)

    def _decode(self, payload: Any) -> Any:
        return self.inner._decode(payload)

    def close(self, **kwargs: Any) -> None:
        """Close the second tier's connections; tier one stays."""
        self.inner.close(**kwargs)

    # -- hooks for server-assisted invalidation (called from a tracker's thread) --

    def forget_local(self, made_keys: Iterable[str]) -> None:
        """Drop these made keys from tier one; a fill under way for one is not kept."""
        self.tier.forget_many(made_keys)

    def forget_all_local(self) -> None:
        """Drop every slot of tier one; no fill under way is kept."""
        self.tier.forget_all()

    @property
    def assisted(self) -> bool:
        """True while every change is pushed (``forget_local``): slots need no re-check.

        A tracker sets it once its subscription is live, and on losing it calls
        ``forget_all_local()`` and sets it False: the bound applies again.
        """
        return self.tier.assisted

    @assisted.setter
    def assisted(self, value: bool) -> None:
        self.tier.assisted = bool(value)

    def _index_view(self) -> IndexView:
        # The fast index of @cached (memokit.fastindex): tier one's records, each
        # ending with the bound of the batch it was served in (TierStore.split), on
        # the bound's clock.
        tier = self.tier
        records, recent = tier.records, tier.data.move_to_end
        return IndexView(records, recent, tier.max_entries, tier=True, monotonic=True)

    def local_many(self, keys: list[str]) -> dict[str, Any] | None:
        """The payloads of ``keys`` if tier one may serve every one of them, else None.

        No I/O: the decorator layer asks here first, to count a tier hit.
        """
        return self.tier.split(keys)

    # -- reads --------------------------------------------------------------------

    def _get(self, key: str) -> Any:
        slot = self.tier.lookup(key)
        if slot is not None:
            return slot.payload
        return self._get_many([key]).get(key, MISSING)

    async def _aget(self, key: str) -> Any:
        slot = self.tier.lookup(key)
        if slot is not None:
            return slot.payload
        return (await self._aget_many([key])).get(key, MISSING)

    def _get_many(self, keys: list[str]) -> dict[str, Any]:
        found = self.tier.split(keys)
        if found is not None:
            return found
        return _call(self._read_through(keys, asynchronous=False))

    async def _aget_many(self, keys: list[str]) -> dict[str, Any]:
        found = self.tier.split(keys)
        if found is not None:
            return found
        return await _acall(self._read_through(keys, asynchronous=True))

    def _read_through(self, keys: list[str], *, asynchronous: bool) -> Steps[dict[str, Any]]:
        # _get_many and _aget_many past tier one, written once (as _steps writes
        # BaseCache's algorithms): all of ``keys`` in one round trip (see TierStore.split),
        # yielded as (the read, *its arguments), which _get_many calls and _aget_many
        # awaits; what it read is kept in tier one.
        tier = self.tier
        inner = self.inner
        stamped = self._aget_stamped if asynchronous else self._get_stamped
        unchanged = self._aget_unchanged if asynchronous else self._get_unchanged
        many = inner._aget_many if asynchronous else inner._get_many
        read: dict[str, Any]
        expiring = None
        tracking = self._tracking
        if tracking is not None:
            tracking.revive()
            # A copy read while tracked is served at any age, and the push of its
            # expiry comes only once Redis deletes the key (lazily: maybe minutes
            # later), so its time to live is read with it and ends its slot. Asked
            # whenever a tracker exists, not only while assisted: the tracking may
            # come up during this very read, and vouch for what it returns.
            expiring = self._aget_expiring if asynchronous else self._get_expiring
        if stamped is not None and expiring is None:
            held, stamps, tokens = tier.held_stamped(keys)
            started = monotonic()
            read, seen = yield stamped, keys, stamps
            return self._kept(read, seen, keys, started, tokens, held)
        held, tokens = tier.held(keys)
        started = monotonic()
        ttls = None
        if expiring is not None:
            read, ttls = yield expiring, keys, held
        elif not held:
            read = yield many, keys
            tier.fill_many(read, keys, started, tokens)
            return read
        elif unchanged is not None:
            read = yield unchanged, keys, held
        else:
            read = same((yield many, keys), held)
        tier.fill_many(read, keys, started, tokens, held, ttls=ttls)
        return {k: held[k] if p is SAME else p for k, p in read.items()}

    def _kept(
        self,
        read: dict[str, Any],
        seen: Mapping[str, Any],
        keys: list[str],
        started: float,
        tokens: list[tuple[int, int]],
        held: Mapping[str, Any],
    ) -> dict[str, Any]:
        # A stamped re-check: SAME where the stamp held still matched; a slot held
        # without a stamp (this process's own write) was read, and compared here.
        if held:
            same(read, held)
        self.tier.fill_many(read, keys, started, tokens, held, seen)
        return {k: held[k] if p is SAME else p for k, p in read.items()}

    def _has_key(self, key: str) -> bool:
        if self.tier.lookup(key) is not None:
            return True
        return self.inner._has_key(key)

    async def _ahas_key(self, key: str) -> bool:
        if self.tier.lookup(key) is not None:
            return True
        return await self.inner._ahas_key(key)

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        """``BaseCache.get``; an immutable value read from tier one is kept decoded."""
        made = self.make_and_validate_key(key, version)
        slot = self.tier.lookup(made)
        if slot is None:
            found = self._get(made)
        elif (found := slot.kept) is not NOT_KEPT:
            return found  # the kept value: the fastest hit makes no further call
        try:
            return self._value(made, slot, found, default)
        except UNREADABLE as exc:
            return run(self, self._unreadable_steps(made, slot, found, default, exc))

    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        """Async ``get``; the tier one answer as in ``get``."""
        made = self.make_and_validate_key(key, version)
        slot = self.tier.lookup(made)
        if slot is None:
            found = await self._aget(made)
        elif (found := slot.kept) is not NOT_KEPT:
            return found
        try:
            return self._value(made, slot, found, default)
        except UNREADABLE as exc:
            return await arun(self, self._unreadable_steps(made, slot, found, default, exc))

    def _value(self, made: str, slot: Slot | None, read: Any, default: Any) -> Any:
        # get and aget after their one read (written once, as _steps does for
        # BaseCache's twins): the value of tier one's ``slot``, or else of the payload
        # ``read`` through it (MISSING: ``default``), its decoded immutable value kept
        # beside the slot. Raises what decoding raises (_unreadable_steps follows).
        if slot is None:
            if read is MISSING:
                return default
            # Re-checked unchanged, or filled: the slot now holding this very payload.
            slot = self.tier.data.get(made)  # one dict read: no lock needed
            if slot is not None and slot.payload is not read:
                slot = None
        payload = read
        if slot is not None:
            kept = slot.kept
            if kept is not NOT_KEPT:
                return kept
            payload = slot.payload
        value = self._decode(payload)
        if slot is not None and _is_immutable(value):
            slot.kept = value
        return value

    def _unreadable_steps(
        self, made: str, slot: Slot | None, read: Any, default: Any, exc: BaseException
    ) -> Steps[Any]:
        # After _value(made, slot, read, default) raised ``exc``: the payload it could not
        # decode (a slot's payload never changes) reported, removed, and a miss.
        payload = read if slot is None else slot.payload
        return _steps.unreadable(self, made, exc, default, payload)

    # -- writes: the second tier first, then this process's copy ------------------

    def _set(self, key: str, payload: Any, timeout: float | None) -> None:
        token = self.tier.forget(key)
        started = monotonic()
        self.inner._set(key, payload, timeout)
        self.tier.put(key, payload, started, timeout, token)

    async def _aset(self, key: str, payload: Any, timeout: float | None) -> None:
        token = self.tier.forget(key)
        started = monotonic()
        await self.inner._aset(key, payload, timeout)
        self.tier.put(key, payload, started, timeout, token)

    def _add(self, key: str, payload: Any, timeout: float | None) -> bool:
        token = self.tier.forget(key)
        started = monotonic()
        added = self.inner._add(key, payload, timeout)
        if added:
            self.tier.put(key, payload, started, timeout, token)
        return added

    async def _aadd(self, key: str, payload: Any, timeout: float | None) -> bool:
        token = self.tier.forget(key)
        started = monotonic()
        added = await self.inner._aadd(key, payload, timeout)
        if added:
            self.tier.put(key, payload, started, timeout, token)
        return added

    def _add_or_get(self, key: str, payload: Any, timeout: float | None) -> Any:
        token = self.tier.forget(key)
        started = monotonic()
        found = self.inner._add_or_get(key, payload, timeout)
        if found is MISSING:
            self.tier.put(key, payload, started, timeout, token)
        return found

    async def _aadd_or_get(self, key: str, payload: Any, timeout: float | None) -> Any:
        token = self.tier.forget(key)
        started = monotonic()
        found = await self.inner._aadd_or_get(key, payload, timeout)
        if found is MISSING:
            self.tier.put(key, payload, started, timeout, token)
        return found

    def _set_many(self, items: dict[str, Any], timeout: float | None) -> list[str]:
        tokens = {key: self.tier.forget(key) for key in items}
        started = monotonic()
        failed = self.inner._set_many(items, timeout)
        self._put_many(items, timeout, tokens, started, failed)
        return failed

    async def _aset_many(self, items: dict[str, Any], timeout: float | None) -> list[str]:
        tokens = {key: self.tier.forget(key) for key in items}
        started = monotonic()
        failed = await self.inner._aset_many(items, timeout)
        self._put_many(items, timeout, tokens, started, failed)
        return failed

    def _put_many(
        self,
        items: Mapping[str, Any],
        timeout: float | None,
        tokens: Mapping[str, tuple[int, int]],
        started: float,
        failed: list[str],
    ) -> None:
        skip = set(failed)
        for key, payload in items.items():
            if key not in skip:
                self.tier.put(key, payload, started, timeout, tokens[key])

    # Changes whose result tier one cannot know: the key is forgotten before the
    # second tier is asked (so a failure leaves nothing stale here), and read again.

    def _touch(self, key: str, timeout: float | None) -> bool:
        self.tier.forget(key)
        return self.inner._touch(key, timeout)

    async def _atouch(self, key: str, timeout: float | None) -> bool:
        self.tier.forget(key)
        return await self.inner._atouch(key, timeout)

    def _delete(self, key: str) -> bool:
        self.tier.forget(key)
        try:
            return self.inner._delete(key)
        finally:
            self.tier.forget(key)  # a read racing the delete keeps nothing

    async def _adelete(self, key: str) -> bool:
        self.tier.forget(key)
        try:
            return await self.inner._adelete(key)
        finally:
            self.tier.forget(key)

    def _delete_many(self, keys: list[str]) -> None:
        self.tier.forget_many(keys)
        try:
            self.inner._delete_many(keys)
        finally:
            self.tier.forget_many(keys)

    async def _adelete_many(self, keys: list[str]) -> None:
        self.tier.forget_many(keys)
        try:
            await self.inner._adelete_many(keys)
        finally:
            self.tier.forget_many(keys)

    def _incr(self, key: str, delta: int | float) -> Any:
        self.tier.forget(key)
        try:
            return self.inner._incr(key, delta)
        finally:
            self.tier.forget(key)

    async def _aincr(self, key: str, delta: int | float) -> Any:
        self.tier.forget(key)
        try:
            return await self.inner._aincr(key, delta)
        finally:
            self.tier.forget(key)

    def _incr_counter(self, key: str, delta: int) -> Any:
        self.tier.forget(key)
        try:
            return self.inner._incr_counter(key, delta)
        finally:
            self.tier.forget(key)

    async def _aincr_counter(self, key: str, delta: int) -> Any:
        self.tier.forget(key)
        try:
            return await self.inner._aincr_counter(key, delta)
        finally:
            self.tier.forget(key)

    def _clear(self) -> None:
        self.tier.forget_all()
        try:
            self.inner._clear()
        finally:
            self.tier.forget_all()

    async def _aclear(self) -> None:
        self.tier.forget_all()
        try:
            await self.inner._aclear()
        finally:
            self.tier.forget_all()

    def _count(self) -> int | None:
        return self.inner._count()

    def _clear_some(self, limit: int) -> int | None:
        self.tier.forget_all()
        return self.inner._clear_some(limit)
