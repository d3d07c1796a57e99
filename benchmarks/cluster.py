"""Redis Cluster beside a single Redis server (issue 21), in the same run.

- a decorated hit (``@cached``, no tags): one round trip on both, the cluster's
  keys sent with their hash tag;
- ``get_many(100)``: one ``MGET`` on the single server, one pipeline per node
  (three) on the cluster.

The cluster is the test suite's six-node deployment (``memokit.testing.redis_cluster``),
started for this section and stopped after it.
"""

from __future__ import annotations

from typing import Any

from .ops import fmt_ns
from .timing import Candidate, Config, measure

KEYS = [f"bench:key:{i}" for i in range(100)]


def _square(n: int) -> int:
    return n * n


def _group(op: str, caches: list[tuple[str, Any]], config: Config) -> dict[str, Any]:
    from memokit import cached

    candidates = []
    for name, cache in caches:
        if op == "decorated_hit":
            fn = cached(cache=cache, name=f"bench-cluster-{name}")(_square)
            fn(7)
            candidates.append(Candidate(name, "memokit", "f(7)", {"f": fn}))
        else:
            cache.set_many(dict.fromkeys(KEYS, b"x" * 64))
            cache.get_many(KEYS)  # opens a connection to every node
            candidates.append(Candidate(name, "memokit", "c.get_many(K)", {"c": cache, "K": KEYS}))
    results = measure(candidates, config)
    print(f"  {op:<16}" + "  ".join(f"{r['name']}: {fmt_ns(r['median'])}" for r in results))
    return {"op": op, "results": results}


def run(config: Config, redis_server: Any) -> dict[str, Any]:
    """Time both groups on a single server and on a fresh six-node cluster."""
    import memokit
    from memokit.testing import redis_cluster

    with redis_cluster() as cluster:
        single = memokit.create_cache({"BACKEND": "redis", "LOCATION": f"{redis_server.url}/4"})
        on_cluster = memokit.create_cache({"BACKEND": "redis-cluster", "LOCATION": cluster.urls[0]})
        try:
            pair = [("single server", single), ("cluster", on_cluster)]
            groups = [_group(op, pair, config) for op in ("decorated_hit", "get_many_100")]
        finally:
            single.close()
            on_cluster.close()
    return {"kind": "cluster", "groups": groups}
