"""Values are copies, values a serializer cannot store fail cleanly, and every serializer
and compressor round-trips its values on every backend.

The tests of this module run over an axis of ``OPTIONS`` (every serializer, each
uncompressed and with each compressor); the rest of the conformance suite runs
with the default serializer only.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import pickle
import threading
import time
from typing import Any

import pytest

from memokit import (
    BaseCache,
    CorruptEntryWarning,
    UnsupportedValue,
    cached,
    cached_property,
    invalidate_tags,
)
from memokit.framing import FramedSerializer

CacheFactory = Any

SECRET = "contract-secret-" + "c" * 40
# A low threshold, so that the larger values of each test are stored compressed.
COMPRESSED_ABOVE = 64


def _axis() -> list[Any]:
    params = []
    for name, options in [
        ("pickle", {}),
        ("signed-pickle", {"SERIALIZER": "signed-pickle", "SECRET": SECRET}),
        ("json", {"SERIALIZER": "json"}),
        ("msgpack", {"SERIALIZER": "msgpack"}),
        # A dotted path (or an instance) is a custom serializer to memokit: stored
        # unframed, or framed as a custom kind when compressed; integers not raw.
        ("custom-json", {"SERIALIZER": "memokit.serializers.JSONSerializer"}),
    ]:
        params.append(pytest.param((name, options), id=name))
        for codec in ("zlib", "zstd"):
            more = {"COMPRESSOR": codec, "COMPRESS_MIN_SIZE": COMPRESSED_ABOVE}
            params.append(pytest.param((name, {**options, **more}), id=f"{name}-{codec}"))
    return params


@pytest.fixture(params=_axis())
def serializer(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """(serializer name, OPTIONS) of one point of the axis."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def cache(make_cache: CacheFactory, serializer: tuple[str, dict[str, Any]]) -> BaseCache:
    """This module's cache: the test's backend with the axis' serializer options."""
    return make_cache(OPTIONS=dict(serializer[1]))


def values_for(name: str) -> dict[str, Any]:
    """Values ``name`` stores unchanged; ``big`` is above the compression threshold."""
    values: dict[str, Any] = {
        "none": None,
        "true": True,
        "int": 7,
        "negative": -(2**63),
        "float": 2.5,
        "str": "caf\u00e9 \u2603",
        "empty": "",
        "list": [1, "two", [3.0, None]],
        "dict": {"a": {"b": [1, 2]}, "c": False},
        "big": {"rows": [{"id": i, "name": f"row {i}"} for i in range(50)]},
    }
    if name in ("pickle", "signed-pickle"):
        values |= {
            "tuple": (1, (2, 3)),
            "set": {1, 2},
            "bytes": b"\x00\x80\xe5",
            "int-keys": {1: "a", (2, 3): "b"},
            "datetime": datetime.datetime(2026, 1, 2, 3, 4, 5),
            "decimal": decimal.Decimal("1.10"),
            "huge-int": 2**100,
            "big-bytes": bytes(range(256)) * 4,
        }
    elif name == "msgpack":
        values |= {"bytes": b"\x00\x80\xe5", "int-keys": {1: "a", b"k": 2}, "u64": 2**64 - 1}
    else:
        values |= {"huge-int": 2**100}
    return values


class Unpicklable:
    def __getstate__(self) -> Any:
        raise pickle.PickleError("refusing to pickle")


def test_mutating_a_returned_value_does_not_change_the_cache(cache: BaseCache) -> None:
    cache.set("list", [1])
    cache.get("list").append(2)
    assert cache.get("list") == [1]
    value = {"a": [1]}
    cache.set("dict", value)
    value["a"].append(2)
    assert cache.get("dict") == {"a": [1]}
    assert cache.get_many(["list"])["list"] == [1]


