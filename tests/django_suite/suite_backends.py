"""The memokit backends that Django's ``BaseCacheTests`` runs against: one entry each.

An entry names the memokit backend, says how to get a fresh ``LOCATION`` for
each test, and any ``OPTIONS``. What Django's suite must be told about the
backend (which aliases to leave out, which shared tests to replace) is derived
from the backend's declared ``capabilities`` unless the entry says otherwise:

- ``culls=False``: Django's ``cull``/``zero_cull`` aliases are left out, so the
  three culling tests skip themselves exactly as they do for Django's own Redis
  and memcached classes.
- ``cull_rule="count > MAX_ENTRIES"``: Django's database rule, so ``test_zero_cull``
  expects 18 entries, as Django's ``DBCacheTests`` does.
- ``strict_keys=True``: a bad key raises ``InvalidCacheKey`` as in Django's
  ``BaseMemcachedTests``.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import unittest
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

LocationMaker = Callable[[unittest.TestCase], str]
LocationFactory = Callable[[contextlib.ExitStack], LocationMaker]
"""Called once per run (start a server on the stack here); returns the per-test maker."""


@dataclass(frozen=True)
class SuiteBackend:
    """One memokit backend in the Django conformance run."""

    name: str
    """memokit's short name, as in ``OPTIONS["BACKEND"]``."""
    locations: LocationFactory
    options: Mapping[str, Any] = field(default_factory=dict)
    """Extra ``OPTIONS`` for every alias (a server's client options, for example)."""
    exclude: frozenset[str] | None = None
    """Django aliases to leave out; None derives them from the capabilities."""
    incr_decr_type_error: type[BaseException] = TypeError
    """What ``incr`` of a non-number raises (memokit: TypeError on every backend)."""
    overrides: tuple[type, ...] | None = None
    """Mixins replacing shared tests; None derives them from the capabilities."""


def unique_name(stack: contextlib.ExitStack) -> LocationMaker:
    """A LOCATION no other test uses (in-process stores)."""
    return lambda test: f"django-suite-{uuid.uuid4().hex}"


def temporary_directory(stack: contextlib.ExitStack) -> LocationMaker:
    """A fresh directory per test, removed afterwards (filesystem stores)."""

    def make(test: unittest.TestCase) -> str:
        path = tempfile.mkdtemp(prefix="memokit-django-suite-")
        test.addCleanup(shutil.rmtree, path, ignore_errors=True)
        return path

    return make


def temporary_sqlite_file(stack: contextlib.ExitStack) -> LocationMaker:
    """A database file in a fresh directory per test (SQLite stores)."""
    make_directory = temporary_directory(stack)
    return lambda test: f"{make_directory(test)}/cache.sqlite3"


def redis_url(stack: contextlib.ExitStack) -> LocationMaker:
    """One throw-away redis-server for the run; every test uses it (tearDown clears it)."""
    from memokit.testing import redis_server

    url = stack.enter_context(redis_server()).url
    return lambda test: url


def memcached_address(stack: contextlib.ExitStack) -> LocationMaker:
    """One throw-away memcached for the run; every test uses it (tearDown clears it)."""
    from memokit.testing import memcached_server

    address = stack.enter_context(memcached_server()).url
    return lambda test: address


BACKENDS: list[SuiteBackend] = [
    SuiteBackend("memory", unique_name),
    SuiteBackend("filesystem", temporary_directory),
    SuiteBackend("sqlite", temporary_sqlite_file),
    SuiteBackend("redis", redis_url),
    SuiteBackend("memcached", memcached_address),
]
"""Every memokit backend that stores data. Adding one is one line here."""
