"""Every public method has Django's name, parameters and defaults, sync and async."""

from __future__ import annotations

import inspect
from typing import Any

import memokit
from memokit import DEFAULT_TIMEOUT, BaseCache

D = DEFAULT_TIMEOUT
# Django 5.2's BaseCache, written out: (parameter name, default or EMPTY) after self.
EMPTY = inspect.Parameter.empty
DJANGO_BASECACHE: dict[str, list[tuple[str, Any]]] = {
    "add": [("key", EMPTY), ("value", EMPTY), ("timeout", D), ("version", None)],
    "clear": [],
    "close": [("kwargs", EMPTY)],
    "decr": [("key", EMPTY), ("delta", 1), ("version", None)],
    "decr_version": [("key", EMPTY), ("delta", 1), ("version", None)],
    "delete": [("key", EMPTY), ("version", None)],
    "delete_many": [("keys", EMPTY), ("version", None)],
    "get": [("key", EMPTY), ("default", None), ("version", None)],
    "get_backend_timeout": [("timeout", D)],
    "get_many": [("keys", EMPTY), ("version", None)],
    "get_or_set": [("key", EMPTY), ("default", EMPTY), ("timeout", D), ("version", None)],
    "has_key": [("key", EMPTY), ("version", None)],
    "incr": [("key", EMPTY), ("delta", 1), ("version", None)],
    "incr_version": [("key", EMPTY), ("delta", 1), ("version", None)],
    "make_and_validate_key": [("key", EMPTY), ("version", None)],
    "make_key": [("key", EMPTY), ("version", None)],
    "set": [("key", EMPTY), ("value", EMPTY), ("timeout", D), ("version", None)],
    "set_many": [("data", EMPTY), ("timeout", D), ("version", None)],
    "touch": [("key", EMPTY), ("timeout", D), ("version", None)],
    "validate_key": [("key", EMPTY)],
}
NO_ASYNC_TWIN = {"get_backend_timeout", "make_and_validate_key", "make_key", "validate_key"}


def parameters(method: Any) -> list[tuple[str, Any]]:
    params = list(inspect.signature(method).parameters.values())[1:]
    # Django's parameters are all positional-or-keyword, but for **kwargs of close().
    for p in params:
        expected = p.VAR_KEYWORD if p.name == "kwargs" else p.POSITIONAL_OR_KEYWORD
        assert p.kind == expected, (method, p)
    return [(p.name, p.default) for p in params]


def backend_classes() -> list[type[BaseCache]]:
    classes = []
    for path in memokit.backends.BACKENDS.values():
        module, _, name = path.rpartition(".")
        classes.append(getattr(__import__(module, fromlist=[name]), name))
    return classes


def test_every_django_method_with_its_signature() -> None:
    for cls in [BaseCache, *backend_classes()]:
        for name, expected in DJANGO_BASECACHE.items():
            assert parameters(getattr(cls, name)) == expected, (cls, name)
            if name not in NO_ASYNC_TWIN:
                twin = getattr(cls, "a" + name)
                assert inspect.iscoroutinefunction(twin), (cls, name)
                assert parameters(twin) == expected, (cls, "a" + name)


def test_contains_is_has_key() -> None:
    assert parameters(BaseCache.__contains__) == [("key", EMPTY)]


def test_no_public_method_beyond_django_is_a_surprise() -> None:
    public = {
        name
        for name, _ in inspect.getmembers(BaseCache, inspect.isfunction)
        if not name.startswith("_")
    }
    async_twins = {"a" + name for name in DJANGO_BASECACHE if name not in NO_ASYNC_TWIN}
    assert public - set(DJANGO_BASECACHE) - async_twins == set()


def test_public_api_is_exactly_all() -> None:
    import types

    # dir(), not vars(): the backend classes are imported on first use (memokit.__getattr__).
    exported = {
        name
        for name in dir(memokit)
        if not name.startswith("_") and not isinstance(getattr(memokit, name), types.ModuleType)
    }
    exported.discard("annotations")  # from __future__ import annotations
    exported.discard("TYPE_CHECKING")
    assert sorted(exported | {"__version__"}) == sorted(memokit.__all__)
    assert len(set(memokit.__all__)) == len(memokit.__all__)
