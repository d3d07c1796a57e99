"""A planted pickle never runs under signed pickle, JSON or msgpack (issue 17).

Whoever can write to a shared store (a file in the cache directory, a row of the
SQLite table, a Redis or memcached key) plants a payload whose ``__reduce__``
makes a directory when it is unpickled. Written straight into each backend's
storage, below memokit, in every form a reader might be lured by: a bare pickle,
an unsigned frame (compressed or not), a frame signed with a secret the reader
does not know. Under signed pickle, JSON and msgpack it is a miss reported once,
and the marker never appears; under plain pickle it runs: that is the trust
boundary docs/security.md states, and a test shows it. The same holds for the
entry of a decorated call planted with the current versions; a stale entry, or
one of the previous format, is never unpickled even under plain pickle.
"""

from __future__ import annotations

import math
import os
import pickle
import shutil
import sqlite3
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

import memokit
from memokit import BaseCache, CorruptEntryWarning, cached
from memokit.entry import entry_header
from memokit.framing import build_serializer, dumps_after

SECRET = "reader-secret-" + "r" * 40
ATTACKER_SECRET = "attacker-secret-" + "a" * 40


class Planted:
    """Makes ``path`` (a directory) when unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (self.path,))


def payloads(marker: str) -> dict[str, bytes]:
    evil = Planted(marker)
    bare = pickle.dumps(evil, pickle.HIGHEST_PROTOCOL)
    unsigned = build_serializer("pickle", compressor="zlib", compress_min_size=10**9)
    compressed = build_serializer("pickle", compressor="zlib", compress_min_size=0)
    attacker = build_serializer("signed-pickle", secret=ATTACKER_SECRET)
    return {
        "bare-pickle": bare,
        "unsigned-frame": unsigned.dumps(evil),
        "compressed-frame": compressed.dumps(evil),
        "signed-by-another-secret": attacker.dumps(evil),
        # The attacker's signed frame relabelled as JSON: the kind is checked first.
        "relabelled": attacker.dumps(evil)[:2] + b"j" + attacker.dumps(evil)[3:],
    }


def plant(cache: BaseCache, made: str, data: bytes, scratch: Path) -> None:
    """Write ``data`` as the payload of ``made``, below memokit's API."""
    kind = type(cache).__name__
    if kind == "RedisCache":
        import redis

        with redis.Redis.from_url(cache._servers[0]) as raw:  # type: ignore[attr-defined]
            raw.set(made, data)
    elif kind in ("RedisClusterCache", "RedisSentinelCache"):
        # Raw bytes through the backend's own primitive: it sends them as they are,
        # to the node (and with the hash tag) a reader uses.
        cache._set(made, data, None)
    elif kind == "MemcachedCache":
        from pymemcache.client.hash import HashClient

        # One server or a pool: keys go where the cache's own hashing puts them.
        specs = cache._specs  # type: ignore[attr-defined]
        client = HashClient(specs, connect_timeout=2, timeout=2, default_noreply=False)
        try:
            client.set(made, data, noreply=False)
        finally:
            client.close()
    elif kind == "SQLiteCache":
        table = cache._table  # type: ignore[attr-defined]
        with sqlite3.connect(cache._path, isolation_level=None) as raw:  # type: ignore[attr-defined]
            raw.execute(
                f'INSERT OR REPLACE INTO "{table}" (key, value, expires) VALUES (?, ?, ?)',  # noqa: S608
                (made, data, math.inf),
            )
        raw.close()
    elif kind == "FileSystemCache":
        # A well-formed file (header, checksum) holding the planted bytes: made by a
        # cache of the same backend elsewhere, then put in place of the entry's file.
        other = memokit.create_cache({"BACKEND": "filesystem", "LOCATION": str(scratch)})
        other._set(made, data, None)
        source = other._path(made)  # type: ignore[attr-defined]
        shutil.copyfile(source, cache._path(made))  # type: ignore[attr-defined]
        other.close()
    else:
        raise AssertionError(f"no way to plant into {kind}")


READERS = [
    pytest.param({"SECRET": SECRET}, id="signed-pickle"),
    pytest.param({"SECRET": SECRET, "COMPRESSOR": "zlib"}, id="signed-pickle-zlib"),
    pytest.param({"SERIALIZER": "json"}, id="json"),
    pytest.param({"SERIALIZER": "msgpack", "COMPRESSOR": "zstd"}, id="msgpack-zstd"),
]


@pytest.mark.parametrize("reader", READERS)
def test_a_planted_pickle_never_runs_and_is_reported_once(
    make_cache: Any, reader: dict[str, Any], tmp_path: Path
) -> None:
    cache = make_cache(OPTIONS=reader)
    if not cache.capabilities.cross_process:
        pytest.skip("only this process writes an in-process store: nothing can be planted")
    marker = tmp_path / "the-planted-code-ran"
    for i, (form, data) in enumerate(payloads(str(marker)).items()):
        key = f"planted-{i}"
        made = cache.make_key(key)
        plant(cache, made, data, tmp_path / f"scratch-{i}")
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("error")  # any other warning fails the test
            warnings.simplefilter("always", CorruptEntryWarning)  # counted, not deduplicated
            assert cache.get(key, "miss") == "miss", form
            assert cache.get_many([key]) == {}, form
            assert cache.get(key, "miss") == "miss", form
        assert not marker.exists(), f"{form}: the planted code ran"
        about = [w for w in record if repr(made) in str(w.message)]
        assert len(about) == 1, (form, [str(w.message) for w in record])
        assert "not unpickled" in str(about[0].message) or reader.get("SERIALIZER"), form
    assert not marker.exists()


