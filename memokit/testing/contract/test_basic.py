"""The single-key contract: set, get, add, delete, has_key, get_or_set, clear."""

from __future__ import annotations

import zlib

import pytest

from memokit import MISSING, BaseCache


def test_set_then_get(cache: BaseCache) -> None:
    assert cache.set("key", "value") is None
    assert cache.get("key") == "value"


def test_missing_key_gives_default(cache: BaseCache) -> None:
    assert cache.get("missing") is None
    assert cache.get("missing", "fallback") == "fallback"


def test_stored_none_is_a_value_not_a_miss(cache: BaseCache) -> None:
    cache.set("key", None)
    assert cache.get("key", "default") is None
    assert cache.has_key("key")
    assert "key" in cache


def test_set_overwrites(cache: BaseCache) -> None:
    cache.set("key", 1)
    cache.set("key", 2)
    assert cache.get("key") == 2


def test_add_stores_only_when_absent(cache: BaseCache) -> None:
    assert cache.add("key", "first") is True
    assert cache.add("key", "second") is False
    assert cache.get("key") == "first"


def test_delete(cache: BaseCache) -> None:
    cache.set("key1", "a")
    cache.set("key2", "b")
    assert cache.delete("key1") is True
    assert cache.get("key1") is None
    assert cache.get("key2") == "b"
    assert cache.delete("key1") is False
    assert cache.delete("never-set") is False


def test_has_key_and_in(cache: BaseCache) -> None:
    cache.set("hello", "world")
    cache.set("forever", 1, timeout=None)
    assert cache.has_key("hello")
    assert "hello" in cache
    assert cache.has_key("forever")
    assert not cache.has_key("goodbye")
    assert "goodbye" not in cache


def test_clear_removes_everything(cache: BaseCache) -> None:
    cache.set_many({"a": 1, "b": 2})
    assert cache.clear() is None
    assert cache.get_many(["a", "b"]) == {}


def test_close_can_be_called_and_cache_still_works(cache: BaseCache) -> None:
    cache.set("key", 1)
    assert cache.close() is None
    assert cache.get("key") == 1


class Thing:
    def __init__(self, n: int) -> None:
        self.n = n

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Thing) and other.n == self.n

    __hash__ = None  # type: ignore[assignment]  # mutable test value


def module_function() -> int:
    return 42


@pytest.mark.parametrize(
    "value",
    [
        "string",
        "",
        42,
        -7,
        2**80,
        1.5,
        True,
        False,
        None,
        b"bytes",
        [1, "two", None],
        (1, 2),
        {"a": [1, {"b": 2}]},
        {1, 2},
        frozenset({3}),
        1 + 2j,
        Thing(3),
        module_function,
        Thing,
    ],
    ids=repr,
)
def test_values_round_trip(cache: BaseCache, value: object) -> None:
    cache.set("key", value)
    result = cache.get("key")
    assert result == value
    assert type(result) is type(value)


def test_unicode_keys_and_values(cache: BaseCache) -> None:
    data = {
        "ascii": "ascii_value",
        "unicode_ascii": "Iñtërnâtiônàlizætiøn1",
        "Iñtërnâtiônàlizætiøn": "Iñtërnâtiônàlizætiøn2",
        "ascii2": {"x": 1},
        "清": "漢字",
    }
    for key, value in data.items():
        cache.set(key, value)
        assert cache.get(key) == value
        cache.delete(key)
        assert cache.add(key, value) is True
        assert cache.get(key) == value
    cache.delete_many(data)
    cache.set_many(data)
    assert cache.get_many(data) == data


def test_binary_values(cache: BaseCache) -> None:
    compressed = zlib.compress(b"value to be compressed" * 10)
    cache.set("binary", compressed)
    assert zlib.decompress(cache.get("binary")) == b"value to be compressed" * 10
    assert cache.add("binary2", compressed) is True
    assert cache.get("binary2") == compressed
    cache.set_many({"binary3": compressed})
    assert cache.get("binary3") == compressed


def test_non_string_keys_are_formatted_like_django(cache: BaseCache) -> None:
    cache.set(42, "int key")
    assert cache.get("42") == "int key"
    cache.set(b"bk", "bytes key")
    assert cache.get("b'bk'") == "bytes key"


def test_get_or_set_stores_and_returns_default(cache: BaseCache) -> None:
    assert cache.get("projector") is None
    assert cache.get_or_set("projector", 42) == 42
    assert cache.get("projector") == 42
    assert cache.get_or_set("projector", 99) == 42


def test_get_or_set_stores_none(cache: BaseCache) -> None:
    assert cache.get_or_set("null", None) is None
    assert cache.has_key("null")
    assert cache.get("null", "default") is None


def test_get_or_set_calls_a_callable_only_on_a_miss(cache: BaseCache) -> None:
    calls = []

    def make() -> str:
        calls.append(1)
        return "made"

    assert cache.get_or_set("key", make) == "made"
    assert cache.get_or_set("key", make) == "made"
    assert len(calls) == 1
    assert cache.get_or_set("none", lambda: None) is None
    assert cache.has_key("none")


def test_get_or_set_requires_default(cache: BaseCache) -> None:
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'default'"):
        cache.get_or_set("key")  # type: ignore[call-arg]


def test_get_or_set_returns_the_racing_writers_value(
    cache: BaseCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another writer stores a value between our read and our write: its value wins.
    # The race is made at the read (which misses, as it would have a moment
    # earlier), so a backend that writes with an atomic "add or return" is
    # checked the same way as one that calls _add and reads again.
    cache.set("key", "theirs")
    real_get = cache._get
    reads = []

    def early_get(key: str) -> object:
        reads.append(key)
        return MISSING if len(reads) == 1 else real_get(key)

    monkeypatch.setattr(cache, "_get", early_get)
    assert cache.get_or_set("key", "ours") == "theirs"
    assert cache.get("key") == "theirs"


def test_get_or_set_returns_default_when_add_fails_and_nothing_is_there(
    cache: BaseCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "_add", lambda key, payload, timeout: False)
    assert cache.get_or_set("key", "default") == "default"


def test_instances_on_one_location_share_data(make_cache: object) -> None:
    first = make_cache()  # type: ignore[operator]
    second = make_cache()  # type: ignore[operator]
    first.set("shared", 1)
    assert second.get("shared") == 1


class Lossy:
    """A serializer whose round trip changes the value, as JSON turns tuples into lists."""

    def dumps(self, value: object) -> bytes:
        import pickle

        return pickle.dumps(list(value) if isinstance(value, tuple) else value)

    def loads(self, data: bytes) -> object:
        import pickle

        return pickle.loads(data)


def test_get_or_set_returns_what_a_hit_will_return(make_cache: object) -> None:
    cache = make_cache(OPTIONS={"SERIALIZER": Lossy()})  # type: ignore[operator]
    if not cache.capabilities.stores:
        pytest.skip("nothing is stored")
    assert cache.get_or_set("key", (1, 2)) == [1, 2]
    assert cache.get_or_set("key", (1, 2)) == [1, 2]
