"""Hot key expiring (issue 18): 50 callers on one key whose entry expires during the run.

Every trial of a candidate: one call computes the entry (its body sleeps 50 ms),
then 50 callers (threads; asyncio tasks for the coroutine candidates) call the
function on that key over and over, with a short pause between calls, from a
common start until a fixed end. The entry turns stale ``FRESH_S`` after it was
made, halfway through; the run ends before a value made at that
expiry could itself expire, so every trial holds exactly one expiry.

Every call's latency is kept with the time it started. The calls that started
before the expiry are the plain hits of the same 50 callers in the same run;
those that started between the expiry and the end of the function's run that
renews the value are the expiring calls, when a caller either waits for the
function or is served the old value. A trial
reports the function's runs (counted in its body), each caller's largest
latency, and the medians of both kinds of call. A trial is bounded: its callers
are joined with a deadline, and a run that overstays it fails the section.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import math
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from itertools import count
from typing import Any

from .timing import Config

CALLERS = 50
BODY_S = 0.05
FRESH_S = 0.15
"""Seconds the entry is fresh: it expires halfway through the run."""
STALE_S = 10.0
"""The stale window of the candidates that have one: longer than the run."""
END_S = 0.3
"""The run ends this long after its start, right after the entry was made: before
FRESH_S + BODY_S + FRESH_S, so a value made at the expiry does not expire again in the run."""
PAUSE_S = 0.002
"""Each caller's pause between calls: 50 callers make about 25,000 calls a second, and a
caller that never paused would measure the interpreter lock's queue, not the cache."""
SETTLE_S = 0.02
"""The calls of the first 20 ms (50 callers getting started) are not counted as plain hits."""
LATENCY_LIMIT_MS = 5.0
"""The issue's bound on every caller's latency: a tenth of the body."""
DEADLINE_S = 30.0
"""A trial whose callers have not all finished by then fails the section."""

THREADS = "threads"
TASKS = "asyncio tasks"

_COUNT_LOCK = threading.Lock()  # module level: memokit keys a closure by what it captures
_serial = count()


def swr_missing() -> str | None:
    """Why memokit's stale-while-revalidate candidates cannot run, or None."""
    import memokit

    if "stale" not in inspect.signature(memokit.cached).parameters:
        return "memokit.cached takes no stale= yet (stale-while-revalidate, issue 18)"
    return None


def _memory_cache() -> Any:
    import memokit

    # A LOCATION of its own per trial: memory caches of one LOCATION share their entries.
    return memokit.create_cache(
        {"BACKEND": "memory", "LOCATION": f"bench-expiring-{next(_serial)}"}
    )


def _memokit(**freshness: float) -> Callable[[Callable[..., Any]], Any]:
    import memokit

    return memokit.cached(timeout=FRESH_S, cache=_memory_cache(), **freshness)


def _dogpile(background: bool) -> Callable[[Callable[..., Any]], Any]:
    from dogpile.cache import make_region

    options: dict[str, Any] = {}
    if background:
        # dogpile's documented runner: the caller that takes the key's lock starts this and
        # returns the old value; the lock is released when the new value is in.
        def runner(cache: Any, key: str, creator: Callable[[], Any], mutex: Any) -> None:
            def refresh() -> None:
                try:
                    cache.set(key, creator())
                finally:
                    mutex.release()

            threading.Thread(target=refresh, daemon=True).start()

        options["async_creation_runner"] = runner
    # The memory backend never drops a value: past expiration_time it is the old value
    # that dogpile serves while one caller regenerates.
    region = make_region(**options).configure("dogpile.cache.memory", expiration_time=FRESH_S)
    return region.cache_on_arguments()


class _Cashews:
    """cashews' ``early``: fresh for ``early_ttl``, then recomputed in a task, kept ``ttl``."""

    def __init__(self) -> None:
        import cashews  # noqa: F401 - a missing peer skips the candidate, not the section

        self.cache: Any = None

    def __call__(self, body: Callable[..., Any]) -> Any:
        from cashews import Cache

        self.cache = Cache()
        self.cache.setup("mem://")
        return self.cache.early(ttl=FRESH_S + STALE_S, early_ttl=FRESH_S)(body)

    async def close(self) -> None:
        await self.cache.close()


@dataclass(frozen=True)
class Candidate:
    name: str
    role: str
    mode: str  # THREADS or TASKS
    make: Callable[[], Callable[[Callable[..., Any]], Any]]
    missing: Callable[[], str | None] = lambda: None


