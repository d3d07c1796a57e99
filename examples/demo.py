"""memokit in one minute, on the embedded default backend (no configuration needed).

Run it with ``python examples/demo.py``. It checks what it shows, so it doubles
as a test: a miss, a hit, an expiry, get_or_set, counters and versions.
"""

from __future__ import annotations

import time

import memokit
from memokit import cache


def slow_square(n: int) -> int:
    time.sleep(0.2)  # stands for an expensive computation or a slow query
    return n * n


def main() -> None:
    # A miss, then a hit.
    assert cache.get("square:12") is None
    print("miss: square:12 is not cached yet")
    started = time.perf_counter()
    value = cache.get_or_set("square:12", lambda: slow_square(12), timeout=1)
    computed_in = time.perf_counter() - started
    started = time.perf_counter()
    again = cache.get_or_set("square:12", lambda: slow_square(12), timeout=1)
    served_in = time.perf_counter() - started
    assert value == again == 144
    assert served_in < computed_in
    print(f"hit:  square:12 = {again} in {served_in * 1e6:.0f} µs, computed in {computed_in:.2f} s")

    # An expiry: the entry lived for one second.
    time.sleep(1.1)
    assert cache.get("square:12") is None
    print("expired: square:12 is gone after its 1 s timeout")

    # Counters keep their expiry; a missing counter is an error, as in Django.
    cache.set("visits", 0, timeout=None)
    cache.incr("visits")
    assert cache.incr("visits", 10) == 11
    print(f"counter: visits = {cache.get('visits')}")

    # Versions let a deploy drop old entries without touching them.
    cache.set("config", {"theme": "dark"}, version=1)
    assert cache.get("config", version=2) is None
    print("versions: config@1 is invisible to readers of version 2")

    # Values are copies: mutating what you got never changes the cache.
    cache.get("config", version=1)["theme"] = "light"
    assert cache.get("config", version=1) == {"theme": "dark"}
    print(f"isolation: config@1 is still {cache.get('config', version=1)}")
    print(f"backend: {memokit.caches['default']!r}")


if __name__ == "__main__":
    main()
