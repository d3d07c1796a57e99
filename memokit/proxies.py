"""The wrapt plumbing under the decorated callables of :mod:`memokit.wrappers`.

wrapt's proxy classes (typed here as plain classes: wrapt ships no type
information), fast readers of the two wrapt slots the hit path needs, and the
descriptor that gives the decorated callables their function's annotations.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # wrapt ships no type information: to the type checker the bases are plain
    # classes, and memokit.wrappers' public classes carry all the typing.

    class _FunctionWrapper:
        pass

    class _BoundFunctionWrapper:
        pass

else:
    from wrapt import BoundFunctionWrapper as _BoundFunctionWrapper
    from wrapt import FunctionWrapper as _FunctionWrapper

__all__ = ["_Annotations", "_BoundFunctionWrapper", "_FunctionWrapper", "_bound_of", "_state_of"]


def _slot_reader(name: str) -> Callable[[Any], Any]:
    """A fast reader of one of wrapt's own slots on our wrapper objects.

    wrapt's C proxy defines ``__getattr__``, so on a Python subclass every
    ``self.x`` goes through CPython's getattr hook, a Python-level call (about
    75 ns, twice per hit); the slot's descriptor reads it in about 30 ns.
    wrapt's pure-Python implementation keeps plain attributes instead.
    """
    get = getattr(getattr(_FunctionWrapper, name, None), "__get__", None)
    return get if callable(get) else operator.attrgetter(name)


_state_of = _slot_reader("_self_wrapper")
"""The :class:`CachedState` of a wrapper object (wrapt's ``wrapper`` slot)."""
_bound_of = _slot_reader("_self_instance")
"""What a wrapper object is bound to (wrapt's ``instance`` slot), None if unbound."""


class _Annotations(dict[str, Any]):
    """``__annotations__`` of the decorated callables: the wrapped function's.

    A class body with annotations, and any read of ``SomeClass.__annotations__``,
    leave a dict under that name in the class, which would hide the function's
    annotations (wrapt's proxy finds the class attribute first). Every class
    in :mod:`memokit.wrappers` holds one of these instead: an empty dict to
    ``inspect`` and ``typing`` looking at the class, and a data descriptor that
    reads the function's.
    """

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        return instance.__wrapped__.__annotations__

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__wrapped__.__annotations__ = value

    def __delete__(self, instance: Any) -> None:
        del instance.__wrapped__.__annotations__
