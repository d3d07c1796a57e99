"""Rules of the code base: error classes in one module, no private reach into a cache,
and ``import memokit`` without the backends."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
import re
import subprocess
import sys
import textwrap
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


KIT_TESTS = PACKAGE / "testing" / "contract"


def modules(*, outside_backends: bool = False) -> list[Path]:
    # The conformance kit's test_*.py files are tests shipped in the package: they use
    # caches as a caller does (getattr by name, custom key functions), so the rules for
    # memokit's own code skip them.
    found = [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if not (path.parent == KIT_TESTS and path.name.startswith("test_"))
    ]
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


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_members(cls: type) -> set[str]:
    """The private names a class defines: in its body (methods, class attributes,
    annotations, slots) and as ``self._x = ...`` in its methods."""
    names = set(vars(cls)) | set(vars(cls).get("__annotations__", {}))
    slots = vars(cls).get("__slots__", ())
    names |= {slots} if isinstance(slots, str) else set(slots)
    source = textwrap.dedent(inspect.getsource(cls))
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
        ):
            names.add(node.attr)
    return {name for name in names if _private(name)} - {"_abc_impl"}


def cache_classes() -> list[type]:
    """BaseCache, every backend class and the memokit classes they are made of."""
    import memokit.backends

    found: set[type] = set()
    for info in pkgutil.iter_modules(memokit.backends.__path__, "memokit.backends."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseCache):
                found.update(k for k in value.__mro__ if k.__module__.startswith("memokit."))
    return sorted(found, key=lambda cls: (cls.__module__, cls.__qualname__))


def _other_classes_private_members() -> set[str]:
    """Private names that classes outside memokit/backends/ define for themselves
    (``CircuitBreaker._lock``): on a holder not named as a cache, such a name says
    nothing about whose member it is. The Django adapter mirrors Django's cache
    (``_max_entries``), so its names stay a cache's."""
    names: set[str] = set()
    for path in modules(outside_backends=True):
        if path.parent.name == "contrib":
            continue
        for cls in ast.walk(ast.parse(path.read_text())):
            if not isinstance(cls, ast.ClassDef):
                continue
            for node in ast.walk(cls):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    names.add(node.name)
                elif (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.ctx, ast.Store)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "self"
                ):
                    names.add(node.attr)
    return {name for name in names if _private(name)}


def cache_private_names() -> set[str]:
    """The private members of BaseCache and the backend classes, found by introspection,
    less the names other memokit classes also define (those need a cache-named holder)."""
    names = set().union(*(_private_members(cls) for cls in cache_classes()))
    return names - _other_classes_private_members()


CACHE_PRIVATE_NAMES = cache_private_names()
# Calls that return a cache: `state.resolve()`, `state.target()`, `create_cache(...)`.
CACHE_RETURNING = {"resolve", "target", "create_cache", "_guarded"}


def _is_self(node: ast.expr) -> bool:
    """`self`, `cls`, `super()`, `type(self)`: a class's own members, not a reach."""
    if isinstance(node, ast.Name):
        return node.id in {"self", "cls"}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.func.id == "super":
            return True
        return node.func.id == "type" and len(node.args) == 1 and _is_self(node.args[0])
    return False


def names_a_cache(node: ast.expr, holders: frozenset[str] = frozenset()) -> bool:
    """Whether an expression is a cache: by its name, a subscript of `caches`, a call
    that returns one, or a local name assigned from one of these (``holders``)."""
    if isinstance(node, ast.Name) and node.id in holders:
        return True
    if isinstance(node, ast.Subscript):
        return isinstance(node.value, ast.Name | ast.Attribute) and (
            getattr(node.value, "id", getattr(node.value, "attr", None)) == "caches"
        )
    if isinstance(node, ast.Call):
        func = node.func
        called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        return called in CACHE_RETURNING
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)
    return isinstance(name, str) and CACHE_NAME.search(name) is not None


def cache_holders(tree: ast.AST) -> frozenset[str]:
    """Local names bound to a cache expression (`backend = state.resolve()`), to a
    fixed point so that `b = backend` counts too. Scopes are not told apart: a lint."""
    holders: frozenset[str] = frozenset()
    while True:
        found = set(holders)
        for node in ast.walk(tree):
            pairs: list[tuple[ast.expr, ast.expr | None]] = []
            if isinstance(node, ast.Assign):
                pairs = [(target, node.value) for target in node.targets]
            elif isinstance(node, ast.AnnAssign | ast.NamedExpr):
                pairs = [(node.target, node.value)]
            for target, value in pairs:
                if (
                    isinstance(target, ast.Name)
                    and value is not None
                    and names_a_cache(value, holders)
                ):
                    found.add(target.id)
        if found == holders:
            return holders
        holders = frozenset(found)


