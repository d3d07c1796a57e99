"""Declare DictCache to memokit's conformance kit (enabled with -p memokit.testing.contract)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from memokit.testing.contract import BackendSpec


def fresh_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A LOCATION no other test uses: every test starts on an empty store."""
    return f"contract-{uuid.uuid4().hex}"


# One entry per backend: BACKEND (a dotted path to the class), then a LOCATION maker.
BACKENDS = [pytest.param(BackendSpec("dictcache.DictCache", fresh_location), id="dict")]


@pytest.fixture(params=BACKENDS)
def memokit_backend(request: pytest.FixtureRequest) -> BackendSpec:
    """The backend the kit's contract suite runs on (one BackendSpec per backend)."""
    spec: BackendSpec = request.param
    return spec
