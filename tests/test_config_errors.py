"""Configuration errors name the alias, the setting and the fix (issue 15).

Each mistake raises ``ImproperlyConfigured`` at ``configure()`` (or at the first
``caches[alias]``) with ``CACHES['<alias>']`` in front; through the Django adapter,
which is not told its alias, the message names its BACKEND and LOCATION instead.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import memokit
from memokit import ImproperlyConfigured
from memokit.config import DEFAULT_CACHES, create_cache


@pytest.fixture(autouse=True)
def restore_default_configuration() -> Iterator[None]:
    yield
    memokit.configure(DEFAULT_CACHES)


def _refused(settings: dict[str, Any], alias: str = "pages") -> str:
    with pytest.raises(ImproperlyConfigured) as info:
        memokit.configure({"default": {"BACKEND": "memory"}, alias: settings})
    message = str(info.value)
    assert f"CACHES[{alias!r}]" in message
    return message


def _django_refused(location: Any, options: dict[str, Any]) -> str:
    pytest.importorskip("django")
    from django.core.exceptions import ImproperlyConfigured as DjangoImproperlyConfigured

    from memokit.contrib.django import build_memokit_cache

    with pytest.raises(DjangoImproperlyConfigured) as info:
        build_memokit_cache(location, {"OPTIONS": options})
    message = str(info.value)
    assert "memokit.contrib.django.MemokitCache" in message
    assert repr(location) in message
    assert f"OPTIONS['BACKEND'] {options.get('BACKEND', 'memory')!r}" in message
    return message


# -- LOCATION -----------------------------------------------------------------


@pytest.mark.parametrize("backend", ["filesystem", "sqlite"])
def test_location_under_a_regular_file(backend: str, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    location = str(blocker / "cache" / ("db.sqlite3" if backend == "sqlite" else "dir"))
    message = _refused({"BACKEND": backend, "LOCATION": location})
    assert "LOCATION" in message
    assert "not a directory" in message
    assert str(blocker) in message


def test_sqlite_location_that_is_a_directory(tmp_path: Path) -> None:
    message = _refused({"BACKEND": "sqlite", "LOCATION": str(tmp_path)})
    assert "LOCATION" in message
    assert "is a directory" in message
    assert "database file" in message


def test_django_adapter_names_backend_and_location(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    location = str(blocker / "cache")
    message = _django_refused(location, {"BACKEND": "filesystem"})
    assert "not a directory" in message


_UNPRIVILEGED_SCRIPT = """
import sys
import memokit
from memokit import ImproperlyConfigured
try:
    memokit.configure({{"default": {{"BACKEND": {backend!r}, "LOCATION": {location!r}}}}})
except ImproperlyConfigured as exc:
    print("ImproperlyConfigured:", exc)
except BaseException as exc:
    print("escaped:", type(exc).__name__, exc)
else:
    print("accepted")
