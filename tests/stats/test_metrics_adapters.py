"""The OpenTelemetry and Prometheus adapters, against the real SDK and client (issue 20)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import memokit
from memokit import stats
from memokit.resilience import BreakerSettings, CircuitBreaker


def _counted(name: str) -> memokit.CachedFunction[[int], int]:
    cache = memokit.create_cache({"BACKEND": "memory", "LOCATION": f"adapters-{name}"})
    cache.clear()

    @memokit.cached(cache=cache, name=name)
    def f(x: int) -> int:
        return x

    f(1)
    f(1)
    f(2)
    return f


def test_import_memokit_imports_neither_metrics_package() -> None:
    code = (
        "import sys, memokit, memokit.stats; "
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'prometheus'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_prometheus_collector_reads_stats_at_scrape() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    f = _counted("tests.adapters:prom")
    registry = CollectorRegistry()
    exporter = stats.use_prometheus(registry)
    try:
        assert registry.get_sample_value("memokit_hits_total", {"function": f._state.identity}) == 1
        assert (
            registry.get_sample_value("memokit_misses_total", {"function": "tests.adapters:prom"})
            == 2
        )
        count = registry.get_sample_value(
            "memokit_compute_seconds_count", {"function": "tests.adapters:prom"}
        )
        assert count == 2
        inf = registry.get_sample_value(
            "memokit_compute_seconds_bucket", {"function": "tests.adapters:prom", "le": "+Inf"}
        )
        assert inf == 2
        f(3)  # read again at the next scrape
        assert (
            registry.get_sample_value("memokit_misses_total", {"function": "tests.adapters:prom"})
            == 3
        )
        CircuitBreaker("flaky", BreakerSettings(window=60)).record_failure(TimeoutError("t"))
        assert registry.get_sample_value("memokit_breaker_openings_total", {"cache": "flaky"}) == 1
        assert b"memokit_value_errors_total" in generate_latest(registry)
    finally:
        exporter.close()
    assert (
        registry.get_sample_value("memokit_hits_total", {"function": "tests.adapters:prom"}) is None
    )
    assert exporter not in stats.hooks()
    with pytest.raises(ValueError, match="namespace"):
        stats.use_prometheus(CollectorRegistry(), namespace="no spaces")


def test_opentelemetry_instruments_read_stats_at_collection() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    exporter = stats.use_opentelemetry(provider)
    try:
        f = _counted("tests.adapters:otel")  # alive until read: statistics of live functions
        CircuitBreaker("flaky-otel", BreakerSettings(window=60)).record_failure(TimeoutError("t"))
        data = reader.get_metrics_data()
        assert f.stats().misses == 2
    finally:
        exporter.close()
        provider.shutdown()
    assert data is not None
    points: dict[str, dict[str, object]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    attrs = dict(point.attributes or {})
                    label = str(attrs.get("function", attrs.get("cache")))
                    points.setdefault(metric.name, {})[label] = point
    assert points["memokit.hits"]["tests.adapters:otel"].value == 1  # type: ignore[attr-defined]
    assert points["memokit.misses"]["tests.adapters:otel"].value == 2  # type: ignore[attr-defined]
    duration = points["memokit.compute.duration"]["tests.adapters:otel"]
    assert duration.count == 2  # type: ignore[attr-defined]
    assert points["memokit.breaker.openings"]["flaky-otel"].value == 1  # type: ignore[attr-defined]


def test_configuring_an_exporter_twice_exports_each_count_once() -> None:
    # A second use_...() call (an app factory run twice, a re-imported module) returned
    # a second exporter: each count appeared twice, and a sum over them doubled.
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from prometheus_client import CollectorRegistry, generate_latest

    f = _counted("tests.adapters:twice")
    registry = CollectorRegistry()
    first = stats.use_prometheus(registry)
    try:
        assert stats.use_prometheus(registry) is first
        scraped = generate_latest(registry).decode()
        assert scraped.count('memokit_hits_total{function="tests.adapters:twice"}') == 1
        assert stats.hooks().count(first) == 1
    finally:
        first.close()
    again = stats.use_prometheus(registry)  # closed: a new one
    assert again is not first
    again.close()
    other = CollectorRegistry()
    elsewhere = stats.use_prometheus(other)  # another registry: its own exporter
    assert elsewhere is not first
    elsewhere.close()

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    otel = stats.use_opentelemetry(provider)
    try:
        assert stats.use_opentelemetry(provider) is otel
        data = reader.get_metrics_data()
    finally:
        otel.close()
        provider.shutdown()
    assert data is not None
    hits = [
        point.value  # type: ignore[union-attr]
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "memokit.hits"
        for point in metric.data.data_points
        if dict(point.attributes or {}).get("function") == "tests.adapters:twice"
    ]
    assert hits == [1]
    assert f.stats().hits == 1
