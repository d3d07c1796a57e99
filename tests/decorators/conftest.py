"""Fixtures of the decorator tests that run background refreshes (memokit.refreshes)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import freezegun
import pytest
from freezegun import freeze_time


@pytest.fixture
def frozen() -> Iterator[Any]:
    """Frozen time, in the refresh threads too (freezegun skips `threading` frames)."""
    saved = list(freezegun.config.settings.default_ignore_list)
    freezegun.configure(
        default_ignore_list=[name for name in saved if name not in ("threading", "queue")]
    )
    try:
        with freeze_time("2026-01-01", real_asyncio=True) as frozen:
            yield frozen
    finally:
        freezegun.configure(default_ignore_list=saved)
