"""memokit's conformance kit: the cache contract as a pytest plugin, for any backend.

Enable it explicitly (``pytest -p memokit.testing.contract``, or ``addopts`` in
your pytest settings) and declare the backend under test in a ``conftest.py``
with a ``memokit_backend`` fixture whose params are :class:`BackendSpec`::

    @pytest.fixture(params=[BackendSpec("myapp.cache.ShelfCache", fresh_location)])
    def memokit_backend(request: pytest.FixtureRequest) -> BackendSpec:
        return request.param

The contract tests (the ``test_*`` modules beside this one) then run in that
directory, once per spec, as ``<dir>/memokit_contract/test_*.py`` (select them
with ``-k memokit_contract``); they see that conftest's fixtures, so a
``location`` callable may ask for a server fixture with
``request.getfixturevalue``. The plugin gives every test the fixtures
``make_cache``, ``make_any_cache``, ``cache``, ``clock`` and ``module_level``.
Adding a backend is one more ``BackendSpec`` in the params. Nothing in memokit
imports this module: it needs pytest and freezegun (``pip install
memokit[testing]``).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import freezegun
import pytest
from freezegun import freeze_time

from ...backends.base import BaseCache
from ...config import create_cache

__all__ = ["SUITE_NAME", "BackendSpec", "CacheFactory", "Clock"]

SUITE_DIR = Path(__file__).resolve().parent
SUITE_NAME = "memokit_contract"
"""The name the suite's node takes in the directory that declares a backend."""

_HOW_TO_DECLARE = (
    "no backend declared for memokit's contract suite: define a fixture "
    "`memokit_backend` with params=[BackendSpec(...)] in a conftest.py above the tests "
    "(docs/backends.md, 'Writing a backend')"
)


@dataclass(frozen=True)
class BackendSpec:
    """How to build caches of one backend that share one fresh store per test."""

    backend: str
    """``BACKEND``: a short name (``"redis"``) or the dotted path to a ``BaseCache`` class."""
    location: Callable[[pytest.FixtureRequest, Path], str]
    """Return a LOCATION that no other test uses (given the test's request and tmp_path)."""
    settings: dict[str, Any] = field(default_factory=dict)
    """Extra CACHES settings (a server's OPTIONS, for example)."""
    real_clock: bool = False
    """Expiry runs on the server's clock: a test that moves time sleeps for real."""


CacheFactory = Callable[..., BaseCache]


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker the plugin sets, for runs with ``--strict-markers``."""
    config.addinivalue_line("markers", "slow: takes seconds of real time")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave the suite's own files alone when a directory walk reaches them.

    They run only under a directory that declares a backend; a path named on
    the command line is still collected (and says what to declare).
    """
    if collection_path == SUITE_DIR or SUITE_DIR in collection_path.parents:
        return True
    return None


class ContractSuite(pytest.Collector):
    """The contract modules, collected as children of the declaring directory."""

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        """One module per ``test_*.py`` file of the suite."""
        for path in sorted(SUITE_DIR.glob("test_*.py")):
            yield pytest.Module.from_parent(self, path=path, nodeid=f"{self.nodeid}/{path.name}")


def _declares_a_backend(conftest: Path, config: pytest.Config) -> bool:
    module = config.pluginmanager.get_plugin(str(conftest))
    return module is not None and hasattr(module, "memokit_backend")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Run the suite beside the ``conftest.py`` that declares ``memokit_backend``."""
    if file_path.name != "conftest.py" or not _declares_a_backend(file_path, parent.config):
        return None
    # The rootdir's own node id is "." (pytest 9) or "" (pytest 8).
    base = parent.nodeid.strip(".")
    nodeid = f"{base}/{SUITE_NAME}" if base else SUITE_NAME
    return ContractSuite.from_parent(parent, name=SUITE_NAME, path=SUITE_DIR, nodeid=nodeid)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``slow`` the tests that move a server's clock (they sleep for real).

    They check the server's expiry, which no Python version changes: a quick run
    (``-m "not slow"``) leaves them out.
    """
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        spec = params.get("memokit_backend", params.get("memokit_any_backend"))
        if (
            isinstance(spec, BackendSpec)
            and spec.real_clock
            and "clock" in getattr(item, "fixturenames", ())
        ):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def memokit_backend() -> BackendSpec:
    """The backend under test: override it in a conftest.py, with BackendSpec params."""
    raise pytest.UsageError(_HOW_TO_DECLARE)


@pytest.fixture
def memokit_any_backend(memokit_backend: BackendSpec) -> BackendSpec:
    """The backends ``make_any_cache`` runs on; by default those of ``memokit_backend``.

    Override it to add backends that store nothing (memokit adds its dummy).
    """
    return memokit_backend


