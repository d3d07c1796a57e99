"""Memory per entry for 100,000 small values, one fresh interpreter per structure.

Run by the harness as ``python -m benchmarks.footprint NAME COUNT``; prints one
JSON line. Key ``"key:<i>"``, value ``{"id": i, "name": "name-<i>"}``; the figure
is what ``tracemalloc`` sees retained after the fill, divided by the count
(keys included; memory held by C libraries, such as SQLite's, is not seen).
"""

from __future__ import annotations

import functools
import gc
import json
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from typing import Any

from .timing import Config


def _dict() -> Callable[[str, Any], None]:
    d: dict[str, Any] = {}
    return d.__setitem__


def _lru() -> Callable[[str, Any], None]:
    @functools.cache
    def f(key: str) -> Any:
        return current[0]

    current: list[Any] = [None]

    def put(key: str, value: Any) -> None:
        current[0] = value
        f(key)

    return put


def _ttl() -> Callable[[str, Any], None]:
    import cachetools

    return cachetools.TTLCache(maxsize=1_000_000, ttl=300).__setitem__


def _locmem() -> Callable[[str, Any], None]:
    from django.conf import settings

    settings.configure()
    from django.core.cache.backends.locmem import LocMemCache

    return LocMemCache("footprint", {"OPTIONS": {"MAX_ENTRIES": 1_000_000}}).set


def _cachelib() -> Callable[[str, Any], None]:
    import cachelib

    return cachelib.SimpleCache(threshold=1_000_000, default_timeout=300).set


def _memokit() -> Callable[[str, Any], None]:
    import memokit

    cache = memokit.create_cache(
        {"BACKEND": "memory", "LOCATION": "footprint", "OPTIONS": {"MAX_ENTRIES": 1_000_000}}
    )
    return cache.set


STRUCTURES: dict[str, tuple[str, Callable[[], Callable[[str, Any], None]]]] = {
    "memokit memory": ("memokit", _memokit),
    "Django LocMemCache": ("django", _locmem),
    "cachelib SimpleCache": ("peer", _cachelib),
    "cachetools TTLCache": ("peer", _ttl),
    "functools.lru_cache": ("peer", _lru),
    "dict of objects": ("floor", _dict),
}


def measure_one(name: str, count: int) -> dict[str, float]:
    """Bytes per entry retained after ``count`` sets into a fresh structure."""
    put = STRUCTURES[name][1]()
    put("warm-up", {"id": -1, "name": "warm-up"})  # first-call allocations are not per entry
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(count):
        put(f"key:{i}", {"id": i, "name": f"name-{i}"})
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "bytes_per_entry": (current - before) / count,
        "peak_per_entry": (peak - before) / count,
    }


def run(config: Config) -> dict[str, Any]:
    """Each structure in its own interpreter, so that one's leftovers do not count for another."""
    from .env import python_path

    results = []
    for name, (role, _) in STRUCTURES.items():
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.footprint", name, str(config.footprint_entries)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
            env={**os.environ, "PYTHONPATH": python_path()},
        )
        row = {"name": name, "role": role, **json.loads(out.stdout)}
        results.append(row)
        print(f"  {name}: {row['bytes_per_entry']:.0f} B/entry (peak {row['peak_per_entry']:.0f})")
    return {"kind": "footprint", "entries": config.footprint_entries, "results": results}


if __name__ == "__main__":
    print(json.dumps(measure_one(sys.argv[1], int(sys.argv[2]))))
