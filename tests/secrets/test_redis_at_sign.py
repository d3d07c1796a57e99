"""Issue 17's reported defect: a Redis password holding "@" was masked only up to its first "@"."""

from __future__ import annotations

import logging
import socket

import pytest

import memokit
from memokit import BackendUnavailable
from memokit.backends.redis import RedisCache

pytestmark = pytest.mark.server


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_password_with_at_signs_is_masked_whole(caplog: pytest.LogCaptureFixture) -> None:
    cache = RedisCache(f"redis://app:S3cret@Pa55word-2024@127.0.0.1:{_closed_port()}/0")
    try:
        with pytest.raises(BackendUnavailable) as raised:
            cache.get("k")

        @memokit.cached(cache=cache)
        def double(x: int) -> int:
            return 2 * x

        with caplog.at_level(logging.WARNING, logger="memokit"):
            assert double(2) == 4  # the breaker logs the failure
        shown = [repr(cache), cache.location, str(raised.value), caplog.text]
        assert caplog.records, "the failure was not logged"
        for text in shown:
            assert "Pa55word" not in text
            assert "S3cret" not in text
        assert cache.location == f"redis://app:***@127.0.0.1:{cache.location.rsplit(':', 1)[1]}"
    finally:
        cache.close()
