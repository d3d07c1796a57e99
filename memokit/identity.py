"""Function identity: what tells one decorated callable apart from every other.

A key starts with the identity of the function it belongs to, and the
function's invalidation counter is named after it. Two distinct callables must
never share one; the same function in two processes or two deploys must.
:func:`function_identity` states the rules, and refuses, with
:class:`~memokit.exceptions.UnkeyableArgument`, what it cannot tell apart.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import re
import types
import weakref
from collections.abc import Callable
from typing import Any, Final

from .exceptions import UnkeyableArgument
from .keyencoding import describe, encode, name_problem

_MAX_NAME_LENGTH: Final = 120
_UNSAFE = re.compile(r"[^\x21-\x7e]").search


def digest_text(text: str, size: int = 32) -> str:
    """Return the BLAKE2b hex digest of ``text`` (lone surrogates included)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=size).hexdigest()


def _safe_name(name: str) -> str:
    if len(name) <= _MAX_NAME_LENGTH and not _UNSAFE(name):
        return name
    # Keep a readable start; the digest keeps distinct names apart. '~' never
    # occurs in a module or qualified name, so this cannot meet a plain name.
    readable = re.sub(r"[^\x21-\x7e]", "_", name)[: _MAX_NAME_LENGTH - 34]
    return f"{readable}~{digest_text(name, 16)}"


def function_name(func: Callable[..., Any]) -> str:
    """Return ``"module:qualname"`` of ``func``, made safe for a memcached key."""
    func = inspect.unwrap(func)
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise UnkeyableArgument(
            f"@cached needs a function with a module and a qualified name to build its key, "
            f"and {describe(func)} has none; wrap it in a def, or pass name=... or key=... "
            f"to @cached"
        )
    return _safe_name(f"{module}:{qualname}")


_made_at: dict[str, tuple[str, int]] = {}
"""Identity of each nested function decorated so far -> where its code is."""


def _refuse_function(func: Any, why: str) -> UnkeyableArgument:
    return UnkeyableArgument(
        f"@cached cannot tell {describe(func)} apart from other callables: {why}. "
        f"Ways out: define it with def at module level; or give it a name of its own "
        f"with @cached(name='...') (in a factory, put what differs in the name, for "
        f"example name=f'scale:{{factor}}'); or pass key=... to @cached"
    )


def _captured_value(value: Any) -> str:
    # A captured value is encoded like an argument; a captured function that
    # has no name of its own (a nested one) by its identity, closure included.
    try:
        return encode(value)
    except UnkeyableArgument:
        if not isinstance(value, types.FunctionType | functools.partial | types.MethodType):
            raise
        return f"w{encode(_identity(value))}"


def _captured(func: types.FunctionType, skip: object = None) -> list[str]:
    """Encode what ``func`` captured: closure cells (except ``skip``) and defaults."""
    code = func.__code__
    parts = []
    for variable, cell in zip(code.co_freevars, func.__closure__ or (), strict=True):
        try:
            contents = cell.cell_contents
        except ValueError:  # not assigned yet (the function refers to itself)
            parts.append(f"{variable}=U")
            continue
        if skip is not None and contents is skip:
            continue  # a wrapper's wrapped function: already the identity
        try:
            parts.append(f"{variable}={_captured_value(contents)}")
        except UnkeyableArgument as exc:
            raise _refuse_function(
                func, f"it captures {variable!r} from the enclosing scope, and {exc}"
            ) from None
    for label, value in (("defaults", func.__defaults__), ("kwdefaults", func.__kwdefaults__)):
        if value:
            try:
                parts.append(f"{label}={encode(value)}")
            except UnkeyableArgument as exc:
                raise _refuse_function(
                    func, f"one of its default values is refused: {exc}"
                ) from None
    return parts


