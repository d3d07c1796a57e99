"""Property-based: two values get one key exactly when they are the same value.

``canonical`` writes the relation down: the same type and the same canonical
value (ints, strs, bytes by ``==``; floats by bit pattern; ``Decimal`` by its
exact text; datetimes by isoformat, ``fold`` and zone; containers item by item).
Generated pairs are checked against it, in this process and, for hash-order
independence, in fresh interpreters with three ``PYTHONHASHSEED`` values.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import decimal
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

import memokit
from memokit.keybuilders import encode, make_key_builder

ZONES = [None, datetime.UTC, datetime.timezone(datetime.timedelta(hours=1))]


def canonical(value: Any) -> Any:
    """The identity a key must follow: equal here exactly when the keys are equal."""
    kind = type(value)
    if kind is float:
        return (kind, struct.pack(">d", value))
    if kind is decimal.Decimal:
        return (kind, str(value))
    if kind is datetime.datetime:
        offset = None if value.tzinfo is None else value.tzinfo.utcoffset(None)
        return (kind, value.isoformat(), value.fold, offset)
    if kind in (tuple, list, collections.deque):
        return (kind, tuple(canonical(v) for v in value))
    if kind in (set, frozenset):
        return (kind, frozenset(canonical(v) for v in value))
    if kind is dict:
        return (kind, frozenset((canonical(k), canonical(v)) for k, v in value.items()))
    if kind in (types.SimpleNamespace, argparse.Namespace):
        return (kind, canonical(vars(value)))
    return (kind, value)  # int, str, bytes, bool, None: by ==


def _float_from_bits(bits: int) -> float:
    value: float = struct.unpack(">d", bits.to_bytes(8, "big"))[0]
    return value


# Small domains, so that equal pairs come up as often as different ones.
floats = st.sampled_from([0.0, -0.0, 1.0, 1.5, float("inf"), float("nan")]) | st.integers(
    0x7FF0000000000001, 0x7FF0000000000003
).map(_float_from_bits)  # NaNs with other payloads
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.integers(min_value=2**70, max_value=2**70 + 1),
    st.text("ab,(", max_size=2),
    st.binary(max_size=2),
    floats,
    st.sampled_from(["1", "1.0", "1.00", "-0", "0", "NaN"]).map(decimal.Decimal),
    st.builds(
        datetime.datetime,
        st.just(2024),
        st.just(10),
        st.just(27),
        st.integers(2, 3),
        st.sampled_from([0, 30]),
        tzinfo=st.sampled_from(ZONES),
        fold=st.integers(0, 1),
    ),
)
hashable = st.recursive(scalars, lambda inner: st.frozensets(inner, max_size=3), max_leaves=4)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.lists(inner, max_size=3).map(collections.deque),
        st.sets(hashable, max_size=3),
        st.dictionaries(st.text("ab", max_size=1), inner, max_size=2),
        st.dictionaries(st.text("ab", max_size=1), hashable, max_size=2).map(
            lambda d: types.SimpleNamespace(**d)
        ),
    ),
    max_leaves=6,
)


def one(value: Any) -> None: ...


build = make_key_builder(one)


@given(values, values)
@example(float("nan"), _float_from_bits(0x7FF0000000000001))  # two NaNs, two payloads
@example(  # the two sides of a DST change: the same wall time, another fold
    datetime.datetime(2024, 10, 27, 2, 30), datetime.datetime(2024, 10, 27, 2, 30, fold=1)
)
@example(decimal.Decimal("1.0"), decimal.Decimal("1.00"))
def test_one_key_exactly_for_one_canonical_value(first: Any, second: Any) -> None:
    same = canonical(first) == canonical(second)
    assert (encode(first) == encode(second)) is same
    assert (build((first,), {}) == build((second,), {})) is same


@given(values)
def test_a_value_and_its_copy_share_one_key(value: Any) -> None:
    copy = pickle.loads(pickle.dumps(value))
    assert encode(copy) == encode(value)
    assert build((copy,), {}) == build((value,), {})


@given(values)
def test_every_key_is_valid_on_every_backend(value: Any) -> None:
    key = build((value,), {})
    assert key.isascii()
    assert key.isprintable()
    assert " " not in key
    assert len(key) <= memokit.keybuilders.MAX_KEY_LENGTH - len("~lock")


BATCH_SCRIPT = """
import pickle, sys
from memokit.keybuilders import encode
values = pickle.load(sys.stdin.buffer)
sys.stdout.write("\\n".join(encode(v) for v in values))
"""


@settings(max_examples=1)
@given(st.lists(values, min_size=60, max_size=60))
def test_keys_are_the_same_under_every_hash_seed(batch: list[Any]) -> None:
    # One fresh interpreter per seed, fed every example at once.
    batch += [
        {"b", "a", "c", 1, 2.5, None},
        argparse.Namespace(tags={"x", "y", "z"}, n=frozenset({"p", "q"})),
        collections.deque([frozenset({"x", "y"}), {"z", "w"}]),
    ]
    expected = "\n".join(encode(v) for v in batch)
    payload = pickle.dumps(batch)
    # A directory holding only this memokit, as the working directory too, so
    # that the interpreter imports exactly the code under test.
    with tempfile.TemporaryDirectory(prefix="memokit-only-") as root:
        os.symlink(Path(memokit.__file__).resolve().parent, os.path.join(root, "memokit"))
        _run_seeds(root, payload, expected)


def _run_seeds(root: str, payload: bytes, expected: str) -> None:
    for seed in ("0", "1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": root}
        result = subprocess.run(
            [sys.executable, "-c", BATCH_SCRIPT],
            cwd=root,
            input=payload,
            capture_output=True,
            timeout=60,
            check=True,
            env=env,
        )
        assert result.stdout.decode() == expected, json.dumps(seed)
