"""Statistics per decorated function, and their totals shared across processes.

``f.stats()`` returns a :class:`Stats`: the counts of this process (hits,
misses, freshness counts, errors by kind, compute time with a small histogram).
Counting costs the hit path nothing beyond ``cache_info()``'s own count; compute
time is measured on the miss path (:mod:`memokit.misses`).

With ``configure_stats(share=True)``, each function adds what it counted to
totals kept in its cache's own backend, from the call path: at most once every
``flush_interval`` seconds per function, and at interpreter exit. There is no
background thread and never a round trip per call; a process killed without
running its exit handlers loses at most the last interval's counts. The memory
and dummy backends cannot share (their data lives in one process), and
``stats().sharing`` says so. :func:`shared_stats` reads the totals of every
process back; the storage format is described there and in docs/operations.md.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib
import logging
import math
import os
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from . import stats_hooks
from .backends.base import BaseCache
from .config import caches
from .exceptions import ImproperlyConfigured, NotShareable
from .fnstate import CachedState
from .stats_hooks import BOUNDS, MetricsHook, add_hook, hooks, remove_hook
from .stats_types import FIELDS, ComputeTime, Stats

if TYPE_CHECKING:
    from .stats_otel import OpenTelemetryMetrics
    from .stats_prometheus import PrometheusMetrics

__all__ = [
    "BOUNDS",
    "FIELDS",
    "ComputeTime",
    "MetricsHook",
    "NotShareable",
    "Stats",
    "StatsSettings",
    "add_hook",
    "ashared_stats",
    "configure_stats",
    "flush_all",
    "hooks",
    "process_stats",
    "remove_hook",
    "shared_stats",
    "stats_settings",
    "use_opentelemetry",
    "use_prometheus",
]

logger = logging.getLogger("memokit")

_BOUNDS_NS: Final = tuple(round(b * 1e9) for b in BOUNDS)

# -- settings --------------------------------------------------------------------------


@dataclass(frozen=True)
class StatsSettings:
    """What statistics do (see :func:`configure_stats`)."""

    enabled: bool = True
    """Time computations and allow sharing; off, ``stats()`` keeps ``cache_info()``'s counts."""
    share: bool = False
    """Add each function's counts to totals in its cache's backend."""
    flush_interval: float = 10.0
    """Seconds between two flushes of one function's counts (and what a killed process loses)."""


_settings = StatsSettings()
_states: weakref.WeakSet[CachedState] = weakref.WeakSet()
_flushing = threading.Lock()  # one flush at a time; a call that finds it taken goes on


def stats_settings() -> StatsSettings:
    """The statistics settings in force."""
    return _settings


def configure_stats(
    *,
    enabled: bool | None = None,
    share: bool | None = None,
    flush_interval: float | None = None,
) -> StatsSettings:
    """Set what statistics do, for every decorated function; return the settings in force.

    ``share=True`` adds each function's counts to totals in its cache's backend,
    at most every ``flush_interval`` seconds (default 10) and at exit, read back
    with :func:`shared_stats`. Arguments left as None keep their value.
    """
    global _settings
    for name, value in (("enabled", enabled), ("share", share)):
        if value is not None and type(value) is not bool:
            raise TypeError(f"{name} must be True or False, not {value!r}")
    if flush_interval is not None and (
        isinstance(flush_interval, bool)
        or not isinstance(flush_interval, int | float)
        or not 0 < flush_interval < math.inf
    ):
        raise ValueError(
            f"flush_interval must be a finite number of seconds > 0, not {flush_interval!r}; "
            f"e.g. flush_interval=10"
        )
    current = _settings
    _settings = StatsSettings(
        current.enabled if enabled is None else enabled,
        current.share if share is None else share,
        current.flush_interval if flush_interval is None else float(flush_interval),
    )
    for state in list(_states):
        _schedule(state)
    return _settings


def _schedule(state: CachedState) -> None:
    """Set when ``state``'s next flush is due; 0.0 (never) unless its counts can be shared.

    A hit tests ``state.due`` alone while it is 0.0, and reads the clock only
    while it is set: so a memory cache's hits (about 1 µs) never pay for the clock,
    and those of a store that shares (several µs and more) pay about 50 ns. A
    cache named by alias is not looked up here (that would build it at import
    time): its first flush tells, and :func:`rearm` looks again after a miss.
    """
    settings = _settings
    own = state.cache
    shares = own is None or _why_not_shared(own) is None
    if settings.enabled and settings.share and shares:
        state.due = time.monotonic() + settings.flush_interval
    else:
        state.due = 0.0