def _nested(func: types.FunctionType) -> str:
    # A function defined inside another: what it captured (closure cells and
    # defaults), encoded like arguments, is part of its identity, so make(1)
    # and make(100) never share entries while make(1) in two processes does.
    code = func.__code__
    parts = _captured(func)
    identity = f"{func.__module__}:{func.__qualname__}"
    where = (code.co_filename, code.co_firstlineno)
    first = _made_at.setdefault(identity, where)
    # Another line of the same file: two functions. Another file is the same code
    # run again (a reloaded module, a notebook cell run twice): the newest wins.
    if first[0] == where[0] and first[1] != where[1]:
        raise _refuse_function(
            func,
            f"another function with the same name {identity} was decorated before "
            f"(line {first[1]} of {first[0]}), so the name does not tell them apart",
        )
    _made_at[identity] = where
    return f"{identity}[{','.join(parts)}]" if parts else identity


_owners: dict[str, weakref.ref[types.FunctionType]] = {}
"""Identity of each module-level function decorated so far -> that function."""


def _module_level(func: types.FunctionType) -> str:
    identity = function_name(func)
    owner = _owners.get(identity)
    other = owner() if owner is not None else None
    # A second, different function under a name a live one holds: a
    # redefinition (price = ...; price_v1 = price; def price ...), so both would
    # read one another's entries. The same code again (a module reloaded
    # unchanged, a test defining it twice) computes the same thing and shares.
    if (
        other is not None
        and other is not func
        and (other.__code__ != func.__code__ or other.__defaults__ != func.__defaults__)
    ):
        raise _refuse_function(
            func,
            f"{identity} was redefined: another function by that name (line "
            f"{other.__code__.co_firstlineno} of {other.__code__.co_filename}) is "
            f"still alive and was decorated before, so the name does not tell them "
            f"apart; do not redefine it (give the new one a name of its own), or "
            f"reload the module only once nothing holds the old function",
        )
    _owners[identity] = weakref.ref(func)
    return identity


def _wrappers(layers: list[Any]) -> str:
    # functools.wraps copies the wrapped function's name onto the wrapper, so
    # times(2)(f) and times(3)(f) both read as f: what each wrapper layer
    # captured (its factor, its defaults) is part of the identity.
    parts = []
    for layer in layers:
        if isinstance(layer, types.FunctionType):
            captured = _captured(layer, skip=getattr(layer, "__wrapped__", None))
            if captured:
                parts.append(f"[{','.join(captured)}]")
    return f"+wraps{''.join(parts)}" if parts else ""


def function_identity(func: Callable[..., Any], name: str | None = None) -> str:
    """Return what identifies ``func`` in its keys and counters (safe for memcached).

    - ``name``, when given, is the identity: the caller declares it;
    - a module-level function or method: ``module:qualname`` (through
      ``functools.wraps`` wrappers, the function they wrap);
    - a function defined inside another: ``module:qualname`` plus its closure
      cells and defaults, encoded like arguments at decoration time;
    - a ``functools.partial``: its function's identity plus its arguments;
    - a bound method: its function's identity plus its object's key;
    - a callable object: its class plus the object's key (``__cache_key__``,
      dataclass fields, the registry).

    Lambdas, and anything whose captured values or arguments cannot be keyed,
    are refused with :class:`~memokit.exceptions.UnkeyableArgument`.
    """
    if name is not None:
        if not isinstance(name, str) or not name.strip():
            raise TypeError(f"name must be a non-empty str such as 'prices', not {name!r}")
        return _safe_name(name)
    return _safe_name(_identity(func))


