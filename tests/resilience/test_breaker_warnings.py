"""One warning per cache per breaker window, however many calls fail in it (issue 15)."""

from __future__ import annotations

import logging

import pytest

from memokit.resilience import BreakerSettings, CircuitBreaker


def test_failures_in_flight_together_log_once(caplog: pytest.LogCaptureFixture) -> None:
    # Four threads were waiting on the backend when it went away: each call fails,
    # one after the other, inside one window.
    breaker = CircuitBreaker("flaky", BreakerSettings(window=60))
    caplog.set_level(logging.WARNING, logger="memokit")
    for _ in range(4):
        breaker.record_failure(TimeoutError("timed out"))
    assert breaker.is_open
    assert breaker.failures == 4
    assert breaker.opened == 1
    assert len(caplog.records) == 1
    breaker.reset()
    breaker.record_failure(TimeoutError("timed out"))
    assert len(caplog.records) == 2  # after a reset, a new failure is news again
    breaker.reset()


def test_a_failed_probe_after_the_window_logs_again(caplog: pytest.LogCaptureFixture) -> None:
    breaker = CircuitBreaker("flaky", BreakerSettings(window=0))
    caplog.set_level(logging.WARNING, logger="memokit")
    breaker.record_failure(TimeoutError("timed out"))
    breaker.record_failure(TimeoutError("timed out"))
    assert len(caplog.records) == 2
    breaker.reset()
