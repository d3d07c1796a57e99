"""``@cached`` on wrapt: introspection, every binding form, helpers, pickling (issue 16)."""

from __future__ import annotations

import asyncio
import copy
import inspect
import pickle
import subprocess
import sys
import textwrap
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from memokit import AsyncCachedFunction, BaseCache, CachedFunction, cached, cached_property
from memokit.testing import isolated_cache

# -- module-level objects, found by reference when pickled ----------------------------


@cached
def add(x: int, y: int = 1) -> int:
    """Add, slowly."""
    return x + y


@cached
async def aadd(x: int) -> int:
    """Add one, asynchronously."""
    return x + 1


_plain = add.__wrapped__
_aplain = aadd.__wrapped__


class Row:
    """A record with an identity, and every kind of cached method."""

    runs = 0

    def __init__(self, pk: int) -> None:
        self.pk = pk

    def __cache_key__(self) -> int:
        return self.pk

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Row) and other.pk == self.pk

    def __hash__(self) -> int:
        return hash(self.pk)

    @cached
    def label(self, word: str) -> str:
        Row.runs += 1
        return f"{word} {self.pk}"

    @cached
    async def alabel(self, word: str) -> str:
        Row.runs += 1
        return f"{word} {self.pk}"

    @cached
    @classmethod
    def kind(cls, n: int) -> str:
        Row.runs += 1
        return f"{cls.__name__}:{n}"

    @cached
    @staticmethod
    def twice(n: int) -> int:
        Row.runs += 1
        return 2 * n


class SubRow(Row):
    pass


class Report:
    """An instance with async cached properties (pickled and deep-copied below)."""

    computed = 0

    def __init__(self, n: int) -> None:
        self.n = n

    @cached_property
    async def total(self) -> int:
        Report.computed += 1
        return self.n * 10

    @cached_property(timeout=60)
    async def timed_total(self) -> int:
        Report.computed += 1
        return self.n * 100


# -- introspection --------------------------------------------------------------------


def test_a_decorated_function_is_a_function_to_inspect() -> None:
    # Failed on 45a0143: inspect.isfunction() was False.
    assert inspect.isfunction(add)
    assert isinstance(add, types.FunctionType)
    assert isinstance(add, CachedFunction)
    assert not inspect.iscoroutinefunction(add)


def test_a_decorated_coroutine_function_is_a_coroutine_function() -> None:
    assert inspect.isfunction(aadd)
    assert inspect.iscoroutinefunction(aadd)
    assert isinstance(aadd, AsyncCachedFunction)


@pytest.mark.parametrize(("decorated", "original"), [(add, _plain), (aadd, _aplain)])
def test_metadata_is_the_functions(decorated: Any, original: Any) -> None:
    assert decorated.__wrapped__ is original
    assert decorated.__name__ == original.__name__
    assert decorated.__qualname__ == original.__qualname__
    assert decorated.__module__ == original.__module__
    assert decorated.__doc__ == original.__doc__
    assert decorated.__annotations__ == original.__annotations__
    assert inspect.get_annotations(decorated) == inspect.get_annotations(original)
    assert typing.get_type_hints(decorated) == typing.get_type_hints(original)
    # Reading the classes' annotations leaves the instances' alone.
    assert inspect.get_annotations(type(decorated)) == {}
    assert decorated.__annotations__ == original.__annotations__
    assert inspect.signature(decorated) == inspect.signature(original)
    assert hasattr(decorated, "__signature__") is hasattr(original, "__signature__")


def test_a_declared_signature_is_seen_through_the_wrapper() -> None:
    def shaped(*args: Any) -> int:
        return len(args)

    shaped.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("a", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    )
    with isolated_cache():
        made = cached(name="shaped")(shaped)
        assert made.__signature__ is shaped.__signature__  # type: ignore[attr-defined]
        assert list(inspect.signature(made).parameters) == ["a"]
        assert made(1) == 1


def test_bound_methods_are_methods_to_inspect() -> None:
    row = Row(1)
    bound = row.label
    assert inspect.ismethod(bound)
    assert bound.__self__ is row
    assert bound.__func__ is Row.__dict__["label"].__wrapped__
    assert bound.__wrapped__ == types.MethodType(bound.__func__, row)
    assert list(inspect.signature(bound).parameters) == ["word"]
    assert inspect.iscoroutinefunction(row.alabel)
    assert not inspect.iscoroutinefunction(row.label)
    assert isinstance(bound, CachedFunction)
    assert bound.__name__ == "label"
    assert bound.__doc__ is None
    assert Row.kind.__self__ is Row
    assert SubRow.kind.__self__ is SubRow
    assert list(inspect.signature(Row.kind).parameters) == ["n"]
    assert inspect.isfunction(Row.twice)


def test_copies_of_a_decorated_function_are_the_function() -> None:
    assert copy.copy(add) is add
    assert copy.deepcopy(add) is add
    holder = {"f": add}
    assert copy.deepcopy(holder)["f"] is add


# -- every binding form, on every backend ---------------------------------------------


