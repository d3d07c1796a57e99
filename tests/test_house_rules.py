"""Rules of the code base: error classes in one module, no private reach into a cache,
and ``import memokit`` without the backends."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import memokit
from memokit import BaseCache

PACKAGE = Path(memokit.__file__).parent
BACKENDS = PACKAGE / "backends"

# An expression that names a cache: `cache`, `self.cache`, `real_cache`, `state._cache`,
# and the Django adapter's `self.memokit`.
CACHE_NAME = re.compile(r"(^|_)cache$|^memokit$", re.IGNORECASE)
ATTRIBUTE_FUNCTIONS = {"getattr", "setattr", "hasattr", "delattr"}
# A backend module's private state (`memory._stores`) is no more public than a cache's.
BACKEND_MODULES = {p.stem for p in BACKENDS.glob("*.py") if not p.stem.startswith("_")} - {"base"}


def modules(*, outside_backends: bool = False) -> list[Path]:
    found = sorted(PACKAGE.rglob("*.py"))
    if outside_backends:
        found = [path for path in found if BACKENDS not in path.parents]
    return found


def listed_primitives() -> set[str]:
    """The names listed under "Primitives used by the decorator layer" in BaseCache."""
    doc = BaseCache.__doc__ or ""
    heading = "Primitives used by the decorator layer"
    assert heading in doc, "BaseCache's docstring must list the primitives"
    section = doc.split(heading, 1)[1]
    names: set[str] = set()
    for line in section.splitlines():
        stripped = line.strip()
        if stripped.startswith("- ") or (names and stripped.startswith("``")):
            names.update(re.findall(r"``(_\w+)``", stripped))
    return names


def names_a_cache(node: ast.expr) -> bool:
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)
    return isinstance(name, str) and CACHE_NAME.search(name) is not None


def private_cache_accesses(tree: ast.AST, allowed: set[str]) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            reaches_cache = names_a_cache(node.value) and node.attr not in allowed
            value = node.value
            reaches_module = isinstance(value, ast.Name) and value.id in BACKEND_MODULES
            if reaches_cache or reaches_module:
                found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args:
            target = node.args[0]
            if node.func.id == "vars" and names_a_cache(target):
                found.append(f"{node.lineno}: {ast.unparse(node)}")
            elif node.func.id in ATTRIBUTE_FUNCTIONS and len(node.args) > 1:
                name = node.args[1]
                private = not isinstance(name, ast.Constant) or (
                    isinstance(name.value, str)
                    and name.value.startswith("_")
                    and name.value not in allowed
                )
                if names_a_cache(target) and private:
                    found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_primitive_list_is_the_decorator_layers_reach() -> None:
    allowed = listed_primitives()
    assert {"_get", "_set", "_add", "_aget", "_encode", "_decode"} <= allowed
    assert all(callable(getattr(BaseCache, name, None)) for name in allowed), allowed
    offences = {}
    for path in modules(outside_backends=True):
        found = private_cache_accesses(ast.parse(path.read_text()), allowed)
        if found:
            offences[str(path.relative_to(PACKAGE.parent))] = found
    assert offences == {}, (
        "outside memokit/backends/, reach a cache through its public API or a primitive "
        "listed in BaseCache's docstring (add it there if the decorator layer needs it)"
    )


def test_the_private_access_check_catches_what_it_is_for() -> None:
    source = (
        "cache._store(k, v, 1)\n"
        "self.memokit._max_entries\n"
        "state.cache.__dict__['x']\n"
        "getattr(cache, '__dict__', {})\n"
        "setattr(real_cache, name, 1)\n"
        "vars(cache)\n"
        "cache._get(k)\n"  # listed: allowed
        "breaker._lock\n"  # not a cache
        "memory._stores.pop(location)\n"  # a backend module's private state
    )
    found = private_cache_accesses(ast.parse(source), {"_get"})
    assert sorted(int(line.split(":")[0]) for line in found) == [1, 2, 3, 4, 5, 6, 9]


def _names_key_prefix(node: ast.AST) -> bool:
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)
    return isinstance(name, str) and name.lower() == "key_prefix"


def key_prefix_in_keys(tree: ast.AST) -> list[str]:
    """Places that put a ``key_prefix`` into a string or pass it to a function: an
    f-string, ``+`` or ``%``, or a call (``.format()``, ``.join()``, a key function)."""
    found = []
    for node in ast.walk(tree):
        parts: list[ast.AST]
        if isinstance(node, ast.JoinedStr) or (
            isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod)
        ):
            parts = [node]
        elif isinstance(node, ast.Call):
            parts = [*node.args, *(keyword.value for keyword in node.keywords)]
        else:
            continue
        if any(_names_key_prefix(inner) for part in parts for inner in ast.walk(part)):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_only_the_contract_makes_keys_from_the_key_prefix() -> None:
    # Django's key format ("prefix:version:key") belongs to memokit/keys.py and the
    # backends: code elsewhere that rebuilt it would go wrong with a KEY_FUNCTION or
    # a make_key override. It asks BaseCache._plain_key_prefix instead.
    offences = {}
    for path in modules(outside_backends=True):
        if path == PACKAGE / "keys.py":
            continue
        found = key_prefix_in_keys(ast.parse(path.read_text()))
        if found:
            offences[str(path.relative_to(PACKAGE.parent))] = found
    assert offences == {}, "make keys with cache.make_and_validate_key or _plain_key_prefix"


def test_the_key_prefix_check_catches_what_it_is_for() -> None:
    source = (
        'made = f"{cache.key_prefix}:{version}:"\n'
        'made = cache.key_prefix + ":0:" + key\n'
        'made = "%s:%s:%s" % (self.key_prefix, version, key)\n'
        'made = ":".join([key_prefix, str(version), key])\n'
        "made = default_key_func(key, cache.key_prefix, version)\n"
        "plan.key_prefix is cache.key_prefix\n"  # a comparison: fine
        "prefix = cache._plain_key_prefix(version, 200)\n"  # asking the cache: fine
    )
    found = key_prefix_in_keys(ast.parse(source))
    assert sorted({int(line.split(":")[0]) for line in found}) == [1, 2, 3, 4, 5]


def test_every_error_and_warning_class_is_in_exceptions() -> None:
    base_names = {"Exception", "BaseException", "Warning", "RuntimeError", "TypeError"}
    base_names |= {"ValueError", "OSError", "LookupError", "KeyError", "UserWarning"}
    base_names |= {name for name in dir(memokit.exceptions) if not name.startswith("__")}
    outside = []
    for path in modules():
        if path.name == "exceptions.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {getattr(b, "id", getattr(b, "attr", None)) for b in node.bases}
                named = node.name.endswith(("Error", "Exception", "Warning"))
                if bases & base_names or named:
                    outside.append(f"{path.name}:{node.lineno} {node.name}")
    assert outside == []


def test_moved_error_classes_keep_their_old_import_paths() -> None:
    from memokit import exceptions, testing

    assert testing.ServerNotFound is exceptions.ServerNotFound
    assert issubclass(exceptions.ServerNotFound, RuntimeError)
    assert issubclass(exceptions.ServerNotFound, exceptions.MemokitError)


FRESH_IMPORT = """
import json, sys
import memokit
before = sorted(sys.modules)
from memokit import MemoryCache
memokit.cache.set("k", 1)
with memokit.caching_disabled():
    pass
