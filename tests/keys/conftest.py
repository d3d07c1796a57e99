"""Fixtures of the key tests: the two embedded stores, and the hypothesis profiles."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

import memokit
from memokit import BaseCache

# CI: the same examples every run, no deadline (a loaded machine is slow, not
# wrong), at most 200 examples per property.
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=200)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseCache]:
    """A fresh memory or SQLite cache: each collision case runs on both."""
    location = (
        f"keys-{uuid.uuid4().hex}" if request.param == "memory" else str(tmp_path / "keys.db")
    )
    cache = memokit.create_cache({"BACKEND": request.param, "LOCATION": location})
    yield cache
    cache.clear()
    cache.close()