def _classes(cache: BaseCache, module_level: Callable[[type[Any]], type[Any]]) -> Any:
    runs: list[str] = []

    class Account:
        def __init__(self, pk: int) -> None:
            self.pk = pk

        def __cache_key__(self) -> int:
            return self.pk

        @cached(cache=cache)
        def balance(self, day: int) -> str:
            runs.append("balance")
            return f"{type(self).__name__} {self.pk} on {day}"

        @cached(cache=cache)
        async def abalance(self, day: int) -> str:
            runs.append("abalance")
            return f"{self.pk} on {day}"

        @cached(cache=cache)
        @classmethod
        def rate(cls, day: int) -> str:
            runs.append("rate")
            return f"{cls.__name__} rate {day}"

        @classmethod
        @cached(cache=cache)
        def rate_below(cls, day: int) -> str:
            runs.append("rate_below")
            return f"{cls.__name__} rate {day}"

        @cached(cache=cache)
        @staticmethod
        def fee(day: int) -> int:
            runs.append("fee")
            return day * 2

        @staticmethod
        @cached(cache=cache)
        def fee_below(day: int) -> int:
            runs.append("fee_below")
            return day * 3

    class Savings(Account):
        def balance(self, day: int) -> str:  # type: ignore[override]
            return "savings: " + super().balance(day)

        def balance_key(self, day: int) -> str:
            return super().balance.key(day)  # type: ignore[no-any-return]

    module_level(Account)
    module_level(Savings)
    return Account, Savings, runs


@pytest.fixture
def bank(cache: BaseCache, module_level: Callable[[type[Any]], type[Any]]) -> Any:
    return _classes(cache, module_level)


def test_instance_binding_and_through_the_class(bank: Any) -> None:
    account_cls, _, runs = bank
    account = account_cls(1)
    assert account.balance(3) == "Account 1 on 3"
    assert account.balance(3) == "Account 1 on 3"
    assert account_cls.balance(account, 3) == "Account 1 on 3"  # via the class: the same entry
    assert account_cls(1).balance(3) == "Account 1 on 3"  # another object, the same identity
    assert runs == ["balance"]
    assert account.balance.key(3) == account_cls.balance.key(account, 3)


def test_subclass_and_super_share_the_methods_entries(bank: Any) -> None:
    account_cls, savings_cls, runs = bank
    savings = savings_cls(2)
    assert savings.balance(4) == "savings: Savings 2 on 4"
    assert savings.balance(4) == "savings: Savings 2 on 4"
    assert runs == ["balance"]
    assert savings.balance_key(4) == account_cls.balance.key(savings, 4)
    # Through super() the helpers bind the instance too.
    assert savings.balance_key(4) != account_cls.balance.key(account_cls(2), 5)


@pytest.mark.parametrize("name", ["rate", "rate_below"])
def test_classmethods_in_either_order_bind_the_class(bank: Any, name: str) -> None:
    account_cls, savings_cls, runs = bank
    assert getattr(account_cls, name)(1) == "Account rate 1"
    assert getattr(account_cls(5), name)(1) == "Account rate 1"
    assert getattr(savings_cls, name)(1) == "Savings rate 1"  # the class is in the key
    assert getattr(savings_cls(5), name)(1) == "Savings rate 1"
    assert runs == [name, name]


@pytest.mark.parametrize("name", ["fee", "fee_below"])
def test_staticmethods_in_either_order_bind_nothing(bank: Any, name: str) -> None:
    account_cls, savings_cls, runs = bank
    assert getattr(account_cls, name)(2) == getattr(account_cls(1), name)(2)
    assert getattr(savings_cls(1), name)(2) == getattr(account_cls, name)(2)
    assert getattr(account_cls, name).key(2) == getattr(savings_cls(9), name).key(2)
    assert runs == [name]


def test_helpers_bind_like_the_call_on_an_instance(bank: Any) -> None:
    account_cls, _, runs = bank
    account = account_cls(1)
    bound = account.balance
    assert bound(3) == "Account 1 on 3"
    assert bound.cache_info().misses >= 1
    assert bound.cache is account_cls.balance.cache
    assert bound.uncached(3) == "Account 1 on 3"  # runs, does not store
    assert bound.invalidate(3) is True
    assert bound.invalidate(3) is False
    assert bound.refresh(3) == "Account 1 on 3"
    assert bound(3) == "Account 1 on 3"  # the refreshed entry
    assert runs == ["balance", "balance", "balance"]
    assert isinstance(bound.invalidate_all(), int)
    assert bound(3) == "Account 1 on 3"
    assert runs == ["balance"] * 4


def test_helpers_bind_the_class_of_a_classmethod(bank: Any) -> None:
    account_cls, savings_cls, runs = bank
    assert savings_cls.rate(1) == "Savings rate 1"
    assert savings_cls.rate.key(1) == savings_cls(3).rate.key(1)
    assert savings_cls.rate.key(1) != account_cls.rate.key(1)
    assert account_cls.rate.invalidate(1) is False  # only Savings' entry exists
    assert savings_cls(3).rate.invalidate(1) is True
    assert savings_cls.rate.refresh(1) == "Savings rate 1"
    assert savings_cls.rate.uncached(2) == "Savings rate 2"
    assert runs == ["rate"] * 3