def rearm(state: CachedState) -> None:
    """After a miss of a function whose flushes are off: on again if its cache now shares.

    The cache behind an alias changes with ``configure()``; its first call misses.
    """
    settings = _settings
    if not (settings.enabled and settings.share):
        return
    try:
        shareable = _why_not_shared(_own_cache(state)) is None
    except Exception:  # an alias no longer configured: nothing to share through
        return
    if shareable:
        state.due = time.monotonic() + settings.flush_interval


def register(state: CachedState) -> None:
    """Count ``state`` among the functions whose statistics are read and shared."""
    _states.add(state)
    _schedule(state)


# -- this process ----------------------------------------------------------------------


def record_compute(state: CachedState, started_ns: int) -> None:
    """Count one computation that began at ``time.perf_counter_ns()`` = ``started_ns``."""
    if not _settings.enabled:
        return
    took = time.perf_counter_ns() - started_ns
    state.compute_count += 1
    state.compute_ns += took
    state.compute_buckets[bisect_left(_BOUNDS_NS, took)] += 1
    stats_hooks.computed(state.identity, took / 1e9)


def refresh_failed(state: CachedState, error: BaseException, log: bool = True) -> None:
    """Count and report a failed refresh of an entry of ``state``'s function (logged
    unless ``log=False``: the refreshes log once per key, memokit.refreshes)."""
    state.refresh_failures += 1
    stats_hooks.refresh_failed(state.identity, error, log)


def _totals(state: CachedState) -> dict[str, int]:
    counts = {
        "hits": state.hits,
        "misses": state.misses,
        "stale_hits": state.stale_hits,
        "refreshes": state.refreshes,
        "refresh_failures": state.refresh_failures,
        "early_recomputations": state.early_recomputations,
        "backend_errors": state.errors,
        "value_errors": state.value_errors,
        "tier_hits": state.tier_hits,
        "compute_count": state.compute_count,
        "compute_ns": state.compute_ns,
    }
    for i, n in enumerate(state.compute_buckets):
        counts[f"compute_le_{i}"] = n
    return counts


def _own_cache(state: CachedState) -> BaseCache:
    return state.cache if state.cache is not None else caches[state.alias]


def _why_not_shared(cache: BaseCache) -> str | None:
    capabilities = cache.capabilities
    if not capabilities.stores:
        return f"{cache!r} stores nothing"
    if not capabilities.cross_process:
        return f"{cache!r} keeps its data in this process"
    return None


def _sharing(state: CachedState) -> tuple[bool, str]:
    settings = _settings
    if not settings.enabled:
        return False, "statistics are off (memokit.stats.configure_stats(enabled=True))"
    if not settings.share:
        return False, "this process only (memokit.stats.configure_stats(share=True) shares them)"
    try:
        cache = _own_cache(state)
    except Exception as exc:  # an alias that is not configured
        return False, f"not shared: {exc}"
    why = _why_not_shared(cache)
    if why is not None:
        return False, f"not shared: {why}, so other processes cannot read totals there"
    return True, f"shared through {cache!r} every {settings.flush_interval:g} s and at exit"


def stats_of(state: CachedState) -> Stats:
    """The statistics of this process for one decorated function."""
    shared, sharing = _sharing(state)
    return Stats.from_dict(_totals(state), shared=shared, sharing=sharing)


def process_stats() -> dict[str, Stats]:
    """This process's statistics of every live decorated function, by identity."""
    found: dict[str, Stats] = {}
    for state in list(_states):
        counted = Stats.from_dict(_totals(state))
        before = found.get(state.identity)
        found[state.identity] = counted if before is None else before + counted
    return found


# -- the shared totals -----------------------------------------------------------------
# Stored through the cache's public API (KEY_PREFIX and VERSION apply), never
# expiring, as integers that incr() adds to:
#   memokit.stats:n              how many functions were registered (slots 1..n)
#   memokit.stats:slot:<i>       the identity of slot i ("module:qualname")
#   memokit.stats:fn:<digest>    the slot of a function (so a registration is made once)
#   memokit.stats:fn:<digest>:<field>   one counter of FIELDS
# <digest> is the first 32 hex digits of the SHA-256 of the identity. Two
# processes registering a function at once may both take a slot: the reader
# lists each identity once.

PREFIX: Final = "memokit.stats:"


def _fn_key(identity: str) -> str:
    return f"{PREFIX}fn:{hashlib.sha256(identity.encode()).hexdigest()[:32]}"


