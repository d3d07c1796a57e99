"""Statistics as OpenTelemetry metrics (the ``otel`` extra; imported only when used).

Made by :func:`memokit.stats.use_opentelemetry`. Observable counters read this
process's statistics at each collection (nothing on the hit path); compute time
is a histogram recorded on each miss; breaker openings and refresh failures are
counters fed by the hook. Attributes: ``function`` (``module:qualname``) and
``cache``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from opentelemetry import metrics

from ._version import __version__
from .stats_hooks import MetricsHook, remove_hook

if TYPE_CHECKING:
    from .stats import Stats

_COUNTERS = (
    ("hits", "Calls served from the cache"),
    ("misses", "Calls that ran the function"),
    ("stale_hits", "Calls served an expired entry while it was recomputed"),
    ("refreshes", "Entries recomputed while served stale or ahead of expiry"),
    ("early_recomputations", "Entries recomputed before their expiry"),
    ("backend_errors", "Backend failures (connect, timeout, disk full)"),
    ("value_errors", "Value failures (unreadable entry, value too large)"),
)


class OpenTelemetryMetrics(MetricsHook):
    """memokit's statistics as instruments of one OpenTelemetry meter."""

    def __init__(
        self,
        read: Callable[[], Mapping[str, Stats]],
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        provider = metrics.get_meter_provider() if meter_provider is None else meter_provider
        self.provider = provider
        """The meter provider of the instruments."""
        meter = provider.get_meter("memokit", __version__)
        self._read = read
        self._closed = False
        for name, doc in _COUNTERS:
            meter.create_observable_counter(
                f"memokit.{name}", callbacks=[self._observer(name)], unit="{call}", description=doc
            )
        self._compute = meter.create_histogram(
            "memokit.compute.duration", unit="s", description="Time the function ran on misses"
        )
        self._opened = meter.create_counter(
            "memokit.breaker.openings", unit="{opening}", description="Circuit breaker openings"
        )
        self._failed = meter.create_counter(
            "memokit.refresh_failures",
            unit="{refresh}",
            description="Recomputations ahead of expiry that raised",
        )

    def _observer(
        self, name: str
    ) -> Callable[[metrics.CallbackOptions], Iterable[metrics.Observation]]:
        def observe(options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
            if self._closed:  # an instrument outlives its hook: it observes nothing then
                return []
            return [
                metrics.Observation(getattr(stats, name), {"function": function})
                for function, stats in self._read().items()
            ]

        return observe

    def computed(self, function: str, seconds: float) -> None:
        self._compute.record(seconds, {"function": function})

    def breaker_opened(self, cache: str, error: BaseException) -> None:
        self._opened.add(1, {"cache": cache})

    def refresh_failed(self, function: str, error: BaseException) -> None:
        self._failed.add(1, {"function": function})

    def close(self) -> None:
        """Stop receiving events and observing counts (the instruments stay with their
        meter, empty: OpenTelemetry cannot remove an instrument)."""
        self._closed = True
        remove_hook(self)