"""


def _run_unprivileged(code: str) -> str:
    """Run ``code`` in a child that the file modes apply to, even when we are root."""
    command = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        # Root ignores file modes through two capabilities; drop them for the child.
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv to drop CAP_DAC_OVERRIDE")
        command = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("backend", ["filesystem", "sqlite"])
def test_location_in_a_directory_we_cannot_write(backend: str, tmp_path: Path) -> None:
    readonly = tmp_path / "readonly"
    readonly.mkdir(mode=0o500)
    location = str(readonly / ("db.sqlite3" if backend == "sqlite" else "cache"))
    try:
        out = _run_unprivileged(_UNPRIVILEGED_SCRIPT.format(backend=backend, location=location))
    finally:
        readonly.chmod(0o700)
    assert out.startswith("ImproperlyConfigured: CACHES['default']"), out
    assert "LOCATION" in out
    assert "permission denied" in out.lower()
    assert "writable" in out


def test_an_existing_directory_we_cannot_write(tmp_path: Path) -> None:
    readonly = tmp_path / "cache"
    readonly.mkdir(mode=0o500)  # exists, so nothing needs creating: only a write finds it out
    try:
        out = _run_unprivileged(
            _UNPRIVILEGED_SCRIPT.format(backend="filesystem", location=str(readonly))
        )
    finally:
        readonly.chmod(0o700)
    assert out.startswith("ImproperlyConfigured: CACHES['default']"), out
    assert repr(str(readonly)) in out
    assert "writable" in out


def test_an_existing_database_file_we_cannot_write(tmp_path: Path) -> None:
    location = tmp_path / "db.sqlite3"
    memokit.SQLiteCache(str(location)).close()
    location.chmod(0o444)  # SQLite opens it read-only without a word; writes fail later
    out = _run_unprivileged(_UNPRIVILEGED_SCRIPT.format(backend="sqlite", location=str(location)))
    assert out.startswith("ImproperlyConfigured: CACHES['default']"), out
    assert repr(str(location)) in out
    assert "writable" in out


# -- SQLite TABLE ---------------------------------------------------------------


@pytest.mark.parametrize("table", ["sqlite_cache", "SQLITE_cache", "Sqlite_x"])
def test_sqlite_table_reserved_by_sqlite(table: str, tmp_path: Path) -> None:
    message = _refused(
        {"BACKEND": "sqlite", "LOCATION": str(tmp_path / "c.db"), "OPTIONS": {"TABLE": table}}
    )
    assert "TABLE" in message
    assert "sqlite_" in message
    assert "for example" in message


@pytest.mark.parametrize("suffix", ["__meta", "__expires", "__inserted", "__deleted", "__stamped"])
def test_sqlite_table_cannot_clash_with_another_tables_helpers(suffix: str, tmp_path: Path) -> None:
    location = str(tmp_path / "shared.db")
    pages = create_cache({"BACKEND": "sqlite", "LOCATION": location, "OPTIONS": {"TABLE": "x"}})
    pages.set("k", "pages")
    message = _refused(
        {"BACKEND": "sqlite", "LOCATION": location, "OPTIONS": {"TABLE": "x" + suffix}}
    )
    assert "TABLE" in message
    assert suffix in message
    assert pages.get("k") == "pages"


def test_sqlite_table_that_exists_with_another_layout(tmp_path: Path) -> None:
    location = tmp_path / "app.db"
    with sqlite3.connect(location) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL)")
    conn.close()
    message = _refused(
        {"BACKEND": "sqlite", "LOCATION": str(location), "OPTIONS": {"TABLE": "orders"}}
    )
    assert "TABLE" in message
    assert "'orders'" in message
    assert "another TABLE" in message


def test_sqlite_tables_sharing_one_file_still_work(tmp_path: Path) -> None:
    location = str(tmp_path / "shared.db")
    a = create_cache({"BACKEND": "sqlite", "LOCATION": location, "OPTIONS": {"TABLE": "a"}})
    b = create_cache({"BACKEND": "sqlite", "LOCATION": location, "OPTIONS": {"TABLE": "a_b"}})
    a.set("k", 1)
    b.set("k", 2)
    assert (a.get("k"), b.get("k")) == (1, 2)


# -- unknown OPTIONS and BACKEND ---------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "typo", "meant"),
    [
        ("memory", "MAX_ENTRIS", "MAX_ENTRIES"),
        ("filesystem", "CULL_FREQENCY", "CULL_FREQUENCY"),
        ("sqlite", "TABEL", "TABLE"),
        ("dummy", "SERIALISER", "SERIALIZER"),
    ],
)
def test_unknown_option_names_alias_key_and_the_likely_fix(
    backend: str, typo: str, meant: str, tmp_path: Path
) -> None:
    location = {"filesystem": str(tmp_path / "d"), "sqlite": str(tmp_path / "c.db")}
    settings = {"BACKEND": backend, "LOCATION": location.get(backend, ""), "OPTIONS": {typo: 1}}
    message = _refused(settings)
    assert f"OPTIONS[{typo!r}]" in message
    assert f"did you mean {meant!r}" in message


@pytest.mark.server
@pytest.mark.parametrize(
    ("backend", "typo", "meant"),
    [
        ("redis", "sockt_timeout", "socket_timeout"),
        ("redis", "READ_FROM_REPLICA", "READ_FROM_REPLICAS"),
        ("memcached", "conect_timeout", "connect_timeout"),
        ("memcached", "IGNORE_EXCS", "IGNORE_EXC"),
    ],
)
def test_unknown_option_of_a_network_backend(backend: str, typo: str, meant: str) -> None:
    location = "redis://127.0.0.1:1" if backend == "redis" else "127.0.0.1:1"
    message = _refused({"BACKEND": backend, "LOCATION": location, "OPTIONS": {typo: 1}})
    assert f"OPTIONS[{typo!r}]" in message
    assert f"did you mean {meant!r}" in message


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"LOCATION": "127.0.0.1:notaport"}, "LOCATION"),
        ({"LOCATION": "127.0.0.1:1", "OPTIONS": {"max_pool_size": "x"}}, "OPTIONS"),
    ],
)
def test_memcached_settings_pymemcache_refuses(settings: dict[str, Any], named: str) -> None:
    pytest.importorskip("pymemcache")
    message = _refused({"BACKEND": "memcached", **settings})
    assert named in message


def test_unknown_option_through_the_django_adapter() -> None:
    message = _django_refused("", {"BACKEND": "memory", "MAX_ENTRIS": 1})
    assert "OPTIONS['MAX_ENTRIS']" in message
    assert "did you mean 'MAX_ENTRIES'" in message


def test_unknown_backend_names_the_alias() -> None:
    message = _refused({"BACKEND": "redsi"})
    assert "BACKEND" in message
    assert "did you mean 'redis'" in message


def test_unknown_setting_at_first_use_names_the_alias() -> None:
    handler = memokit.CacheHandler()
    handler._settings = {"default": {"BACKEND": "memory", "OPTIONS": {"MAX_ENTRIS": 1}}}
    with pytest.raises(ImproperlyConfigured, match=r"CACHES\['default'\].*MAX_ENTRIS"):
        handler["default"]


# -- optional packages ------------------------------------------------------------------

_WITHOUT_PACKAGE = """
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == {package!r} or name.startswith({package!r} + "."):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Block())
import memokit
from memokit import ImproperlyConfigured
for backend in ({backend!r}, {dotted!r}):
    try:
        memokit.configure({{"default": {{"BACKEND": backend, "LOCATION": {location!r}}}}})
    except ImproperlyConfigured as exc:
        print("ImproperlyConfigured:", exc)
    except BaseException as exc:
        print("escaped:", type(exc).__name__, exc)
    else:
        print("accepted")