# One cache call: its sync method, its async twin, the arguments.
_Op = tuple[Callable[..., Any], Callable[..., Awaitable[Any]], tuple[Any, ...], dict[str, Any]]
_Steps = Generator[_Op, Any, None]


def _flush_steps(state: CachedState, c: BaseCache) -> _Steps:
    """Add ``state``'s unflushed counts to the shared totals, yielding each cache call."""
    totals = _totals(state)
    flushed = state.flushed
    deltas = {f: n - flushed.get(f, 0) for f, n in totals.items() if n != flushed.get(f, 0)}
    if not deltas:
        return
    fn = _fn_key(state.identity)
    forever: dict[str, Any] = {"timeout": None}
    # Registered at each flush, not once per process: a clear() forgets registrations,
    # and an eviction (Memcached) may drop the slot or the slot count alone, which would
    # hide the function from every reader for good.
    registered = yield (c.get, c.aget, (fn,), {})
    known = False
    if type(registered) is int:
        slot_key = f"{PREFIX}slot:{registered}"
        found = yield (c.get_many, c.aget_many, ([f"{PREFIX}n", slot_key],), {})
        count = found.get(f"{PREFIX}n")
        known = type(count) is int and count >= registered
        known = known and found.get(slot_key) == state.identity
    if not known:
        yield (c.add, c.aadd, (f"{PREFIX}n", 0), forever)
        slot = yield (c.incr, c.aincr, (f"{PREFIX}n",), {})
        yield (c.set, c.aset, (f"{PREFIX}slot:{slot}", state.identity), forever)
        yield (c.set, c.aset, (fn, slot), forever)
    for field, delta in deltas.items():
        key = f"{fn}:{field}"
        try:
            yield (c.incr, c.aincr, (key, delta), {})
        except ValueError:  # the first count of this field anywhere
            if not (yield (c.add, c.aadd, (key, delta), forever)):
                yield (c.incr, c.aincr, (key, delta), {})  # another process added it meanwhile
        flushed[field] = flushed.get(field, 0) + delta


def _target(state: CachedState) -> BaseCache | None:
    """The cache to flush ``state``'s counts to now, or None (not shareable, breaker open)."""
    if not (_settings.enabled and _settings.share):
        return None
    cache = _own_cache(state)
    if _why_not_shared(cache) is not None:
        state.due = 0.0  # no more clock reads on its hits (rearm() looks again after a miss)
        return None
    breaker = getattr(cache, "breaker", None)
    if breaker is not None and breaker.open_until:
        return None  # the calls skip this backend now; the counts wait for the next flush
    return cache


def _run(steps: _Steps) -> None:
    try:
        op = next(steps)
        while True:
            sync, _, args, kwargs = op
            try:
                result = sync(*args, **kwargs)
            except ValueError as exc:
                op = steps.throw(exc)
            else:
                op = steps.send(result)
    except StopIteration:
        pass


async def _arun(steps: _Steps) -> None:
    try:
        op = next(steps)
        while True:
            _, aio, args, kwargs = op
            try:
                result = await aio(*args, **kwargs)
            except ValueError as exc:
                op = steps.throw(exc)
            else:
                op = steps.send(result)
    except StopIteration:
        pass


def flush(state: CachedState) -> None:
    """Add the counts of ``state`` to the shared totals now (called from the call path).

    Never raises: a failing backend leaves the counts for the next flush.
    """
    if not _flushing.acquire(blocking=False):
        return  # another flush is under way: this function tries again at its next call
    try:
        _schedule(state)
        cache = _target(state)
        if cache is not None:
            _run(_flush_steps(state, cache))
    except Exception as exc:
        logger.debug("memokit: statistics of %s not shared this time: %r", state.identity, exc)
    finally:
        _flushing.release()


async def aflush(state: CachedState) -> None:
    """The async twin of :func:`flush`."""
    if not _flushing.acquire(blocking=False):
        return
    try:
        _schedule(state)
        cache = _target(state)
        if cache is not None:
            await _arun(_flush_steps(state, cache))
    except Exception as exc:
        logger.debug("memokit: statistics of %s not shared this time: %r", state.identity, exc)
    finally:
        _flushing.release()


def flush_all() -> None:
    """Flush every function's counts now (run at interpreter exit)."""
    for state in list(_states):
        if state.due:
            flush(state)


atexit.register(flush_all)


def _after_fork_in_child() -> None:
    # The parent flushes what it counted before the fork: the child starts from there.
    global _flushing
    _flushing = threading.Lock()
    for state in list(_states):
        state.flushed = _totals(state)
        _schedule(state)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# -- reading the totals ----------------------------------------------------------------


