"""incr and decr."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from fractions import Fraction

import pytest

from memokit import BaseCache


def test_incr(cache: BaseCache) -> None:
    cache.set("answer", 41)
    assert cache.incr("answer") == 42
    assert cache.get("answer") == 42
    assert cache.incr("answer", 10) == 52
    assert cache.incr("answer", -10) == 42
    with pytest.raises(ValueError, match="Key 'does_not_exist' not found"):
        cache.incr("does_not_exist")
    with pytest.raises(ValueError, match="Key 'does_not_exist' not found"):
        cache.incr("does_not_exist", -1)
    cache.set("null", None)
    with pytest.raises(TypeError):
        cache.incr("null")


def test_decr(cache: BaseCache) -> None:
    cache.set("answer", 43)
    assert cache.decr("answer") == 42
    assert cache.get("answer") == 42
    assert cache.decr("answer", 10) == 32
    assert cache.decr("answer", -10) == 42
    with pytest.raises(ValueError, match="Key 'does_not_exist' not found"):
        cache.decr("does_not_exist")
    cache.set("null", None)
    with pytest.raises(TypeError):
        cache.decr("null")


def test_decr_below_zero(cache: BaseCache) -> None:
    cache.set("key", 1)
    assert cache.decr("key", 5) == -4


def test_incr_big_ints(cache: BaseCache) -> None:
    cache.set("key", 2**64)
    assert cache.incr("key") == 2**64 + 1


# -- deltas: the same types on every backend, checked before any I/O ---------------------
# On 54ac4a8 a delta that was not exactly an int made Redis and Memcached scan a
# 2**64-element range (holding the GIL for floats), and SQLite store a REAL that no
# later get or incr could read.


class Index:
    """An integer type that is not an int, as numpy's are: it has ``__index__``."""

    def __index__(self) -> int:
        return 2


ACCEPTED = [
    pytest.param(1, 11, id="int"),
    pytest.param(Index(), 12, id="__index__"),
    pytest.param(0.5, 10.5, id="float"),
    pytest.param(1.0, 11.0, id="float-whole"),
]
REFUSED = [
    pytest.param(Fraction(1), id="Fraction"),
    pytest.param(Decimal(1), id="Decimal"),
    pytest.param("1", id="str"),
    pytest.param(None, id="None"),
    pytest.param(True, id="bool"),
    pytest.param(1j, id="complex"),
]


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("delta", "expected"), ACCEPTED)
def test_incr_and_decr_take_int_index_and_float_deltas(
    cache: BaseCache, delta: object, expected: float
) -> None:
    cache.set("score", 10)
    result = cache.incr("score", delta)  # type: ignore[arg-type]  # Index is not an int
    assert result == expected
    assert type(result) is type(expected)
    # Whatever was stored stays readable, and counts on (SQLite once stored a REAL).
    assert cache.get("score") == expected
    assert cache.get_many(["score"]) == {"score": expected}
    assert cache.incr("score", 1) == expected + 1
    assert cache.decr("score", delta) == expected + 1 - (expected - 10)  # type: ignore[arg-type]
    assert cache.get("score") == 11


@pytest.mark.timeout(20)
def test_numpy_integer_deltas_work(cache: BaseCache) -> None:
    numpy = pytest.importorskip("numpy")
    cache.set("score", 10)
    assert cache.incr("score", numpy.int64(2)) == 12
    assert cache.decr("score", numpy.int32(1)) == 11
    assert type(cache.get("score")) is int
    cache.set("x", 1.5)
    assert cache.incr("x", numpy.float64(0.5)) == 2.0


@pytest.mark.timeout(20)
@pytest.mark.parametrize("delta", REFUSED)
def test_other_deltas_raise_type_error_before_any_io(cache: BaseCache, delta: object) -> None:
    cache.set("score", 10)
    for call in (cache.incr, cache.decr):
        with pytest.raises(TypeError, match="delta must be an int"):
            call("score", delta)  # type: ignore[operator]
        # Checked before the store is asked: a missing key gives the same TypeError.
        with pytest.raises(TypeError, match="delta must be an int"):
            call("missing", delta)  # type: ignore[operator]
    assert cache.get("score") == 10


@pytest.mark.timeout(20)
def test_async_twins_check_deltas_alike(cache: BaseCache) -> None:
    async def scenario() -> None:
        await cache.aset("score", 10)
        assert await cache.aincr("score", 0.5) == 10.5
        assert await cache.adecr("score", Index()) == 8.5
        assert await cache.aget("score") == 8.5
        for delta in (Fraction(1), "1", None, True):
            with pytest.raises(TypeError, match="delta must be an int"):
                await cache.aincr("missing", delta)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="delta must be an int"):
                await cache.adecr("score", delta)  # type: ignore[arg-type]
        assert await cache.aget("score") == 8.5

    asyncio.run(scenario())
