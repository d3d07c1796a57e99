"""Memoised calls: hit overhead beside the peers, cached_property hits, cold-key stampede."""

from __future__ import annotations

import functools
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .timing import Candidate, Config, measure

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _memokit_cached() -> Decorator:
    import memokit

    cache = memokit.create_cache(
        {"BACKEND": "memory", "LOCATION": "bench-decorators", "OPTIONS": {"MAX_ENTRIES": 10_000}}
    )
    return memokit.cached(timeout=300, cache=cache)


def _dict_memo() -> Decorator:
    # The floor for a decorator written in Python: one dict lookup per hit.
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        memo: dict[Any, Any] = {}

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = (args, tuple(sorted(kwargs.items()))) if kwargs else args
            try:
                return memo[key]
            except KeyError:
                memo[key] = value = fn(*args, **kwargs)
                return value

        return wrapper

    return decorate


def _cachetools(**lock: Any) -> Decorator:
    import cachetools

    return cachetools.cached(cachetools.TTLCache(10_000, 300), **lock)


def _django_naive() -> Decorator:
    # What a Django user writes by hand: get with a sentinel, else compute and set.
    from .env import django_cache

    cache = django_cache("django.core.cache.backends.locmem.LocMemCache", "bench-naive")
    missing = object()

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        prefix = fn.__qualname__

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            # No spaces: Django warns about keys memcached cannot take, on every call.
            key = ":".join([prefix, *map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
            value = cache.get(key, missing)
            if value is missing:
                value = fn(*args, **kwargs)
                cache.set(key, value, 300)
            return value

        return wrapper

    return decorate


def _dogpile() -> Decorator:
    from dogpile.cache import make_region
    from dogpile.cache.util import kwarg_function_key_generator

    # The default key generator refuses keyword arguments; this one is dogpile's own answer.
    region = make_region(function_key_generator=kwarg_function_key_generator).configure(
        "dogpile.cache.memory", expiration_time=300
    )
    return region.cache_on_arguments()


def _cachebox() -> Decorator:
    # Rust-backed; its own lock per cache, mutable results copied (its defaults).
    import cachebox

    decorate: Decorator = cachebox.cached(cachebox.TTLCache(10_000, 300))
    return decorate


def _moka() -> Decorator:
    # Rust-backed (the moka crate): a concurrent cache, TinyLFU admission.
    import moka_py

    decorate: Decorator = moka_py.cached(10_000, ttl=300)
    return decorate


CACHEBOX = "cachebox TTLCache"
MOKA = "moka-py"

HIT_CANDIDATES: list[tuple[str, str, Callable[[], Decorator]]] = [
    ("memokit @cached (memory)", "memokit", _memokit_cached),
    ("Django LocMemCache + naive decorator", "django", _django_naive),
    ("cachetools TTLCache + Lock", "peer", lambda: _cachetools(lock=threading.Lock())),
    (CACHEBOX, "peer", _cachebox),
    (MOKA, "peer", _moka),
    ("dogpile.cache memory region", "peer", _dogpile),
    ("functools.lru_cache", "floor", lambda: functools.lru_cache(maxsize=10_000)),
    ("py dict-memo decorator", "floor", _dict_memo),
]
"""Name, role, and a factory of the decorator (a fresh one per candidate)."""

CALLS = {"positional": "f(7)", "keyword": "f(7, y=2)", "method": "o.m(7)"}


def _body(x: int, y: int = 1) -> int:
    return x + y


def _method(self: Any, x: int, y: int = 1) -> int:
    return x + y


def _holder(serial: int, method: Callable[..., Any]) -> Any:
    """An instance of a class with ``m`` = the decorated method, identified by a constant."""
    name = f"MethodHolder{serial}"
    namespace = {"m": method, "__cache_key__": _constant_key, "__module__": __name__}
    # A repr without spaces: the naive Django decorator puts it in the key.
    namespace["__repr__"] = lambda self: name
    cls = type(name, (), namespace)
    # memokit keys a class by module and qualified name: give it one that leads back to it.
    globals()[name] = cls
    return cls()


def _constant_key(self: Any) -> int:
    return 1


def run_hits(config: Config) -> dict[str, Any]:
    """Hit cost of each decorator on ``f(x, y=1)`` (positional, keyword) and a bound method."""
    functions = {}
    holders = {}
    for serial, (name, _, factory) in enumerate(HIT_CANDIDATES):
        f = factory()(_body)
        f(7)
        f(7, y=2)
        functions[name] = f
        o = holders[name] = _holder(serial, factory()(_method))
        o.m(7)
    groups = []
    for label, stmt in CALLS.items():
        candidates = [
            Candidate(name, role, stmt, {"f": functions[name], "o": holders[name]})
            for name, role, _ in HIT_CANDIDATES
        ]
        results = measure(candidates, config)
        groups.append({"op": label, "stmt": stmt, "results": results})
        print(f"  {stmt:<11}" + "  ".join(f"{r['name']}: {r['median']:.0f} ns" for r in results))
    return {"kind": "hits", "groups": groups}


def run_cached_property(config: Config) -> dict[str, Any]:
    """A hit of ``memokit.cached_property`` beside ``functools`` and a plain attribute."""
    import memokit

    class Plain:
        def __init__(self) -> None:
            self.p = 1

    class Functools:
        @functools.cached_property
        def p(self) -> int:
            return 1

    class Memokit:
        @memokit.cached_property
        def p(self) -> int:
            return 1

    objects = [
        ("memokit.cached_property", "memokit", Memokit()),
        ("functools.cached_property", "peer", Functools()),
        ("plain attribute", "floor", Plain()),
    ]
    for _, _, obj in objects:
        obj.p  # noqa: B018 - the first read computes; hits are timed
    candidates = [Candidate(name, role, "o.p", {"o": obj}) for name, role, obj in objects]
    results = measure(candidates, config)
    print("  o.p        " + "  ".join(f"{r['name']}: {r['median']:.0f} ns" for r in results))
    return {"kind": "hits", "groups": [{"op": "hit", "stmt": "o.p", "results": results}]}


STATS_OFF = "statistics off"
STATS_ON = "statistics on, shared every 10 s"


def run_stats(config: Config, workdir: Path) -> dict[str, Any]:
    """A ``@cached`` hit with statistics off and on (issue 20: at most 3% apart).

    "On" shares every 10 s, the hit path's whole cost of statistics: a hit whose
    counts can be shared reads the clock to see whether its flush is due. A memory
    cache cannot share, so its hits skip that (the memory groups show it costs
    nothing); a SQLite hit reads the clock. "Off" is a function of the same cache
    whose flushes are off, as with ``configure_stats(share=False)``: both run in
    one interleaved group, so one function's flag is set by hand.
    """
    import memokit
    from memokit import stats

    memory = memokit.create_cache(
        {"BACKEND": "memory", "LOCATION": "bench-stats", "OPTIONS": {"MAX_ENTRIES": 10_000}}
    )
    sqlite = memokit.create_cache(
        {"BACKEND": "sqlite", "LOCATION": str(workdir / "bench-stats.sqlite3")}
    )
    before = stats.stats_settings()
    stats.configure_stats(enabled=True, share=True, flush_interval=10)
    groups = []
    try:
        for op, cache, stmt in (
            ("positional", memory, CALLS["positional"]),
            ("keyword", memory, CALLS["keyword"]),
            ("sqlite positional", sqlite, "sqlite_f(7)"),
        ):
            on = memokit.cached(timeout=300, cache=cache, name=f"bench:on:{op}")(_body)
            off = memokit.cached(timeout=300, cache=cache, name=f"bench:off:{op}")(_body)
            off._state.due = 0.0  # this function's counts are not shared
            for f in (on, off):
                f(7)
                f(7, y=2)
            candidates = [
                Candidate(STATS_ON, "memokit", stmt, {"f": on, "sqlite_f": on}),
                Candidate(STATS_OFF, "floor", stmt, {"f": off, "sqlite_f": off}),
            ]
            results = measure(candidates, config)
            groups.append({"op": op, "stmt": stmt, "results": results})
            shown = "  ".join(f"{r['name']}: {r['median']:.0f} ns" for r in results)
            print(f"  {op:<18}{shown}")
    finally:
        stats.configure_stats(
            enabled=before.enabled, share=before.share, flush_interval=before.flush_interval
        )
        sqlite.close()
    return {"kind": "hits", "groups": groups}


STAMPEDE_CALLERS = 50
BODY_S = 0.05

STAMPEDE_CANDIDATES: list[tuple[str, str, Callable[[], Decorator]]] = [
    ("memokit @cached (memory)", "memokit", _memokit_cached),
    ("Django LocMemCache + naive decorator", "django", _django_naive),
    ("cachetools TTLCache + Lock", "peer", lambda: _cachetools(lock=threading.Lock())),
    (
        "cachetools TTLCache + Condition",
        "peer",
        lambda: _cachetools(condition=threading.Condition()),
    ),
    ("dogpile.cache memory region", "peer", _dogpile),
    ("functools.lru_cache", "peer", lambda: functools.lru_cache(maxsize=10_000)),
]


# Module level, not captured by the body: memokit keys a nested function by what
# it captures, and a lock has no key.
_COUNT_LOCK = threading.Lock()


def _trial(factory: Callable[[], Decorator], arg: int) -> tuple[int, float, bool]:
    runs = [0]

    def body(x: int) -> int:
        with _COUNT_LOCK:
            runs[0] += 1
        time.sleep(BODY_S)
        return x * 2

    f = factory()(body)
    results: list[Any] = [None] * STAMPEDE_CALLERS
    start = [0.0]
    barrier = threading.Barrier(
        STAMPEDE_CALLERS, action=lambda: start.__setitem__(0, time.perf_counter())
    )

    def call(i: int) -> None:
        barrier.wait()
        results[i] = f(arg)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(STAMPEDE_CALLERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start[0]
    return runs[0], wall, all(r == arg * 2 for r in results)


def run_stampede(config: Config) -> dict[str, Any]:
    """50 threads call one memoised function on one cold key at once, per candidate."""
    trials: dict[str, list[tuple[int, float, bool]]] = {n: [] for n, _, _ in STAMPEDE_CANDIDATES}
    for trial in range(config.stampede_trials):
        for name, _, factory in STAMPEDE_CANDIDATES:
            trials[name].append(_trial(factory, 1_000 + trial))
    results = []
    for name, role, _ in STAMPEDE_CANDIDATES:
        runs = [t[0] for t in trials[name]]
        walls = [t[1] * 1_000 for t in trials[name]]
        row = {
            "name": name,
            "role": role,
            "runs": runs,
            "wall_ms": [round(w, 1) for w in walls],
            "median_runs": statistics.median(runs),
            "median_wall_ms": statistics.median(walls),
            "wall_ratio": statistics.median(walls) / (BODY_S * 1_000),
            "all_correct": all(t[2] for t in trials[name]),
        }
        results.append(row)
        print(
            f"  {name}: body ran {runs}, wall {row['median_wall_ms']:.0f} ms "
            f"({row['wall_ratio']:.2f}x the body)"
        )
    return {
        "kind": "stampede",
        "body_ms": BODY_S * 1_000,
        "callers": STAMPEDE_CALLERS,
        "results": results,
    }