def test_under_plain_pickle_a_planted_pickle_runs_the_documented_trust_boundary(
    make_cache: Any, tmp_path: Path
) -> None:
    cache = make_cache()
    if not cache.capabilities.cross_process:
        pytest.skip("only this process writes an in-process store: nothing can be planted")
    marker = tmp_path / "the-planted-code-ran"
    plant(cache, cache.make_key("k"), payloads(str(marker))["bare-pickle"], tmp_path / "s")
    cache.get("k")
    # docs/security.md: without SECRET, whoever writes the store runs code in readers.
    assert marker.is_dir()


# -- planted entries of decorated calls ------------------------------------------------
# The header (format, created, versions) is memokit's and the value the serializer's:
# an entry planted with the current versions gets as far as the value, which a
# reader that signs, or reads JSON or msgpack, refuses before unpickling it.


def entries(marker: str, versions: tuple[int, ...]) -> dict[str, bytes]:
    evil = Planted(marker)
    header = entry_header(time.time(), versions)
    attacker = build_serializer("signed-pickle", secret=ATTACKER_SECRET)
    return {
        "unsigned": header + pickle.dumps(evil, pickle.HIGHEST_PROTOCOL),
        "unsigned-frame": dumps_after(
            build_serializer("pickle", compressor="zlib", compress_min_size=0), header, evil
        ),
        "signed-by-another-secret": dumps_after(attacker, header, evil),
    }


def _decorated(cache: BaseCache, runs: list[int]) -> Any:
    @cached(cache=cache)
    def f(i: int) -> dict[str, int]:
        runs.append(i)
        return {"i": i}

    return f


@pytest.mark.parametrize("reader", READERS)
def test_a_planted_entry_never_runs_and_is_reported_once(
    make_cache: Any, reader: dict[str, Any], tmp_path: Path
) -> None:
    cache = make_cache(OPTIONS=reader)
    if not cache.capabilities.cross_process:
        pytest.skip("only this process writes an in-process store: nothing can be planted")
    marker = tmp_path / "the-planted-code-ran"
    runs: list[int] = []
    f = _decorated(cache, runs)
    versions = (memokit.get_version(f),)
    for i, (form, data) in enumerate(entries(str(marker), versions).items()):
        made = cache.make_key(f.key(i))
        plant(cache, made, data, tmp_path / f"scratch-{i}")
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("error")
            warnings.simplefilter("always", CorruptEntryWarning)
            assert f(i) == {"i": i}, form
            assert f(i) == {"i": i}, form  # replaced: a hit
        assert not marker.exists(), f"{form}: the planted code ran"
        about = [w for w in record if repr(made) in str(w.message)]
        assert len(about) == 1, (form, [str(w.message) for w in record])
    assert runs == list(range(len(entries(str(marker), versions))))


def test_a_signed_entry_moved_under_another_header_is_refused(
    make_cache: Any, tmp_path: Path
) -> None:
    # The signature covers the header: a value signed for old versions cannot be
    # served as current by rewriting the versions (here the reader's own secret
    # signed it, as a stale entry of its own would be).
    cache = make_cache(OPTIONS={"SECRET": SECRET})
    if not cache.capabilities.cross_process:
        pytest.skip("only this process writes an in-process store: nothing can be planted")
    marker = tmp_path / "the-planted-code-ran"
    runs: list[int] = []
    f = _decorated(cache, runs)
    version = memokit.get_version(f)
    stale = dumps_after(cache.serializer, entry_header(0.0, (version - 1,)), Planted(str(marker)))
    moved = entry_header(0.0, (version,)) + stale[len(entry_header(0.0, (version,))) :]
    made = cache.make_key(f.key(1))
    plant(cache, made, moved, tmp_path / "scratch")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("error")
        warnings.simplefilter("always", CorruptEntryWarning)
        assert f(1) == {"i": 1}
    assert not marker.exists()
    assert [str(w.message) for w in record if "signature" in str(w.message)]
    assert runs == [1]


def test_under_plain_pickle_a_stale_or_old_entry_is_never_unpickled(
    make_cache: Any, tmp_path: Path
) -> None:
    # Versions are compared before the value is decoded: an entry of other versions,
    # or of the previous format, is a miss without a byte of its value read.
    cache = make_cache()
    if not cache.capabilities.cross_process:
        pytest.skip("only this process writes an in-process store: nothing can be planted")
    marker = tmp_path / "the-planted-code-ran"
    runs: list[int] = []
    f = _decorated(cache, runs)
    version = memokit.get_version(f)
    evil = Planted(str(marker))
    planted = {
        "stale": entry_header(time.time(), (version - 1,)) + pickle.dumps(evil),
        "previous-format": pickle.dumps(("mk1", time.time(), (version,), evil)),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a plain miss: nothing to report
        for i, data in enumerate(planted.values()):
            plant(cache, cache.make_key(f.key(i)), data, tmp_path / f"scratch-{i}")
            assert f(i) == {"i": i}
            assert f(i) == {"i": i}
    assert not marker.exists()
    assert runs == [0, 1]