try:
    from django.core.exceptions import ImproperlyConfigured as DjangoImproperlyConfigured
    from memokit.contrib.django import build_memokit_cache
except ImportError:
    print("Django: not installed")
else:
    try:
        build_memokit_cache({location!r}, {{"OPTIONS": {{"BACKEND": {backend!r}}}}})
    except DjangoImproperlyConfigured as exc:
        print("Django:", exc)
    except BaseException as exc:
        print("escaped:", type(exc).__name__, exc)
"""


@pytest.mark.parametrize(
    ("backend", "package", "dotted", "location"),
    [
        ("redis", "redis", "memokit.backends.redis.RedisCache", "redis://127.0.0.1:6379"),
        ("memcached", "pymemcache", "memokit.backends.memcached.MemcachedCache", "127.0.0.1:1"),
    ],
)
def test_backend_without_its_client_library(
    backend: str, package: str, dotted: str, location: str
) -> None:
    code = _WITHOUT_PACKAGE.format(
        package=package, backend=backend, dotted=dotted, location=location
    )
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3, result.stdout
    hint = f"pip install 'memokit[{backend}]'"
    for line in lines[:2]:
        assert line.startswith("ImproperlyConfigured: CACHES['default']"), line
        assert "BACKEND" in line
        assert package in line
        assert hint in line
    assert lines[2] == "Django: not installed" or hint in lines[2], lines[2]
