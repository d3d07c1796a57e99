"""The state one decorated function keeps: its settings, counters and flights.

Every binding of a ``@cached`` function shares one :class:`CachedState`: the
hit path (:mod:`memokit.wrappers`) and the miss path (:mod:`memokit.misses`)
read and count through it, and the counters' read plan (:mod:`memokit.counters`)
is cached on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeVar

from .backends.base import BaseCache
from .config import caches
from .freshness import NO_POLICY, Policy, TimeoutSpec
from .resilience import is_value_failure
from .singleflight import AsyncSingleFlight, SingleFlight
from .stats_hooks import BOUNDS
from .switches import GATE, helper_cache, routed
from .timeouts import DEFAULT_TIMEOUT

if TYPE_CHECKING:
    # Typing only: the counters module reads this state (see docs/architecture.md).
    from .counters import ReadPlan, TagsBuilder
    from .fastindex import FastIndex
    from .keybuilders import KeyBuilder
    from .locks import BackendLock

T = TypeVar("T")

_BUCKETS: Final = len(BOUNDS) + 1
"""Buckets of the compute-time histogram: one per bound, and one above."""


class ErrorCounts(int):
    """The ``errors`` of :class:`CacheInfo`: their total, an ``int``, told apart by kind."""

    backend: int
    """Backend failures (connect, timeout, disk full, locked database): they feed the breaker."""
    value: int
    """Value failures (an entry that could not be read, a value the backend could not
    hold, a result the serializer could not encode): they concern one key only."""

    def __new__(cls, backend: int = 0, value: int = 0) -> ErrorCounts:
        made = super().__new__(cls, backend + value)
        made.backend = backend
        made.value = value
        return made

    def __repr__(self) -> str:
        return f"ErrorCounts(backend={self.backend}, value={self.value})"

    def __reduce__(self) -> tuple[type[ErrorCounts], tuple[int, int]]:
        return (ErrorCounts, (self.backend, self.value))


class CacheInfo(NamedTuple):
    """Counters of one decorated function, as ``functools.lru_cache`` users know them."""

    hits: int
    """Calls served from the cache."""
    misses: int
    """Calls that ran the function."""
    errors: int
    """Failed cache operations: an :class:`ErrorCounts`, whose ``backend`` and
    ``value`` attributes tell backend failures from value failures."""


class CachedState:
    """What every binding of one decorated function shares: settings and counters."""

    __slots__ = (
        "__weakref__",
        "aflights",
        "alias",
        "binding",
        "bound_cls",
        "build",
        "cache",
        "class_body",
        "compute_buckets",
        "compute_count",
        "compute_ns",
        "counter_names",
        "due",
        "early_recomputations",
        "errors",
        "fast",
        "flights",
        "flushed",
        "func",
        "hits",
        "identity",
        "index",
        "lock",
        "misses",
        "name",
        "none_timeout",
        "owner",
        "policy",
        "refresh_failures",
        "refreshes",
        "safe_keys",
        "stale_hits",
        "tags",
        "tier_hits",
        "timeout",
        "unbound",
        "unbound_type",
        "unless",
        "value_errors",
        "version",
    )

    def __init__(
        self,
        func: Callable[..., Any],
        binding: str,
        build: KeyBuilder,
        cache: BaseCache | None,
        alias: str,
        timeout: TimeoutSpec,
        none_timeout: TimeoutSpec,
        version: int | None,
        unless: Callable[[Any], object] | None,
        safe_keys: bool,
        lock: BackendLock | None = None,
        counter_names: list[str] | None = None,
        tags: TagsBuilder | None = None,
        policy: Policy = NO_POLICY,
    ) -> None:
        self.func = func
        self.safe_keys = safe_keys  # keys come from the default builder: clean, <= 200
        self.binding = binding  # "instance", "class" or "none"
        self.build = build
        self.cache = cache
        self.alias = alias
        self.timeout = timeout
        self.none_timeout = none_timeout
        self.version = version
        self.unless = unless
        self.unbound: Any = None
        self.unbound_type: type[Any] | None = None  # its class (memokit.wrappers' hit path)
        # The class of a bound object (a wrapt.BoundFunctionWrapper subclass), set by wrap().
        self.bound_cls: Any = None
        # The attribute the function is reached by on its class (__set_name__),
        # so that a bound object pickles as getattr(instance, name).
        self.name: str = getattr(func, "__name__", "")
        self.owner: type[Any] | None = None  # the class whose body assigned it
        # The namespace of the class body it was decorated in, if any: where a
        # classmethod above @cached is found on Python 3.13 (memokit.wrappers).
        self.class_body: dict[str, Any] | None = None
        # The counters every call reads with its entry (see memokit.counters):
        # the function's own first, then fixed tags; per-call tags from `tags`.
        self.counter_names = counter_names or []
        self.tags = tags
        self.hits = 0
        self.misses = 0
        self.errors = 0  # backend failures
        self.value_errors = 0  # value failures (memokit.resilience)
        self.tier_hits = 0  # reads tier one answered alone (memokit.backends.tiered)
        # Freshness (memokit.freshness) and its counts.
        self.policy = policy
        self.stale_hits = 0  # hits served past the fresh time, within the stale window
        self.refreshes = 0  # background refreshes that ran the function
        self.refresh_failures = 0  # background refreshes that failed (the stale value stayed)
        self.early_recomputations = 0  # fresh hits that started an early recomputation
        # Statistics (memokit.stats): compute time on the miss path, and sharing.
        self.identity = f"{getattr(func, '__module__', None)}:{getattr(func, '__qualname__', func)}"
        self.compute_count = 0
        self.compute_ns = 0
        self.compute_buckets = [0] * _BUCKETS
        # time.monotonic() of the next flush of shared totals; 0.0 while not shared,
        # so the hit path tests one float (memokit.wrappers).
        self.due = 0.0
        self.flushed: dict[str, int] = {}  # the totals already added to the shared ones
        # How calls read the current cache (made-key prefixes, primitives);
        # rebuilt by counters.plan_for when the cache or its prefix changes.
        self.fast: ReadPlan | None = None
        # The fast index (memokit.fastindex) of calls of scalars, made by the first
        # string-key hit on a store that offers one; None until then.
        self.index: FastIndex | None = None
        # Single flight (memokit.singleflight), and the opt-in lock in the backend.
        self.flights = SingleFlight()
        self.aflights = AsyncSingleFlight()
        self.lock = lock

    def resolve(self) -> BaseCache:
        """The cache calls use now: a switch's (memokit.switches), else the function's."""
        switched = routed() if GATE.on else None
        if switched is not None:
            return switched
        return self.cache if self.cache is not None else caches[self.alias]

    def target(self) -> BaseCache:
        """The cache invalidation helpers act on: never the dummy of caching_disabled()."""
        switched = helper_cache() if GATE.on else None
        if switched is not None:
            return switched
        return self.cache if self.cache is not None else caches[self.alias]

    @property
    def cycles(self) -> int:
        """Callers that computed for themselves because waiting would close a cycle."""
        return self.flights.cycles + self.aflights.cycles

    def timeout_for(self, value: Any) -> TimeoutSpec:
        return self.none_timeout if value is None else self.timeout

    def counter_seconds(self, cache: BaseCache) -> float | None:
        """Seconds the function's counters live in ``cache``: as long as its entries are kept.

        A callable timeout gives each entry its own; the counters then live for
        the cache's default timeout (a counter lost earlier costs a miss, never a
        wrong value).
        """
        timeout = self.timeout
        seconds = cache._seconds(DEFAULT_TIMEOUT if callable(timeout) else timeout)
        return self.policy.counter_seconds(seconds)


def _count(state: CachedState, exc: BaseException) -> None:
    if is_value_failure(exc):
        state.value_errors += 1
    else:
        state.errors += 1


def _counted(state: CachedState, operation: Callable[[], T]) -> T:
    try:
        return operation()
    except Exception as exc:
        _count(state, exc)
        raise
