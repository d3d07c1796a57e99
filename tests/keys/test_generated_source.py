"""Generated key-builder code is registered in linecache: tracebacks and pdb show it."""

from __future__ import annotations

import gc
import linecache
import traceback
from typing import Any

import pytest

from memokit import UnkeyableArgument, cached
from memokit.keybuilders import make_key_builder
from memokit.testing import isolated_cache


class Opaque:
    """No __cache_key__, no registration: an argument memokit refuses to key."""


def price(item: Any, quantity: int = 1) -> int:
    return quantity


def generated_frames(exc: BaseException) -> list[traceback.FrameSummary]:
    frames = traceback.extract_tb(exc.__traceback__)
    return [f for f in frames if f.filename.startswith("<memokit key builder")]


def test_a_traceback_from_a_decorated_call_shows_the_generated_line() -> None:
    with isolated_cache() as cache:

        @cached(cache=cache)
        def total(item: Any, quantity: int = 1) -> int:
            return quantity

        with pytest.raises(UnkeyableArgument) as info:
            total(Opaque())
    (frame,) = generated_frames(info.value)
    assert frame.filename.endswith("total>")  # names the function it was made for
    assert frame.line is not None
    assert "raise Unkeyable(" in frame.line
    text = "".join(traceback.format_exception(info.value))
    assert "raise Unkeyable(" in text
    assert '"<string>"' not in text


def test_a_bind_error_in_a_generated_builder_shows_its_line() -> None:
    build = make_key_builder(price)
    with pytest.raises(TypeError, match=r"price\(\) takes from 1 to 2 positional") as info:
        build((1, 2, 3), {})
    (frame,) = generated_frames(info.value)
    assert frame.line is not None
    assert "bind(args, kwargs)" in frame.line
    # What pdb's `list` reads: the whole generated function, from its first line.
    assert linecache.getline(frame.filename, 1).startswith("def build(args, kwargs):")


def test_each_builder_has_its_own_source_which_goes_with_it() -> None:
    one, two = make_key_builder(price), make_key_builder(price, ignore=("quantity",))
    names = {one.__code__.co_filename, two.__code__.co_filename}
    assert len(names) == 2  # unique pseudo-filenames, even for the same function
    assert all(name in linecache.cache for name in names)
    linecache.checkcache()  # no file behind them, and still kept
    assert all(name in linecache.cache for name in names)
    del one, two
    gc.collect()
    assert not any(name in linecache.cache for name in names)