def test_async_methods_and_their_helpers_bind(bank: Any) -> None:
    account_cls, _, runs = bank
    account = account_cls(7)

    async def main() -> list[Any]:
        bound = account.abalance
        return [
            await bound(1),
            await account_cls.abalance(account, 1),
            await bound.invalidate(1),
            await bound.refresh(1),
            await bound(1),
            bound.key(1) == account_cls.abalance.key(account, 1),
        ]

    assert asyncio.run(main()) == ["7 on 1", "7 on 1", True, "7 on 1", "7 on 1", True]
    assert runs == ["abalance", "abalance"]


def test_binding_twice_keeps_the_binding(bank: Any) -> None:
    account_cls, _, _ = bank
    account, other = account_cls(1), account_cls(2)
    bound = account.balance
    assert bound.__get__(other, account_cls) is bound
    assert account_cls.__dict__["fee"].__get__(account, account_cls) is account_cls.__dict__["fee"]


# -- pickling ------------------------------------------------------------------------


def _round_trip(obj: Any) -> Any:
    return pickle.loads(pickle.dumps(obj))


def test_functions_pickle_by_reference() -> None:
    assert _round_trip(add) is add
    assert _round_trip(aadd) is aadd
    assert _round_trip(Row.__dict__["label"]) is Row.__dict__["label"]
    through_class = _round_trip(Row.label)
    assert through_class.__wrapped__ is Row.__dict__["label"].__wrapped__
    assert _round_trip(SubRow.label)._self_owner is SubRow
    assert _round_trip(Row.twice) is Row.__dict__["twice"]


def test_a_bound_method_pickles_as_its_instances_attribute() -> None:
    # Failed on 45a0143: pickle found the unbound function, not the bound method.
    with isolated_cache():
        row = Row(4)
        copied = _round_trip(row.label)
        assert copied.__self__ == row
        assert copied("hi") == row.label("hi") == "hi 4"
        assert copied.key("hi") == row.label.key("hi")


def test_a_classmethod_reached_through_a_subclass_pickles() -> None:
    # Failed on 45a0143: pickle found Row.kind's unbound function under SubRow.kind.
    with isolated_cache():
        copied = _round_trip(SubRow.kind)
        assert copied.__self__ is SubRow
        assert copied(2) == "SubRow:2"
        assert _round_trip(Row(1).kind).__self__ is Row


def test_async_cached_properties_pickle_and_deep_copy() -> None:
    # Failed on 45a0143: the awaited value held a lock, so pickle and deepcopy refused it.
    Report.computed = 0

    async def main() -> list[Any]:
        report = Report(3)
        done = [await report.total, await report.timed_total]
        pending = Report(4)
        pending.total  # noqa: B018 - read, never awaited: a pending computation
        copies = [_round_trip(report), copy.deepcopy(report)]
        pending_copies = [_round_trip(pending), copy.deepcopy(pending)]
        found = done + [await c.total for c in copies] + [await c.timed_total for c in copies]
        found += [await c.total for c in pending_copies]
        return found

    assert asyncio.run(main()) == [30, 300, 30, 30, 300, 300, 40, 40]
    assert Report.computed == 4  # two first reads, then one per copy of the pending one


_CHILD_MODULE = textwrap.dedent(
    """
    from memokit import cached, cached_property


    class Point:
        def __init__(self, x):
            self.x = x

        def __cache_key__(self):
            return self.x

        @cached
        def scaled(self, factor):
            return self.x * factor

        @cached
        @classmethod
        def origin(cls, z):
            return f"{cls.__name__} {z}"

        @cached_property
        async def norm(self):
            return abs(self.x)


    class Point3(Point):
        pass


    @cached
    def square(n):
        return n * n
    """
)


def test_pickled_decorated_callables_work_in_another_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "wrapt_child_module.py"
    module.write_text(_CHILD_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import wrapt_child_module as shapes  # type: ignore[import-not-found]

    async def read_norm(point: Any) -> int:
        return await point.norm  # type: ignore[no-any-return]

    point = shapes.Point(-3)
    assert asyncio.run(read_norm(point)) == 3  # awaited before pickling
    payload = pickle.dumps((point.scaled, shapes.Point3.origin, shapes.square, point))
    child = textwrap.dedent(
        """
        import asyncio, pickle, sys

        bound, origin, square, point = pickle.loads(sys.stdin.buffer.read())

        async def norm():
            return await point.norm

        print(bound(2), origin(5), square(4), asyncio.run(norm()), bound.__self__ is point)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", child],
        input=payload,
        capture_output=True,
        timeout=60,
        check=False,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().split() == ["-6", "Point3", "5", "16", "3", "True"]
    sys.modules.pop("wrapt_child_module", None)
