"""Statistics as Prometheus metrics (the ``prometheus`` extra; imported only when used).

Made by :func:`memokit.stats.use_prometheus`. A collector reads this process's
statistics at each scrape (nothing is counted twice, nothing on the hit path),
and the hook counts what only an event tells: breaker openings and refresh
failures. Every metric has a ``function`` label (``module:qualname``), the
breaker's a ``cache`` label.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from .stats_hooks import BOUNDS, MetricsHook, remove_hook

if TYPE_CHECKING:
    from .stats import Stats

_COUNTERS = (
    ("hits", "Calls served from the cache"),
    ("misses", "Calls that ran the function"),
    ("stale_hits", "Calls served an expired entry while it was recomputed"),
    ("refreshes", "Entries recomputed while served stale or ahead of expiry"),
    ("refresh_failures", "Recomputations ahead of expiry that raised"),
    ("early_recomputations", "Entries recomputed before their expiry"),
    ("backend_errors", "Backend failures (connect, timeout, disk full)"),
    ("value_errors", "Value failures (unreadable entry, value too large)"),
)


class PrometheusMetrics(MetricsHook, Collector):
    """A Prometheus collector of memokit's statistics, and the hook of its events."""

    def __init__(
        self,
        read: Callable[[], Mapping[str, Stats]],
        registry: CollectorRegistry | None = None,
        namespace: str = "memokit",
    ) -> None:
        if not isinstance(namespace, str) or not namespace.isidentifier():
            raise ValueError(
                f"namespace must be a metric name prefix such as 'memokit', not {namespace!r}"
            )
        self._read = read
        self._namespace = namespace
        self._lock = threading.Lock()
        self._opened: dict[str, int] = {}
        self._failed: dict[str, int] = {}
        self._registry = REGISTRY if registry is None else registry
        self._registry.register(self)

    def collect(self) -> Iterator[Metric]:
        """The metrics of this process now (called by the client at each scrape)."""
        ns = self._namespace
        current = self._read()
        for name, doc in _COUNTERS:
            family = CounterMetricFamily(f"{ns}_{name}", doc, labels=["function"])
            for function, stats in sorted(current.items()):
                family.add_metric([function], getattr(stats, name))
            yield family
        seconds = HistogramMetricFamily(
            f"{ns}_compute_seconds", "Time the function ran on misses", labels=["function"]
        )
        for function, stats in sorted(current.items()):
            seconds.add_metric([function], _cumulative(stats), stats.compute.total)
        yield seconds
        with self._lock:
            opened, failed = dict(self._opened), dict(self._failed)
        trips = CounterMetricFamily(
            f"{ns}_breaker_openings", "Times a cache's circuit breaker opened", labels=["cache"]
        )
        for cache, count in sorted(opened.items()):
            trips.add_metric([cache], count)
        yield trips
        refresh = CounterMetricFamily(
            f"{ns}_refresh_failure_events",
            "Failed refreshes reported through the hook",
            labels=["function"],
        )
        for function, count in sorted(failed.items()):
            refresh.add_metric([function], count)
        yield refresh

    def breaker_opened(self, cache: str, error: BaseException) -> None:
        with self._lock:
            self._opened[cache] = self._opened.get(cache, 0) + 1

    def refresh_failed(self, function: str, error: BaseException) -> None:
        with self._lock:
            self._failed[function] = self._failed.get(function, 0) + 1

    def exports_to(self, registry: CollectorRegistry, namespace: str) -> bool:
        """Whether this collector serves ``registry`` under ``namespace``."""
        return self._registry is registry and self._namespace == namespace

    def close(self) -> None:
        """Unregister the collector and stop receiving events."""
        remove_hook(self)
        self._registry.unregister(self)


def _cumulative(stats: Stats) -> list[tuple[str, float]]:
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip((*BOUNDS, float("inf")), stats.compute.buckets, strict=True):
        running += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
    return buckets