@pytest.mark.parametrize(
    "value", [Unpicklable(), threading.Lock(), lambda: 1], ids=["getstate", "lock", "lambda"]
)
def test_set_and_add_of_an_unpicklable_value_raise_and_store_nothing(
    cache: BaseCache, value: object
) -> None:
    with pytest.raises(pickle.PickleError):
        cache.set("key", value)
    assert not cache.has_key("key")
    with pytest.raises(pickle.PickleError):
        cache.add("key", value)
    assert not cache.has_key("key")
    with pytest.raises(pickle.PickleError):
        cache.set_many({"other": 1, "key": value})
    assert cache.get_many(["key", "other"]) == {}
    with pytest.raises(pickle.PickleError):
        cache.get_or_set("key", lambda: value)
    assert not cache.has_key("key")


def test_unpicklable_set_keeps_the_old_value(cache: BaseCache) -> None:
    cache.set("key", "old")
    with pytest.raises(pickle.PickleError):
        cache.set("key", Unpicklable())
    assert cache.get("key") == "old"


def test_every_value_round_trips(cache: BaseCache, serializer: tuple[str, Any]) -> None:
    values = values_for(serializer[0])
    for key, value in values.items():
        cache.set(key, value)
    for key, value in values.items():
        got = cache.get(key)
        assert got == value, key
        assert type(got) is type(value), key
    assert cache.get_many(list(values)) == values
    cache.clear()
    cache.set_many(values)
    assert cache.get_many(list(values)) == values
    assert cache.add("added", values["big"]) is True
    assert cache.get_or_set("got", lambda: values["dict"]) == values["dict"]
    assert cache.get("added") == values["big"]
    assert cache.get("got") == values["dict"]
    if isinstance(cache.serializer, FramedSerializer) and cache.serializer.compressor:
        assert (
            len(cache.serializer.dumps(values["big"]))
            < len(cache.serializer.inner.dumps(values["big"])) / 2
        )


def test_async_round_trips(cache: BaseCache, serializer: tuple[str, Any]) -> None:
    values = values_for(serializer[0])

    async def scenario() -> dict[str, Any]:
        await cache.aset_many(values)
        await cache.aset("one", values["big"])
        assert await cache.aget("one") == values["big"]
        return await cache.aget_many(list(values))

    assert asyncio.run(scenario()) == values


def test_integers_count_under_every_serializer(cache: BaseCache) -> None:
    cache.set("n", 1)
    assert cache.incr("n", 5) == 6
    assert cache.decr("n") == 5
    assert cache.get("n") == 5
    assert type(cache.get("n")) is int
    cache.set("f", 1.5)
    assert cache.incr("f") == 2.5
    assert cache.get("f") == 2.5


def test_a_value_the_format_would_change_is_refused(
    cache: BaseCache, serializer: tuple[str, Any]
) -> None:
    if serializer[0] not in ("json", "msgpack", "custom-json"):
        pytest.skip("pickle stores tuples as they are")
    cache.set("key", [1])
    with pytest.raises(UnsupportedValue, match="'tuple' object"):
        cache.set("key", (1, 2))
    with pytest.raises(UnsupportedValue):
        cache.set_many({"key": [2], "other": {"a": (1,)}})
    assert cache.get("key") == [1]
    assert not cache.has_key("other")


def test_decorated_calls_hit(cache: BaseCache) -> None:
    calls = []

    @cached(cache=cache)
    def report(n: int) -> dict[str, Any]:
        calls.append(n)
        return {"n": n, "rows": [{"i": i} for i in range(20)]}

    assert report(1) == report(1) == {"n": 1, "rows": [{"i": i} for i in range(20)]}
    assert calls == [1]


