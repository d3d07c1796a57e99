"""The public registry: how an application declares the key of a type."""

from __future__ import annotations

import datetime
import zoneinfo
from collections.abc import Iterator

import pytest

import memokit
from memokit import BaseCache, UnkeyableArgument, cached
from memokit.keyencoding import encode


class Money:
    def __init__(self, amount: int, currency: str) -> None:
        self.amount = amount
        self.currency = currency

    def __repr__(self) -> str:
        return f"Money({self.amount}, {self.currency!r})"


class Euros(Money):
    pass


class Shown:
    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    yield
    for cls in (Money, Shown):
        memokit.unregister_key(cls)


def test_a_registered_type_is_keyed_by_what_it_declares(store: BaseCache) -> None:
    @cached(cache=store)
    def convert(money: Money) -> int:
        return money.amount * (2 if money.currency == "USD" else 1)

    with pytest.raises(UnkeyableArgument, match="register_key"):
        convert(Money(1, "EUR"))
    memokit.register_key(Money, lambda m: (m.amount, m.currency))
    assert convert(Money(1, "EUR")) == 1
    assert convert(Money(1, "USD")) == 2
    assert convert(Money(1, "USD")) == 2
    assert convert.cache_info().hits == 1
    # Subclasses use the entry, with their own class in the key.
    assert convert.key(Euros(1, "EUR")) != convert.key(Money(1, "EUR"))
    memokit.unregister_key(Money)
    with pytest.raises(UnkeyableArgument):
        convert(Money(1, "EUR"))


def test_repr_keys_are_an_explicit_per_type_opt_in(store: BaseCache) -> None:
    @cached(cache=store)
    def show(value: Shown) -> str:
        return value.text

    with pytest.raises(UnkeyableArgument, match="key_by_repr"):
        show(Shown("a"))
    memokit.key_by_repr(Shown)
    assert show(Shown("a")) == "a"
    assert show.key(Shown("a")) != show.key(Shown("b"))
    with pytest.raises(UnkeyableArgument, match="memory address"):
        show(Shown(f"<x at {hex(id(store))}>"))
    with pytest.raises(UnkeyableArgument, match="truncated"):
        show(Shown("[1, ..., 9]"))
    with pytest.raises(UnkeyableArgument):
        show.key(Euros(1, "x"))  # type: ignore[arg-type]  # the opt-in is per exact type


def test_registry_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="takes a class"):
        memokit.register_key(Money(1, "x"), str)  # type: ignore[arg-type]  # under test
    with pytest.raises(TypeError, match="needs a callable"):
        memokit.register_key(Money, "amount")  # type: ignore[arg-type]  # under test
    with pytest.raises(TypeError, match="takes a class"):
        memokit.key_by_repr("Money")  # type: ignore[arg-type]  # under test


def test_a_registered_key_must_itself_be_keyed() -> None:
    memokit.register_key(Money, lambda m: object())
    with pytest.raises(UnkeyableArgument):
        encode(Money(1, "x"))


def test_zones_are_part_of_a_datetimes_key() -> None:
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    fixed = datetime.timezone(datetime.timedelta(hours=1))
    moment = datetime.datetime(2024, 1, 2, 3, 4)
    assert encode(moment.replace(tzinfo=paris)) != encode(moment.replace(tzinfo=fixed))
    assert encode(moment.replace(tzinfo=paris)) == encode(
        moment.replace(tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    )
    assert encode(moment) != encode(moment.replace(tzinfo=datetime.UTC))
    # The two sides of a DST change: same wall time, other fold.
    assert encode(moment.replace(fold=1)) != encode(moment)