def _shareable(cache: BaseCache | str) -> BaseCache:
    found = caches[cache] if isinstance(cache, str) else cache
    why = _why_not_shared(found)
    if why is not None:
        raise NotShareable(
            f"{why}: statistics cannot be shared through it; share them through a "
            f"filesystem, SQLite, Redis or Memcached cache"
        )
    return found


def _slot_keys(n: Any) -> list[str]:
    count = n if isinstance(n, int) and n > 0 else 0
    return [f"{PREFIX}slot:{i}" for i in range(1, count + 1)]


def _counter_keys(identities: Iterable[str]) -> dict[str, list[str]]:
    return {name: [f"{_fn_key(name)}:{f}" for f in FIELDS] for name in identities}


def _collect(keys: dict[str, list[str]], values: dict[str, Any], shared: str) -> dict[str, Stats]:
    found = {}
    for name, names in keys.items():
        counts = {
            f: v for f, k in zip(FIELDS, names, strict=True) if isinstance(v := values.get(k), int)
        }
        found[name] = Stats.from_dict(counts, shared=True, sharing=shared)
    return found


def _identities(slots: dict[str, Any]) -> list[str]:
    return sorted({v for v in slots.values() if isinstance(v, str)})


def shared_stats(cache: BaseCache | str) -> dict[str, Stats]:
    """The totals of every process that shared statistics through ``cache``, by identity.

    ``cache`` is a cache instance or an alias; the identities are
    ``"module:qualname"`` (or the ``name=`` given to ``@cached``). Three reads,
    whatever the number of processes. Raise :class:`NotShareable` for a memory or
    dummy cache, and what the backend raises when it fails.
    """
    found = _shareable(cache)
    slots = found.get_many(_slot_keys(found.get(f"{PREFIX}n")))
    keys = _counter_keys(_identities(slots))
    values = found.get_many([k for names in keys.values() for k in names]) if keys else {}
    return _collect(keys, values, f"totals of every process sharing through {found!r}")


async def ashared_stats(cache: BaseCache | str) -> dict[str, Stats]:
    """The async twin of :func:`shared_stats`."""
    found = _shareable(cache)
    slots = await found.aget_many(_slot_keys(await found.aget(f"{PREFIX}n")))
    keys = _counter_keys(_identities(slots))
    values = await found.aget_many([k for names in keys.values() for k in names]) if keys else {}
    return _collect(keys, values, f"totals of every process sharing through {found!r}")


# -- metrics adapters ------------------------------------------------------------------


def _require(module: str, extra: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"exporting statistics this way needs the {module.partition('.')[0]!r} package, "
            f"which is not installed; install it with: pip install 'memokit[{extra}]'"
        ) from exc


def use_prometheus(registry: Any = None, namespace: str = "memokit") -> PrometheusMetrics:
    """Export statistics to the Prometheus client (``pip install 'memokit[prometheus]'``).

    Registers a collector in ``registry`` (default: the client's global one) that
    reads this process's statistics at each scrape, and a hook that counts breaker
    openings and refresh failures. Return it (``.close()`` undoes both); called again
    for the same registry and namespace, return the one already made.
    """
    _require("prometheus_client", "prometheus")
    from prometheus_client import REGISTRY

    from .stats_prometheus import PrometheusMetrics

    target = REGISTRY if registry is None else registry
    for made in hooks():  # configured twice: one exporter, or every count would show twice
        if isinstance(made, PrometheusMetrics) and made.exports_to(target, namespace):
            return made
    made = PrometheusMetrics(process_stats, registry=target, namespace=namespace)
    add_hook(made)
    return made


def use_opentelemetry(meter_provider: Any = None) -> OpenTelemetryMetrics:
    """Export statistics as OpenTelemetry metrics (``pip install 'memokit[otel]'``).

    Observable counters read this process's statistics at each collection; compute
    time is a histogram, breaker openings and refresh failures counters. The meter
    comes from ``meter_provider`` (default: the global one). Return the hook
    (``.close()`` stops its events and its counts); called again for the same
    provider, return the one already made.
    """
    _require("opentelemetry.metrics", "otel")
    from opentelemetry import metrics

    from .stats_otel import OpenTelemetryMetrics

    provider = metrics.get_meter_provider() if meter_provider is None else meter_provider
    for made in hooks():  # configured twice: one set of instruments, each count once
        if isinstance(made, OpenTelemetryMetrics) and made.provider is provider:
            return made
    made = OpenTelemetryMetrics(process_stats, meter_provider=provider)
    add_hook(made)
    return made