def test_decorated_calls_are_invalidated_and_awaited(cache: BaseCache) -> None:
    # The versions in the header are memokit's whatever the serializer: invalidating
    # a call or a tag misses once, on sync and async functions alike.
    calls: list[str] = []

    @cached(cache=cache, name="axis-sync", tags=("axis:{n}",))
    def rows(n: int) -> list[dict[str, int]]:
        calls.append("sync")
        return [{"n": n}]

    @cached(cache=cache, name="axis-async", tags=("axis:{n}",))
    async def arows(n: int) -> list[dict[str, int]]:
        calls.append("async")
        return [{"n": n}]

    async def both() -> list[Any]:
        return [rows(1), await arows(1)]

    assert asyncio.run(both()) == asyncio.run(both()) == [[{"n": 1}]] * 2
    rows.invalidate(1)
    asyncio.run(both())
    invalidate_tags("axis:1", cache=cache)
    asyncio.run(both())
    asyncio.run(both())
    assert calls == ["sync", "async", "sync", "sync", "async"]


def test_shared_cached_property_hits(cache: BaseCache, module_level: Any) -> None:
    runs: list[int] = []

    @module_level
    class Account:
        def __init__(self, pk: int) -> None:
            self.pk = pk

        def __cache_key__(self) -> int:
            return self.pk

        @cached_property(cache=cache)
        def summary(self) -> dict[str, Any]:
            runs.append(self.pk)
            return {"pk": self.pk, "lines": ["a", "b"]}

    assert Account(1).summary == {"pk": 1, "lines": ["a", "b"]}
    assert Account(1).summary == {"pk": 1, "lines": ["a", "b"]}  # another instance: shared
    assert runs == [1]


def test_waiters_of_one_flight_each_decode_their_own_copy(cache: BaseCache) -> None:
    # The leader encodes the entry once; each waiter decodes its copy from it.
    started, release = threading.Event(), threading.Event()

    @cached(cache=cache, name="waiters-own-copy")
    def rows() -> list[dict[str, int]]:
        started.set()
        release.wait(10)
        return [{"i": 1}]

    results: list[Any] = []
    callers = [threading.Thread(target=lambda: results.append(rows())) for _ in range(3)]
    callers[0].start()
    assert started.wait(10)
    for caller in callers[1:]:
        caller.start()
    flights = rows._state.flights._flights
    deadline = time.monotonic() + 10
    while sum(f.waiters for f in list(flights.values())) < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    release.set()
    for caller in callers:
        caller.join(10)
    assert results == [[{"i": 1}]] * 3
    assert len({id(result) for result in results}) == 3


def test_rotation_reads_old_secrets_and_misses_unknown_ones(make_cache: CacheFactory) -> None:
    # Off the axis: signing only. A value and a decorated entry signed with an old
    # secret are read; signed with a secret the reader does not know, each is a miss.
    old, new, unknown = SECRET, "rotated-secret-" + "n" * 40, "unknown-secret-" + "u" * 40
    reader = make_cache(OPTIONS={"SECRET": new, "OLD_SECRETS": [old]})
    if not cache_signs(reader):
        pytest.skip("a SECRET alone does not sign a store only this process writes")
    computed: list[str] = []

    def decorated(cache: BaseCache, name: str) -> Any:
        @cached(cache=cache, name=f"rotation-{name}")
        def report() -> dict[str, str]:
            computed.append(name)
            return {"by": name}

        return report

    for name, secret in (("old", old), ("unknown", unknown)):
        writer = make_cache(OPTIONS={"SECRET": secret})
        writer.set(name, [name])
        assert decorated(writer, name)() == {"by": name}
    computed.clear()
    assert reader.get("old") == ["old"]
    assert decorated(reader, "old")() == {"by": "old"}
    assert computed == []  # read, not computed again
    with pytest.warns(CorruptEntryWarning, match="signature does not match"):
        assert reader.get("unknown", "miss") == "miss"
    with pytest.warns(CorruptEntryWarning, match="signature does not match"):
        assert decorated(reader, "unknown")() == {"by": "unknown"}
    assert computed == ["unknown"]


def cache_signs(cache: BaseCache) -> bool:
    return isinstance(cache.serializer, FramedSerializer) and cache.serializer.signer is not None