FORWARDING_METHODS = {"__getattr__", "__getattribute__", "__setattr__", "__delattr__"}


def forwarded_names(tree: ast.AST) -> set[int]:
    """The ``getattr``-family calls by which a proxy's ``__getattr__`` (and kin) passes
    its caller's own attribute name on (the ``cache`` proxy): no reach of its own."""
    calls: set[int] = set()
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef) or function.name not in FORWARDING_METHODS:
            continue
        if len(function.args.args) < 2:
            continue
        parameter = function.args.args[1].arg
        for node in ast.walk(function):
            if (
                isinstance(node, ast.Call)
                and len(node.args) > 1
                and isinstance(node.args[1], ast.Name)
                and node.args[1].id == parameter
            ):
                calls.add(id(node))
    return calls


def private_cache_accesses(tree: ast.AST, allowed: set[str]) -> list[str]:
    holders = cache_holders(tree)
    forwarded = forwarded_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            value = node.value
            on_cache = names_a_cache(value, holders) and not _is_self(value)
            # A private member only a cache defines is a cache's, whatever holds it.
            cache_member = node.attr in CACHE_PRIVATE_NAMES and not _is_self(value)
            reaches_cache = (on_cache or cache_member) and node.attr not in allowed
            reaches_module = isinstance(value, ast.Name) and value.id in BACKEND_MODULES
            if reaches_cache or reaches_module:
                found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args:
            target = node.args[0]
            on_cache = names_a_cache(target, holders) and not _is_self(target)
            if node.func.id == "vars" and on_cache:
                found.append(f"{node.lineno}: {ast.unparse(node)}")
            elif node.func.id in ATTRIBUTE_FUNCTIONS and len(node.args) > 1:
                if id(node) in forwarded:
                    continue
                name = node.args[1]
                private = not isinstance(name, ast.Constant) or (
                    isinstance(name.value, str)
                    and name.value.startswith("_")
                    and name.value not in allowed
                )
                if on_cache and private:
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


def test_the_private_access_check_does_not_depend_on_the_variables_name() -> None:
    # Found by the issue 16 review (failed on bbcc8ca): a cache held under another
    # name, or reached through a call or a subscript, escaped the check. The private
    # names a backend class defines are a cache's, whatever holds it.
    source = (
        "backend = state.resolve()\n"
        "backend._data.clear()\n"
        "state.resolve()._sql\n"
        "caches[alias]._max_entries\n"
        "target._cull_frequency\n"
    )
    found = private_cache_accesses(ast.parse(source), {"_get"})
    assert sorted(int(line.split(":")[0]) for line in found) == [2, 3, 4, 5]


def test_the_private_access_check_follows_a_cache_and_spares_a_class_its_own() -> None:
    # The names come from the backend classes themselves, not from a list kept here.
    assert {"_data", "_sql", "_max_entries", "_cull_frequency", "_client"} <= CACHE_PRIVATE_NAMES
    # Names other memokit classes define too (`CircuitBreaker._lock`) need a cache holder.
    assert "_lock" not in CACHE_PRIVATE_NAMES
    source = (
        "backend = state.resolve()\n"
        "backend.__dict__\n"
        "vars(caches[alias])\n"
        "getattr(state.target(), '_lock')\n"
        "alias_cache = backend\n"
        "alias_cache._lock\n"
        "self._data\n"  # a backend's own member: not a reach
        "cls._sql\n"
        "super()._get_many(keys)\n"
        "type(self)._max_entries\n"
        "def __getattr__(self, name):\n"
        "    return getattr(caches['default'], name)\n"  # a proxy forwards its caller's name
        "getattr(caches['default'], name)\n"  # anywhere else, a dynamic name is a reach
        "breaker._lock\n"
    )
    found = private_cache_accesses(ast.parse(source), {"_get"})
    assert sorted(int(line.split(":")[0]) for line in found) == [2, 3, 4, 6, 13]