CANDIDATES = [
    Candidate(
        "memokit @cached(stale=) (memory)",
        "memokit",
        THREADS,
        lambda: _memokit(stale=STALE_S),
        swr_missing,
    ),
    Candidate("memokit @cached (memory), no stale window", "memokit", THREADS, _memokit),
    Candidate(
        "memokit @cached(stale=) (memory), coroutine",
        "memokit",
        TASKS,
        lambda: _memokit(stale=STALE_S),
        swr_missing,
    ),
    Candidate("dogpile.cache memory region", "peer", THREADS, lambda: _dogpile(False)),
    Candidate(
        "dogpile.cache memory region + async_creation_runner",
        "peer",
        THREADS,
        lambda: _dogpile(True),
    ),
    Candidate("cashews early (mem://)", "peer", TASKS, _Cashews),
]
"""The candidate whose name comes first is the one the issue's targets read."""

SWR = CANDIDATES[0].name


@dataclass
class Trial:
    runs: list[list[float]]
    """[start, end] of every run of the function after the first computation (end missing
    while it runs); seconds."""
    calls: list[list[tuple[float, float]]]
    """Per caller: (start, latency) of every call, in seconds; starts from the common start."""
    expiry: float
    """When the entry turned stale, in the callers' clock (from the common start)."""
    wrong: int
    """Calls that returned something other than the function's value."""
    counts: dict[str, int]
    """memokit's own freshness counts at the end (none for the peers)."""


def _thread_trial(candidate: Candidate, arg: int) -> Trial:
    runs: list[list[float]] = []

    def body(x: int) -> int:
        span = [time.perf_counter()]
        with _COUNT_LOCK:
            runs.append(span)
        time.sleep(BODY_S)
        span.append(time.perf_counter())
        return x * 2

    f = candidate.make()(body)
    calls: list[list[tuple[float, float]]] = [[] for _ in range(CALLERS)]
    wrong = [0] * CALLERS
    start = [0.0]
    # The callers start first (50 threads take tens of ms to start on a busy machine),
    # then this thread computes the entry and releases them together.
    barrier = threading.Barrier(
        CALLERS + 1, action=lambda: start.__setitem__(0, time.perf_counter())
    )

    def caller(i: int) -> None:
        mine = calls[i]
        barrier.wait(timeout=DEADLINE_S)
        end = start[0] + END_S
        now = time.perf_counter()
        while now < end:
            value = f(arg)
            mine.append((now, time.perf_counter() - now))
            if value != arg * 2:
                wrong[i] += 1
            time.sleep(PAUSE_S)
            now = time.perf_counter()

    workers = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(CALLERS)]
    for w in workers:
        w.start()
    f(arg)
    made = time.perf_counter()
    runs.clear()
    barrier.wait(timeout=DEADLINE_S)
    for w in workers:
        w.join(timeout=max(0.0, made + DEADLINE_S - time.perf_counter()))
    if any(w.is_alive() for w in workers):
        raise RuntimeError(f"{candidate.name}: the callers overstayed {DEADLINE_S} s")
    time.sleep(BODY_S)  # a refresh still under way finishes before the next trial
    trial = Trial(list(runs), calls, made + FRESH_S, sum(wrong), _counts(f))
    return _relative(trial, start[0])


def _task_trial(candidate: Candidate, arg: int) -> Trial:
    return asyncio.run(asyncio.wait_for(_tasks(candidate, arg), DEADLINE_S))


async def _tasks(candidate: Candidate, arg: int) -> Trial:
    runs: list[list[float]] = []

    async def body(x: int) -> int:
        span = [time.perf_counter()]
        runs.append(span)
        await asyncio.sleep(BODY_S)
        span.append(time.perf_counter())
        return x * 2

    decorator = candidate.make()
    f: Callable[[int], Awaitable[int]] = decorator(body)
    try:
        await f(arg)
        made = time.perf_counter()
        runs.clear()
        calls: list[list[tuple[float, float]]] = [[] for _ in range(CALLERS)]
        wrong = [0]

        async def caller(i: int) -> None:
            mine = calls[i]
            now = time.perf_counter()
            while now < end:
                value = await f(arg)
                mine.append((now, time.perf_counter() - now))
                if value != arg * 2:
                    wrong[0] += 1
                await asyncio.sleep(PAUSE_S)
                now = time.perf_counter()

        start = time.perf_counter()
        end = start + END_S
        await asyncio.gather(*(caller(i) for i in range(CALLERS)))
        await asyncio.sleep(BODY_S)  # the refresh task finishes before the loop closes
    finally:
        close = getattr(decorator, "close", None)
        if close is not None:
            await close()
    return _relative(Trial(list(runs), calls, made + FRESH_S, wrong[0], _counts(f)), start)