def _factory(
    spec: BackendSpec, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[CacheFactory]:
    if not isinstance(spec, BackendSpec):
        raise pytest.UsageError(
            f"memokit_backend must give a BackendSpec, not {type(spec).__name__}: "
            "params=[BackendSpec(backend, location)]"
        )
    location = spec.location(request, tmp_path)
    made: list[BaseCache] = []

    def make(**settings: Any) -> BaseCache:
        options = {**spec.settings.get("OPTIONS", {}), **settings.pop("OPTIONS", {})}
        config = {**spec.settings, **settings, "BACKEND": spec.backend, "LOCATION": location}
        config["OPTIONS"] = options
        cache = create_cache(config)
        made.append(cache)
        make.config = config  # type: ignore[attr-defined]  # for tests that start processes
        return cache

    yield make
    if made:
        made[0].clear()
    for cache in made:
        cache.close()


@pytest.fixture
def make_cache(
    memokit_backend: BackendSpec, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[CacheFactory]:
    """Build caches (with extra CACHES settings) that share this test's store."""
    yield from _factory(memokit_backend, request, tmp_path)


@pytest.fixture
def make_any_cache(
    memokit_any_backend: BackendSpec, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[CacheFactory]:
    """Like ``make_cache``, over ``memokit_any_backend`` (memokit's dummy backend too)."""
    yield from _factory(memokit_any_backend, request, tmp_path)


@pytest.fixture
def cache(make_cache: CacheFactory) -> BaseCache:
    """A cache with default settings on a fresh store."""
    return make_cache()


class Clock:
    """Moves time forward: frozen time where the clock is ours, real sleep otherwise.

    memcached counts whole seconds on a timer of its own, which a busy machine can
    fire late; a test that only slept would then read the entry before the server
    saw the time pass (a CI run once found a 4 s entry alive after 5 s). So where
    the server tells its time, ``advance`` also waits until the server's clock has
    moved on by the whole seconds slept.
    """

    def __init__(self, frozen: Any | None, server_seconds: Callable[[], int] | None = None) -> None:
        self._frozen = frozen
        self._server_seconds = server_seconds

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass for the cache under test."""
        if self._frozen is not None:
            self._frozen.tick(seconds)
            return
        start = self._server_seconds() if self._server_seconds is not None else None
        time.sleep(seconds)
        if self._server_seconds is None or start is None:
            return
        target = start + math.ceil(seconds)
        deadline = time.monotonic() + 10
        while self._server_seconds() < target:
            # Ten seconds late is no longer a slow timer but a stuck server.
            assert time.monotonic() < deadline, "the server's clock stopped"
            time.sleep(0.005)


@contextlib.contextmanager
def _memcached_seconds(cache: BaseCache) -> Iterator[Callable[[], int]]:
    from pymemcache.client.base import Client  # type: ignore[import-untyped, unused-ignore]

    # The first server of the location: the tests run one memcached.
    host, _, port = str(cache.location).split(";")[0].split(",")[0].rpartition(":")
    client = Client((host, int(port)), connect_timeout=2, timeout=2)
    try:
        yield lambda: int(client.stats()[b"time"])
    finally:
        client.close()


@pytest.fixture
def clock(make_cache: CacheFactory) -> Iterator[Clock]:
    """A clock for the backend: freezegun when it computes expiry in this process."""
    cache = make_cache()
    if cache.capabilities.local_clock:
        # freezegun hands the real time to calls made under a `threading` frame by
        # default; the async twins of blocking backends run in worker threads, and
        # those must see the frozen clock too.
        saved = list(freezegun.config.settings.default_ignore_list)
        freezegun.configure(
            default_ignore_list=[name for name in saved if name not in ("threading", "queue")]
        )
        try:
            with freeze_time(real_asyncio=True) as frozen:
                yield Clock(frozen)
        finally:
            freezegun.configure(default_ignore_list=saved)
    elif type(cache).__name__ == "MemcachedCache":
        if ";" in str(cache.location):
            # Each server of a pool expires entries on its own clock, as one server
            # does: the memcached run checks that; the pool's run spares the sleeps.
            pytest.skip("a memcached pool's expiry is each server's own (see the memcached run)")
        with _memcached_seconds(cache) as seconds:
            yield Clock(None, seconds)
    else:
        yield Clock(None)


_runtime_serials = itertools.count()


@pytest.fixture
def module_level() -> Iterator[Callable[[type[Any]], type[Any]]]:
    """Give classes made inside a test a module-level name of their own.

    Keys refuse classes made at run time (every run makes another class with the
    same qualified name); a test's class gets a name that leads back to it, for
    the length of the test.
    """
    named: list[tuple[Any, str]] = []

    def name(cls: type[Any]) -> type[Any]:
        cls.__qualname__ = f"{cls.__name__}_{next(_runtime_serials)}"
        module = sys.modules[cls.__module__]
        setattr(module, cls.__qualname__, cls)
        named.append((module, cls.__qualname__))
        return cls

    yield name
    for module, qualname in named:
        delattr(module, qualname)
