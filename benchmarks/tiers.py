"""Two tiers (issue 19): tier one in this process in front of Redis.

- a decorated hit (``@cached``, ``f(7)``) through tier one beside the same hit on
  the memory backend and on Redis without a tier;
- the invalidation latency another process sees: process B reads ``f(1)`` in a
  loop through tier one (the default bound, 1 s); this process invalidates and
  times until B serves the recomputed value;
- Redis round trips per 1,000 decorated hits spread over about a second, with and
  without tier one (counted by the server, ``INFO commandstats``).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .ops import fmt_ns
from .timing import Candidate, Config, measure

BOUND = 1.0
_CHILD = """
import sys, time, memokit
memokit.configure({"default": {"BACKEND": "redis", "LOCATION": sys.argv[1], "TIER": {"BOUND": %r}}})
@memokit.cached(name="bench-tiers-latency")
def f(x):
    return time.time_ns()
last = f(1)
print("ready", flush=True)
while True:
    value = f(1)
    if value != last:
        last = value
        print(repr(time.monotonic()), flush=True)
    time.sleep(0.0005)
"""


def _square(n: int) -> int:
    return n * n


def _now(x: int) -> int:
    return time.time_ns()


def _hits(url: str, config: Config) -> dict[str, Any]:
    import memokit

    caches = [
        ("memory", memokit.create_cache({"BACKEND": "memory", "LOCATION": "bench-tiers"})),
        (
            "tier one over redis",
            memokit.create_cache({"BACKEND": "redis", "LOCATION": url, "TIER": {"BOUND": BOUND}}),
        ),
        ("redis", memokit.create_cache({"BACKEND": "redis", "LOCATION": url})),
    ]
    candidates = []
    for name, cache in caches:
        fn = memokit.cached(cache=cache, name=f"bench-tiers-{name}")(_square)
        fn(7)
        fn(7)
        candidates.append(Candidate(name, "memokit", "f(7)", {"f": fn}))
    results = measure(candidates, config)
    print("  decorated_hit   " + "  ".join(f"{r['name']}: {fmt_ns(r['median'])}" for r in results))
    return {"op": "decorated_hit", "results": results}


def _latency(url: str, rounds: int) -> dict[str, Any]:
    import memokit

    cache = memokit.create_cache({"BACKEND": "redis", "LOCATION": url})
    fn = memokit.cached(cache=cache, name="bench-tiers-latency")(_now)
    env = {**os.environ, "PYTHONPATH": str(Path(memokit.__file__).resolve().parent.parent)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD % BOUND, url],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    seen = []
    try:
        assert child.stdout.readline().strip() == "ready"
        rng = random.Random(19)
        for _ in range(rounds):
            # At a random point of the reader's bound, as an invalidation would come.
            time.sleep(rng.uniform(0, BOUND))
            fn.invalidate_all()
            done = time.monotonic()
            seen.append(float(child.stdout.readline()) - done)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
        cache.close()
    seen.sort()
    result = {
        "rounds": rounds,
        "median_ms": seen[len(seen) // 2] * 1e3,
        "max_ms": seen[-1] * 1e3,
        "bound_ms": BOUND * 1e3,
    }
    print(
        f"  invalidation seen by another process: median {result['median_ms']:.0f} ms, "
        f"max {result['max_ms']:.0f} ms (bound {BOUND * 1e3:.0f} ms)"
    )
    return result


def _round_trips(url: str, calls: int = 1000, spread_s: float = 1.0) -> dict[str, Any]:
    import redis

    import memokit

    client = redis.Redis.from_url(url)
    counts = {}
    for name, tier in (("without tier", None), ("with tier one", {"BOUND": BOUND})):
        settings: dict[str, Any] = {"BACKEND": "redis", "LOCATION": url}
        if tier is not None:
            settings["TIER"] = tier
        cache = memokit.create_cache(settings)
        fn = memokit.cached(cache=cache, name=f"bench-tiers-trips-{name}")(_square)
        fn(7)
        before = _commands(client)
        pause = spread_s / calls
        for _ in range(calls):
            fn(7)
            time.sleep(pause)
        counts[name] = _commands(client) - before - 1  # the INFO call itself
        cache.close()
    client.close()
    saved = (counts["without tier"] - counts["with tier one"]) * 1000 / calls
    print(
        f"  round trips per {calls} hits over {spread_s:.0f} s: {counts}; "
        f"saved per 1,000: {saved:.0f}"
    )
    return {"calls": calls, "spread_s": spread_s, "counts": counts, "saved_per_1000": saved}


def _commands(client: Any) -> int:
    return sum(int(v["calls"]) for v in client.info("commandstats").values())


def run(config: Config, redis_server: Any) -> dict[str, Any]:
    """Time the hits, the latency another process sees, and the round trips saved."""
    url = f"{redis_server.url}/5"
    rounds = 5 if config.repeats <= 3 else 10
    return {
        "kind": "tiers",
        "groups": [_hits(url, config)],
        "latency": _latency(url, rounds),
        "round_trips": _round_trips(url),
    }