print(json.dumps([before, sorted(sys.modules), MemoryCache.__name__]))
"""

NOT_AT_IMPORT = [
    "memokit.backends.dummy",
    "memokit.backends.filesystem",
    "memokit.backends.memcached",
    "memokit.backends.memory",
    "memokit.backends.redis",
    "memokit.backends.sqlite",
    "pymemcache",
    "redis",
    "sqlite3",
]


def test_import_memokit_imports_no_backend() -> None:
    result = subprocess.run(
        [sys.executable, "-c", FRESH_IMPORT], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    before, after, name = json.loads(result.stdout)
    assert [m for m in NOT_AT_IMPORT if m in before] == []
    # Used: the default cache imports the memory backend, caching_disabled() the dummy
    # one; nothing else.
    assert name == "MemoryCache"
    assert {"memokit.backends.memory", "memokit.backends.dummy"} <= set(after)
    assert [m for m in NOT_AT_IMPORT if m in after and "dummy" not in m and "memory" not in m] == []


def test_lazy_backend_names_are_the_classes() -> None:
    from memokit.backends.filesystem import FileSystemCache
    from memokit.backends.sqlite import SQLiteCache

    assert memokit.FileSystemCache is FileSystemCache
    assert memokit.SQLiteCache is SQLiteCache
    assert {"DummyCache", "MemoryCache", "SQLiteCache", "FileSystemCache"} <= set(dir(memokit))
    with pytest.raises(AttributeError, match="NoSuchCache"):
        memokit.NoSuchCache  # type: ignore[attr-defined]  # the point of the test  # noqa: B018


def test_the_breaker_is_the_caches_public_attribute() -> None:
    from memokit import MemoryCache, breaker_for, caches, configure_breaker

    cache = MemoryCache("house-rules-breaker")
    assert cache.breaker is None  # made on first use
    breaker = breaker_for(cache)
    assert cache.breaker is breaker
    assert breaker_for(cache) is breaker
    assert "breaker" not in vars(MemoryCache("house-rules-other"))
    configure_breaker(cache=cache, threshold=7)
    assert cache.breaker is breaker
    assert breaker.settings.threshold == 7
    # The default-cache proxy forwards: its breaker is the default cache's.
    assert breaker_for(memokit.cache) is breaker_for(caches["default"])