def _identity(func: Any) -> str:
    if isinstance(func, functools.partial):
        try:
            bound = encode((func.args, func.keywords))
        except UnkeyableArgument as exc:
            raise _refuse_function(
                func, f"one of the partial's arguments is refused: {exc}"
            ) from None
        return f"{_identity(func.func)}+{bound}"
    if isinstance(func, types.MethodType):
        try:
            bound = encode(func.__self__)
        except UnkeyableArgument as exc:
            raise _refuse_function(func, f"the object it is bound to is refused: {exc}") from None
        return f"{_identity(func.__func__)}+{bound}"
    layers: list[Any] = []

    def passing(layer: Any) -> bool:  # records each wrapper layer unwrapped through
        layers.append(layer)
        return False

    func = inspect.unwrap(func, stop=passing)
    wrapping = _wrappers(layers)
    if isinstance(func, types.FunctionType):
        qualname = func.__qualname__
        if "<lambda>" in qualname:
            raise _refuse_function(func, "a lambda has no name of its own")
        if "<locals>" in qualname:
            return _nested(func) + wrapping
        return _module_level(func) + wrapping
    if isinstance(func, types.BuiltinFunctionType) and isinstance(
        getattr(func, "__self__", None), types.ModuleType | None
    ):
        return function_name(func) + wrapping
    if isinstance(func, type) or not callable(func):
        raise _refuse_function(func, "it is not a function")
    # A callable object: its class, and what identifies this instance.
    problem = name_problem(type(func))
    if problem is not None:
        raise _refuse_function(func, problem)
    try:
        return f"{type(func).__module__}:{type(func).__qualname__}+{encode(func)}"
    except UnkeyableArgument as exc:
        raise _refuse_function(func, f"the object is refused as a key: {exc}") from None


def runtime_method_problem(func: Callable[..., Any], ignore: tuple[str, ...]) -> str | None:
    """Why ignoring ``func``'s first parameter leaves its keys ambiguous, or None.

    A method of a class made at run time (a class statement inside a function)
    has one qualified name for every class that code makes; with its ``self``
    ignored, nothing in the key tells those classes apart.
    """
    inner = inspect.unwrap(func)
    if not isinstance(inner, types.FunctionType):
        return None
    qualname = inner.__qualname__
    _head, marker, tail = qualname.rpartition("<locals>.")
    if not marker or "." not in tail:
        return None
    first = inner.__code__.co_varnames[: inner.__code__.co_argcount][:1]
    if not first or first[0] not in ignore:
        return None
    return (
        f"@cached(ignore=[{first[0]!r}]) on {qualname}, a method of a class made at run "
        f"time: every class that code makes shares the method's name, and with "
        f"{first[0]!r} ignored nothing in the key tells them apart. Ways out: give the "
        f"method a name of its own with @cached(name=...) (put what differs between "
        f"the classes in it), or key by {first[0]!r} (give its class a __cache_key__) "
        f"instead of ignoring it, or define the class at module level"
    )


def watched_cells(func: Callable[..., Any]) -> list[tuple[types.CellType, object]]:
    """Return the closure cells of ``func`` (and its wrapper layers) with their contents now.

    The identity encodes them once, at decoration; a key builder compares them
    (``is``) on each call and computes the identity again when one was rebound.
    A module-level function has none, so its calls pay nothing for this.
    """
    layers: list[Any] = []

    def passing(layer: Any) -> bool:
        layers.append(layer)
        return False

    layers.append(inspect.unwrap(func, stop=passing))
    watched = []
    for layer in layers:
        if not isinstance(layer, types.FunctionType) or not layer.__closure__:
            continue
        for variable, cell in zip(layer.__code__.co_freevars, layer.__closure__, strict=True):
            if variable == "__class__":  # super()'s cell: set once with the class
                continue
            try:
                watched.append((cell, cell.cell_contents))
            except ValueError:  # empty at decoration: the function refers to itself
                continue
    return watched


def signature_of(func: Callable[..., Any]) -> inspect.Signature:
    """Return ``inspect.signature(func)``, or refuse a callable that has none."""
    try:
        return inspect.signature(func)
    except (ValueError, TypeError) as exc:
        raise UnkeyableArgument(
            f"@cached cannot read the parameters of {describe(func)} ({exc}), so it cannot "
            f"bind calls to build keys. Wrap it in a def with named parameters, for "
            f"example: def parse(text: str) -> int: return int(text, base=2)"
        ) from None
