"""Key builders: injective, canonical, stable across processes, memcached-safe (K1-K3)."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import memokit
from memokit.keybuilders import (
    MAX_KEY_LENGTH,
    UnkeyableArgument,
    encode,
    function_name,
    make_binder,
    make_callable_builder,
    make_key_builder,
    make_template_builder,
)
from memokit.keys import memcache_key_warnings


def two(a: Any, b: Any = "") -> None: ...


def one(a: Any = "default") -> None: ...


def variadic(*args: Any) -> None: ...


def keywords(**kwargs: Any) -> None: ...


def everything(a: Any, /, b: Any = 2, *args: Any, c: Any, d: Any = 4, **kw: Any) -> None: ...


class A:
    @classmethod
    def active(cls) -> None: ...


class B(A):
    pass


def key_of(func: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    return make_key_builder(func)(args, kwargs)


def elsewhere() -> Callable[..., Any]:
    def two(a: Any, b: Any = "") -> None: ...

    two.__module__ = "another.module"
    two.__qualname__ = "two"
    return two


def make_local() -> Callable[[], None]:
    def inner() -> None: ...

    return inner


# Pairs of calls that must get different keys.
DIFFERENT: list[tuple[str, str, str]] = [
    ("space vs two args", key_of(variadic, "a b"), key_of(variadic, "a", "b")),
    ("separator inside", key_of(variadic, "a:b", "c"), key_of(variadic, "a", "b:c")),
    ("comma inside", key_of(variadic, "a,b", "c"), key_of(variadic, "a", "b,c")),
    ("parenthesis inside", key_of(variadic, "a)", "b"), key_of(variadic, "a", ")b")),
    ("digits split 1|23 vs 12|3", key_of(variadic, 1, 23), key_of(variadic, 12, 3)),
    ("digits split vs one", key_of(variadic, 1, 23), key_of(variadic, 123)),
    ("int vs str", key_of(one, 1), key_of(one, "1")),
    ("int vs float", key_of(one, 1), key_of(one, 1.0)),
    ("int vs bool", key_of(one, 1), key_of(one, True)),
    ("float vs bool", key_of(one, 1.0), key_of(one, True)),
    ("None vs empty str", key_of(one, None), key_of(one, "")),
    ("None vs default", key_of(one, None), key_of(one)),
    ("empty str vs default", key_of(one, ""), key_of(one)),
    ("str vs bytes", key_of(one, "ab"), key_of(one, b"ab")),
    ("tuple vs list", key_of(one, (1, 2)), key_of(one, [1, 2])),
    ("set vs frozenset", key_of(one, {1}), key_of(one, frozenset({1}))),
    ("nested vs flat", key_of(variadic, (1, 2), 3), key_of(variadic, 1, (2, 3))),
    ("kwargs names", key_of(keywords, a="b=1"), key_of(keywords, **{"a=b": "1"})),
    ("kwargs vs args", key_of(everything, 1, c=3, x=5), key_of(everything, 1, 2, 5, c=3)),
    ("classmethod owner", key_of(A.active.__func__, A), key_of(A.active.__func__, B)),
    ("same name, two modules", key_of(two, 1), key_of(elsewhere(), 1)),
    ("dict keys vs values", key_of(one, {"a": "b"}), key_of(one, {"b": "a"})),
    ("1 vs True as dict key", key_of(one, {1: "x"}), key_of(one, {True: "x"})),
    ("big ints", key_of(one, 10**30), key_of(one, 10**30 + 1)),
    ("negative", key_of(one, -1), key_of(one, 1)),
    ("0.0 vs -0.0", key_of(one, 0.0), key_of(one, -0.0)),
    ("unicode", key_of(one, "é"), key_of(one, "e\u0301")),
]


@pytest.mark.parametrize(
    ("first", "second"), [d[1:] for d in DIFFERENT], ids=[d[0] for d in DIFFERENT]
)
def test_different_calls_get_different_keys(first: str, second: str) -> None:
    assert first != second


def defaulted(a: Any, b: Any = 2) -> None: ...


SAME: list[tuple[str, str, str]] = [
    ("default applied", key_of(defaulted, 1), key_of(defaulted, 1, 2)),
    ("keyword", key_of(defaulted, 1, 2), key_of(defaulted, 1, b=2)),
    ("keywords reordered", key_of(defaulted, 1, b=2), key_of(defaulted, b=2, a=1)),
    ("all keywords", key_of(defaulted, a=1), key_of(defaulted, 1)),
    ("dict order", key_of(one, {"a": 1, "b": 2}), key_of(one, {"b": 2, "a": 1})),
    ("set order", key_of(one, {"x", "y", "z"}), key_of(one, {"z", "y", "x"})),
    ("mixed set", key_of(one, {1, "1", None, 2.5}), key_of(one, {2.5, None, "1", 1})),
    ("kwargs order", key_of(keywords, x=1, y=2), key_of(keywords, y=2, x=1)),
    ("kw-only default", key_of(everything, 1, c=3), key_of(everything, 1, 2, c=3, d=4)),
]


@pytest.mark.parametrize(("first", "second"), [s[1:] for s in SAME], ids=[s[0] for s in SAME])
def test_equivalent_calls_get_one_key(first: str, second: str) -> None:
    assert first == second


def test_key_is_readable_when_short() -> None:
    # Key format 2 (the "k2:" mark): keys of format 1 had no mark.
    assert key_of(defaulted, 7) == f"k2:{__name__}:defaulted(i7,i2)"
    assert key_of(one, "abc") == f"k2:{__name__}:one(s3:abc)"


class Color(enum.Enum):
    RED = 1


class Point(NamedTuple):
    x: int
    y: int


@dataclasses.dataclass(frozen=True)
class Spot:
    x: int
    label: str = dataclasses.field(default="", compare=False)


class Account:
    def __init__(self, pk: int) -> None:
        self.pk = pk

    def __cache_key__(self) -> int:
        return self.pk


class Money:
    def __init__(self, amount: int) -> None:
        self.amount = amount

    def __repr__(self) -> str:
        return f"Money({self.amount})"


# Key format 2: a repr() is an identity only where the application says so.
memokit.key_by_repr(Money)


VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -5,
    10**5000,
    -(10**40),
    1.5,
    float("inf"),
    complex(1, 2),
    "",
    "text with spaces and , ( ) = :",
    b"\x00\xff",
    bytearray(b"ab"),
    (1, (2, 3)),
    [1, [2]],
    {"a": [1, {"b": None}]},
    {1, 2},
    frozenset({"a"}),
    range(1, 10, 2),
    decimal.Decimal("1.10"),
    uuid.UUID(int=5),
    datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
    datetime.date(2024, 1, 2),
    datetime.timedelta(days=1, seconds=2),
    Path("/tmp/x"),
    Color.RED,
    Point(1, 2),
    Spot(1),
    Account(5),
    Money(3),
    A,
    len,
    defaulted,
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_supported_values_encode(value: Any) -> None:
    assert encode(value) == encode(value)
    key = key_of(one, value)
    assert len(key) <= MAX_KEY_LENGTH
    assert memcache_key_warnings(key) == []


def test_all_supported_values_are_distinct() -> None:
    encodings = [encode(v) for v in VALUES]
    assert len(set(encodings)) == len(encodings)


def test_namedtuple_differs_from_tuple_and_dataclass_uses_compared_fields() -> None:
    assert encode(Point(1, 2)) != encode((1, 2))
    # Format 2 keys every field, compare=False ones too: they can change a result.
    assert encode(Spot(1, "a")) != encode(Spot(1, "b"))
    assert encode(Spot(1)) != encode(Spot(2))
    assert encode(Account(1)) != encode(Account(2))


def test_long_and_unsafe_keys_end_in_a_digest() -> None:
    for value in ("x" * 1000, "with space", "tab\there", "é", list(range(500))):
        key = key_of(one, value)
        assert key.startswith(f"k2:{__name__}:one#")
        assert len(key) <= MAX_KEY_LENGTH
        assert memcache_key_warnings(key) == []
    assert key_of(one, "x" * 1000) != key_of(one, "x" * 1001)


def test_big_int_beyond_str_limit() -> None:
    assert key_of(one, 10**5000) != key_of(one, 10**5000 + 1)


def test_function_name_is_module_and_qualname_and_safe() -> None:
    assert function_name(A.active) == f"{__name__}:A.active"

    def ünïcode() -> None: ...

    name = function_name(ünïcode)
    assert memcache_key_warnings(name) == []
    assert "~" in name


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (object(), "default one"),
        (lambda: 1, "lambda"),
        (make_local(), "run time"),
        ([1, object()], "default one"),
        ({"k": A()}, "default one"),
        # Format 2 keys no repr() that was not declared an identity.
        (type("Addressed", (), {"__repr__": lambda s: f"<x at {hex(id(s))}>"})(), "told to"),
        (type("Truncated", (), {"__repr__": lambda s: "array([1, ..., 9])"})(), "told to"),
        ([].append, "address"),
    ],
    ids=["object", "lambda", "local function", "nested", "in dict", "address", "...", "method"],
)
def test_address_only_arguments_are_refused(value: Any, why: str) -> None:
    with pytest.raises(UnkeyableArgument, match=why) as raised:
        key_of(two, 1, value)
    message = str(raised.value)
    assert "argument 'b'" in message
    assert "__cache_key__" in message
    assert isinstance(raised.value, TypeError)


def test_binding_errors_are_pythons() -> None:
    # Python's own words for this function, as calling it would give.
    with pytest.raises(TypeError, match=r"^defaulted\(\) missing 1 required positional"):
        key_of(defaulted)
    with pytest.raises(
        TypeError, match=r"^defaulted\(\) takes from 1 to 2 positional arguments but 3 were"
    ):
        key_of(defaulted, 1, 2, 3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'c'"):
        key_of(defaulted, 1, c=3)
    with pytest.raises(TypeError, match="multiple values for argument 'a'"):
        key_of(defaulted, 1, a=1)


def test_binder_lays_out_every_kind_of_parameter() -> None:
    bind = make_binder(everything)
    assert bind((1,), {"c": 3}) == (1, 2, (), 3, 4, {})
    assert bind((1, 5, 6, 7), {"c": 3, "z": 9, "d": 0}) == (1, 5, (6, 7), 3, 0, {"z": 9})
    with pytest.raises(TypeError):
        bind((), {"a": 1, "c": 3})  # positional-only by name


def test_ignore_leaves_arguments_out_and_checks_names() -> None:
    build = make_key_builder(defaulted, ignore=["b"])
    assert build((1,), {"b": 5}) == build((1,), {"b": 6})
    assert build((1,), {}) != build((2,), {})
    with pytest.raises(ValueError, match=r"'nope'.*parameters are a, b"):
        make_key_builder(defaulted, ignore=["nope"])


def page(user_id: int, page: int = 1) -> None: ...


def test_template_builder_binds_by_name_with_defaults() -> None:
    build = make_template_builder(page, "user:{user_id}:{page}")
    assert build((5,), {}) == "user:5:1"
    assert build((), {"page": 3, "user_id": 5}) == "user:5:3"
    with pytest.raises(ValueError, match=r"'missing'.*parameters are user_id, page"):
        make_template_builder(page, "user:{missing}")
    with pytest.raises(ValueError, match="positional placeholder"):
        make_template_builder(page, "user:{}")


def test_callable_builder_must_return_str() -> None:
    assert make_callable_builder(lambda user_id: f"u{user_id}")((5,), {}) == "u5"
    with pytest.raises(TypeError, match="must return a str"):
        make_callable_builder(lambda user_id: user_id)((5,), {})


STABILITY_SCRIPT = """
import os.path
from memokit.keybuilders import encode, make_key_builder
values = [{"b": 1, "a": {2, 3}}, frozenset({"x", "y", "z", 1, None}), ("s", 1.5, b"b"), 10**5000]
print(encode(values)[:3000])
print(make_key_builder(os.path.join)(("a", {"k": frozenset("xyz")}), {}))
print(make_key_builder(os.path.join)(("a b", "c" * 300), {}))
"""


def test_keys_are_stable_across_hash_seeds() -> None:
    package_root = str(Path(memokit.__file__).resolve().parent.parent)
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": package_root}
        result = subprocess.run(
            [sys.executable, "-c", STABILITY_SCRIPT],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env=env,
        )
        outputs.add(result.stdout)
    assert len(outputs) == 1
    assert outputs.pop().startswith("l(d(s1:a=S(i2,i3),s1:b=i1),")


def shadowing(args: Any, kwargs: Any = 0, get: Any = 1, n: Any = 2, used: Any = 3) -> None: ...


def positional_only(a: Any, /, b: Any = 2) -> None: ...


def test_parameter_names_never_clash_with_the_builder() -> None:
    assert key_of(shadowing, 1) == key_of(shadowing, args=1, n=2) == key_of(shadowing, 1, 0, 1)
    assert key_of(shadowing, 1, used=9) != key_of(shadowing, 1)


def test_positional_only_parameters() -> None:
    assert key_of(positional_only, 1) == key_of(positional_only, 1, b=2)
    with pytest.raises(TypeError, match="positional"):
        key_of(positional_only, a=1)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {}), ((1, 2, 3), {}), ((1,), {"c": 3}), ((1,), {"a": 1}), ((), {"b": 1})],
)
def test_every_bad_call_raises_like_python(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        defaulted(*args, **kwargs)
    with pytest.raises(TypeError):
        make_key_builder(defaulted)(args, kwargs)


def test_remembered_keys_never_confuse_equal_values_of_other_types() -> None:
    # One builder, called again and again: keys of small ints and short strs are
    # remembered per args tuple, and (1,) == (True,) == (1.0,) in a dict.
    build = make_key_builder(defaulted)
    calls: list[tuple[Any, ...]] = [(1,), (True,), (1.0,), (1,), (True,), ("1",), (1, 2), (1, True)]
    calls += [(i,) for i in range(3000)] + [(str(i),) for i in range(100)] + [("x" * 100,)] * 2
    reference = make_key_builder(defaulted)  # called by keyword: never remembers
    for args in calls * 2:
        assert build(args, {}) == reference((), dict(zip("ab", args, strict=False))), args


def test_remembered_keys_respect_ignore() -> None:
    build = make_key_builder(defaulted, ignore=["b"])
    assert build((1, 2), {}) == build((1, 3), {}) == build((1, 2), {})
    assert build((1, 2), {}) != build((True, 2), {})
