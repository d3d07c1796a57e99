"""The calls whose keys tests/keys/test_stability.py pins; run as a script by each interpreter."""

import argparse
import collections
import dataclasses
import datetime
import decimal
import enum
import fractions
import functools
import pathlib
import sys
import types
import typing
import uuid

from memokit.keybuilders import function_identity, make_key_builder, make_template_builder


class Colour(enum.Enum):
    RED = 1


class Perm(enum.Flag):
    R = 4
    W = 2


class Mode(enum.IntFlag):
    A = 1


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    label: str = dataclasses.field(default="", compare=False)


class Pair(typing.NamedTuple):
    a: int
    b: str


class Account:
    def __init__(self, pk):
        self.pk = pk

    def __cache_key__(self):
        return ("acct", self.pk)


def f(value, extra=None, *rest, flag=False, **options): ...


def make(factor):
    def scaled(x):
        return x * factor

    return scaled


build = make_key_builder(f)
CASES = {
    "int": ((7,), {}),
    "kw": ((7,), {"extra": 2, "flag": True, "z": 1}),
    "big": ((-(10**40),), {}),
    "huge": ((10**5000,), {}),
    "floats": (([0.0, -0.0, 1e300, float("inf"), float("nan"), 0.1],), {}),
    "complex": ((complex(1.5, -2),), {}),
    "text": (("a,b(c)=d:é",), {}),
    "bytes": ((b"\x00\xff", bytearray(b"ab")), {}),
    "decimal": ((decimal.Decimal("1.10"), decimal.Decimal("-0"), decimal.Decimal("NaN")), {}),
    "fraction": ((fractions.Fraction(1, 3),), {}),
    "uuid": ((uuid.UUID(int=5),), {}),
    "naive": ((datetime.datetime(2024, 10, 27, 2, 30, fold=1),), {}),
    "aware": ((datetime.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=datetime.UTC),), {}),
    "offset": (
        (
            datetime.datetime(
                2024, 1, 2, tzinfo=datetime.timezone(datetime.timedelta(hours=-5), "EST")
            ),
        ),
        {},
    ),
    "date_time": (
        (
            datetime.date(2024, 1, 2),
            datetime.time(3, 4, fold=1),
            datetime.timedelta(days=-1, seconds=5),
        ),
        {},
    ),
    "paths": ((pathlib.PurePosixPath("/tmp/x y"), pathlib.PureWindowsPath("C:/x")), {}),
    "containers": (
        ((1, [2, {"b": 1, "a": {3, 1, 2}}], frozenset({"x", "y"}), range(1, 9, 2), ...),),
        {},
    ),
    "enum": ((Colour.RED, Perm(0), Perm.R | Perm.W, Mode(8), Mode.A), {}),
    "dataclass": ((Point(1, "a"), Pair(1, "b"), Account(3)), {}),
    "namespaces": (
        (
            types.SimpleNamespace(s={"b", "a"}),
            argparse.Namespace(n=1),
            collections.deque([{"q", "p"}], maxlen=4),
            collections.OrderedDict(b=1, a=2),
        ),
        {},
    ),
    "functions": ((len, f, Colour, make), {}),
    "long": (("x" * 300,), {}),
}


def table():
    out = {name: build(args, kwargs) for name, (args, kwargs) in CASES.items()}
    out["nested"] = make_key_builder(make(3))((2,), {})
    out["partial"] = function_identity(functools.partial(f, 1, flag=True))
    out["template"] = make_template_builder(f, "v:{value}:{extra}")(
        (Colour.RED,), {"extra": [1, "a"]}
    )
    return out


if __name__ == "__main__":
    import json

    json.dump(table(), sys.stdout, indent=1, sort_keys=True, ensure_ascii=True)