def _relative(trial: Trial, start: float) -> Trial:
    trial.calls = [[(at - start, lat) for at, lat in mine] for mine in trial.calls]
    trial.runs = [[t - start for t in span] for span in trial.runs]
    trial.expiry -= start
    return trial


def _summary(trial: Trial) -> dict[str, Any]:
    # The expiring calls: from the expiry until the recomputation that it calls for is done.
    ends = [span[1] for span in trial.runs if len(span) == 2 and span[1] >= trial.expiry]
    renewed = min(ends, default=math.inf)
    plain = [lat for mine in trial.calls for at, lat in mine if SETTLE_S <= at < trial.expiry]
    expiring = [lat for mine in trial.calls for at, lat in mine if trial.expiry <= at < renewed]
    if not plain or not expiring:
        raise RuntimeError(
            "no plain or no expiring calls: the callers started too late (a busy machine?)"
        )
    worst = [max(lat for _, lat in mine) * 1e3 for mine in trial.calls if mine]
    return {
        "runs": len(trial.runs),
        "renewed_ms": None if renewed == math.inf else (renewed - trial.expiry) * 1e3,
        "calls": sum(map(len, trial.calls)),
        "wrong": trial.wrong,
        "max_ms": max(worst),
        "callers_over_limit": sum(w >= LATENCY_LIMIT_MS for w in worst),
        "plain_median_us": statistics.median(plain) * 1e6,
        "expiring_median_us": statistics.median(expiring) * 1e6,
        "counts": trial.counts,
    }


def _counts(f: Any) -> dict[str, int]:
    """memokit's own freshness counts, where this version keeps them."""
    state = getattr(f, "_self_wrapper", None)
    names = ("stale_hits", "refreshes", "refresh_failures", "early_recomputations")
    return {n: getattr(state, n) for n in names if isinstance(getattr(state, n, None), int)}


def _missing(candidate: Candidate) -> str | None:
    reason = candidate.missing()
    if reason:
        return reason
    try:
        candidate.make()
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e '.[bench]')"
    return None


def run(config: Config) -> dict[str, Any]:
    """Each candidate's trials, interleaved; the issue's figures per candidate."""
    ready = []
    skipped = []
    for c in CANDIDATES:
        reason = _missing(c)
        if reason:
            print(f"  skipped {c.name}: {reason}", flush=True)
            skipped.append({"name": c.name, "role": c.role, "mode": c.mode, "reason": reason})
        else:
            ready.append(c)
    trials: dict[str, list[dict[str, Any]]] = {c.name: [] for c in ready}
    enabled = gc.isenabled()
    gc.disable()  # as timeit does: a collection is nobody's latency
    try:
        for trial in range(config.expiring_trials):
            for c in ready:
                run_trial = _thread_trial if c.mode == THREADS else _task_trial
                trials[c.name].append(_summary(run_trial(c, 1_000 + trial)))
                gc.collect()
    finally:
        if enabled:
            gc.enable()
    results = []
    for c in ready:
        rows = trials[c.name]
        ratios = [r["expiring_median_us"] / r["plain_median_us"] for r in rows]
        row = {
            "name": c.name,
            "role": c.role,
            "mode": c.mode,
            "trials": rows,
            "runs": [r["runs"] for r in rows],
            "runs_per_expiry": _furthest_from_one([r["runs"] for r in rows]),
            "max_ms": max(r["max_ms"] for r in rows),
            "callers_over_limit": max(r["callers_over_limit"] for r in rows),
            "plain_median_us": statistics.median(r["plain_median_us"] for r in rows),
            "expiring_median_us": statistics.median(r["expiring_median_us"] for r in rows),
            "ratio": statistics.median(ratios),
            "all_correct": not any(r["wrong"] for r in rows),
        }
        results.append(row)
        print(
            f"  {c.name}: runs {row['runs']}, worst caller {row['max_ms']:.1f} ms "
            f"({row['callers_over_limit']} of {CALLERS} over {LATENCY_LIMIT_MS:g} ms), "
            f"median {row['expiring_median_us']:.1f} µs expiring vs "
            f"{row['plain_median_us']:.1f} µs plain ({row['ratio']:.2f}x)",
            flush=True,
        )
    return {
        "kind": "expiring",
        "callers": CALLERS,
        "body_ms": BODY_S * 1e3,
        "fresh_ms": FRESH_S * 1e3,
        "run_ms": END_S * 1e3,
        "pause_ms": PAUSE_S * 1e3,
        "limit_ms": LATENCY_LIMIT_MS,
        "results": results,
        "skipped": skipped,
    }


def _furthest_from_one(runs: list[int]) -> int:
    """The trial's run count that strays furthest from one (the target is exactly one)."""
    return max(runs, key=lambda n: abs(n - 1))
