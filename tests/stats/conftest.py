"""Statistics settings are process-wide: every test here starts from the defaults."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from memokit import stats


@pytest.fixture(autouse=True)
def _default_stats_settings() -> Iterator[None]:
    stats.configure_stats(enabled=True, share=False, flush_interval=10)
    yield
    stats.configure_stats(enabled=True, share=False, flush_interval=10)
    for hook in stats.hooks():
        stats.remove_hook(hook)
