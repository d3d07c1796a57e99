"""Each case where @cached served one call's result to another (issue 13), on memory and SQLite.

Every test here failed on 54ac4a8 (a wrong value, a raw TypeError, or no refusal).
The rule they check: two calls share an entry only when memokit can prove they
are the same call; otherwise it refuses with UnkeyableArgument.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import datetime
import enum
import functools
import sys
import types
from typing import Any

import pytest

from memokit import BaseCache, UnkeyableArgument, cached
from memokit.switches import use_cache as memokit_use_cache

# -- functions ---------------------------------------------------------------------


def test_two_lambdas_are_refused_unless_named(store: BaseCache) -> None:
    with pytest.raises(UnkeyableArgument, match="lambda") as refused:
        cached(cache=store)(lambda x: x * 2)
    assert "name=" in str(refused.value)
    assert "key=" in str(refused.value)
    double = cached(cache=store, name="double")(lambda x: x * 2)
    triple = cached(cache=store, name="triple")(lambda x: x * 3)
    assert double(3) == 6
    assert triple(3) == 9  # 6 on 54ac4a8: both were "module:<lambda>"
    assert double(3) == 6


def make_scaler(factor: int, cache: BaseCache) -> Any:
    @cached(cache=cache)
    def scale(x: int) -> int:
        return x * factor

    return scale


def test_functions_of_one_factory_never_share(store: BaseCache) -> None:
    one, hundred = make_scaler(1, store), make_scaler(100, store)
    assert one(5) == 5
    assert hundred(5) == 500  # 5 on 54ac4a8
    assert one.key(5) != hundred.key(5)
    # The same function made again (another process, another deploy) shares.
    again = make_scaler(100, store)
    assert again.key(5) == hundred.key(5)
    assert again(5) == 500
    assert again.cache_info().hits == 1


@cached(ignore=("verbose",))
def area(side: int, verbose: bool = False) -> int:
    return side * side


@cached(ignore=("verbose",))
def perimeter(side: int, verbose: bool = False) -> int:
    return 4 * side


def test_functions_that_ignore_an_argument_keep_their_identity(store: BaseCache) -> None:
    # Seen merging issue 13: a loop variable of ignore= replaced name=, so every
    # function with ignore=("x",) was keyed "x(...)" and they all shared entries.
    assert area.key(3) != perimeter.key(3)
    assert "area" in area.key(3)
    assert "perimeter" in perimeter.key(3)
    with memokit_use_cache(store):
        assert area(3) == 9
        assert perimeter(3) == 12


def test_coroutine_functions_of_one_factory_never_share(store: BaseCache) -> None:
    def make(factor: int) -> Any:
        @cached(cache=store)
        async def scale(x: int) -> int:
            return x * factor

        return scale

    async def main() -> list[int]:
        return [await make(1)(5), await make(100)(5), await make(100)(5)]

    assert asyncio.run(main()) == [5, 500, 500]


def test_a_factory_capturing_an_unkeyable_object_is_refused(store: BaseCache) -> None:
    class Client:  # a connection, a session ...: no declared identity
        pass

    client = Client()

    def make() -> Any:
        @cached(cache=store)
        def fetch(item: int) -> str:
            return f"{client} {item}"

        return fetch

    with pytest.raises(UnkeyableArgument, match="captures 'client'") as refused:
        make()
    assert "name=" in str(refused.value)

    @cached(cache=store, name="fetch")  # the caller declares the identity
    def fetch(item: int) -> str:
        return f"{client} {item}"

    assert fetch(1) == fetch(1)


def test_two_functions_with_one_name_in_one_scope_are_refused(store: BaseCache) -> None:
    def make(double: bool) -> Any:
        if double:

            @cached(cache=store)
            def f(x: int) -> int:
                return 2 * x

        else:

            @cached(cache=store)
            def f(x: int) -> int:
                return 3 * x

        return f

    assert make(True)(2) == 4
    with pytest.raises(UnkeyableArgument, match="same name"):
        make(False)


# -- classes and instances made at run time ----------------------------------------


def make_model(table: str) -> type:
    class Model:
        name = table

    return Model


def make_unit(factor: int) -> Any:
    @dataclasses.dataclass(frozen=True)
    class Unit:
        value: int

        def base(self) -> int:
            return self.value * factor

    return Unit


def test_classes_made_at_run_time_are_refused_as_arguments(store: BaseCache) -> None:
    @cached(cache=store)
    def table_of(model: type) -> str:
        return str(model.name)  # type: ignore[attr-defined]

    with pytest.raises(UnkeyableArgument, match="made at run time") as refused:
        table_of(make_model("users"))
    message = str(refused.value)
    for part in ("argument 'model'", "table_of", "class Model", "key=", "ignore="):
        assert part in message
    with pytest.raises(UnkeyableArgument):
        table_of(make_model("orders"))  # "users" on 54ac4a8


def test_instances_of_runtime_dataclasses_are_refused(store: BaseCache) -> None:
    metres, kilometres = make_unit(1), make_unit(1000)

    @cached(cache=store)
    def base_units(length: Any) -> int:
        return int(length.base())

    with pytest.raises(UnkeyableArgument, match="made at run time"):
        base_units(metres(3))
    with pytest.raises(UnkeyableArgument, match="made at run time"):
        base_units(kilometres(3))  # 3 on 54ac4a8


def test_methods_of_runtime_classes_are_refused(store: BaseCache) -> None:
    def make(table: str) -> Any:
        class Repo:
            def __cache_key__(self) -> int:
                return 1

            @cached(cache=store)
            def rows(self) -> str:
                return table

        return Repo

    with pytest.raises(UnkeyableArgument, match="argument 'self'"):
        make("users")().rows()
    with pytest.raises(UnkeyableArgument, match="argument 'self'"):
        make("orders")().rows()  # "users" on 54ac4a8


def test_a_class_whose_name_leads_elsewhere_is_refused(store: BaseCache) -> None:
    @cached(cache=store)
    def name_of(cls: type) -> str:
        return cls.__name__

    made = type("Model", (), {"__module__": __name__})  # no module attribute "Model"
    with pytest.raises(UnkeyableArgument, match="names another object"):
        name_of(made)
    assert name_of(Colour) == "Colour"


# -- arguments keyed by repr() ----------------------------------------------------


class Customer:
    """A user class whose repr() leaves out its identity (the primary key)."""

    def __init__(self, pk: int, name: str) -> None:
        self.pk = pk
        self.name = name

    def __repr__(self) -> str:
        return f"<Customer: {self.name}>"


def test_objects_are_not_keyed_by_their_repr(store: BaseCache) -> None:
    @cached(cache=store)
    def credit_limit(customer: Customer) -> int:
        return 50 if customer.pk == 1 else 5000

    with pytest.raises(UnkeyableArgument, match="does not key by repr") as refused:
        credit_limit(Customer(2, "Ann Smith"))  # 50 on 54ac4a8 after Customer(1, ...)
    assert "key_by_repr" in str(refused.value)


def test_key_templates_refuse_values_without_identity(store: BaseCache) -> None:
    @cached(cache=store, key="limit:{customer}")
    def credit_limit(customer: Customer) -> int:
        return customer.pk

    with pytest.raises(UnkeyableArgument, match=r"placeholder \{customer\}"):
        credit_limit(Customer(1, "Ann Smith"))

    @cached(cache=store, key="limit:{customer.pk}")
    def by_pk(customer: Customer) -> int:
        return customer.pk * 10

    assert by_pk(Customer(1, "Ann Smith")) == 10
    assert by_pk(Customer(2, "Ann Smith")) == 20
    assert by_pk.key(Customer(2, "x")) == "limit:2"


def test_numpy_arrays_are_keyed_by_dtype_shape_and_bytes(store: BaseCache) -> None:
    np = pytest.importorskip("numpy")

    @cached(cache=store)
    def total(values: Any) -> float:
        return float(values.sum())

    x = np.array([1.0, 1.1234567891])
    y = np.array([1.0, 1.1234567899])  # the same repr() as x (8 digits)
    assert total(x) == pytest.approx(2.1234567891, abs=1e-12)
    assert total(y) == pytest.approx(2.1234567899, abs=1e-12)  # x's total on 54ac4a8
    assert total.key(x) == total.key(x.copy())
    assert total.key(np.array([1, 2], dtype=np.int32)) != total.key(np.array([1, 2]))
    assert total.key(np.zeros((2, 3))) != total.key(np.zeros((3, 2)))
    assert total.key(np.float64(1.5)) != total.key(1.5)
    assert total.key(np.int64(3)) != total.key(np.int32(3))
    with pytest.raises(UnkeyableArgument, match="Python objects"):
        total.key(np.array([object()]))


def test_django_model_instances_are_keyed_by_label_and_primary_key(store: BaseCache) -> None:
    customer_model = _django_model()

    @cached(cache=store)
    def credit_limit(customer: Any) -> int:
        return 50 if customer.pk == 1 else 5000

    ann, other_ann = customer_model(pk=1, name="Ann Smith"), customer_model(pk=2, name="Ann Smith")
    ann._state.adding = other_ann._state.adding = False  # as loaded from the database
    assert repr(ann) == repr(other_ann)
    assert credit_limit(ann) == 50
    assert credit_limit(other_ann) == 5000  # 50 on 54ac4a8
    assert "shop.customer" in credit_limit.key(ann)
    with pytest.raises(UnkeyableArgument, match="unsaved"):
        credit_limit(customer_model(name="new"))


def test_pydantic_models_are_keyed_by_class_and_dump(store: BaseCache) -> None:
    pydantic = pytest.importorskip("pydantic")
    price = _pydantic_model(pydantic)

    @cached(cache=store)
    def total(p: Any) -> int:
        return int(p.amount) * 2

    assert total(price(amount=1, currency="EUR")) == 2
    assert total(price(amount=2, currency="EUR")) == 4
    assert total.key(price(amount=1, currency="EUR")) != total.key(price(amount=1, currency="USD"))


# -- keys that depend on the process ------------------------------------------------


def test_namespaces_and_deques_are_keyed_item_by_item(store: BaseCache) -> None:
    @cached(cache=store)
    def describe(value: Any) -> str:
        return type(value).__name__

    values = [
        types.SimpleNamespace(tags={"b", "a", "c"}),
        argparse.Namespace(tags={"b", "a", "c"}),
        collections.deque([frozenset({"x", "y"}), frozenset({"z"})]),
    ]
    for value in values:
        assert describe(value) == type(value).__name__
        assert describe.key(value) == describe.key(_rebuilt(value))
    assert describe.key(values[0]) != describe.key(values[1])
    assert describe.key(collections.deque([1], maxlen=3)) != describe.key(collections.deque([1]))
    assert describe.cache_info().hits == 0
    # The same keys under other hash seeds: tests/keys/test_properties.py.


def _rebuilt(value: Any) -> Any:
    if isinstance(value, collections.deque):
        return collections.deque(reversed(list(reversed(value))))
    return type(value)(tags=set(sorted(value.tags, reverse=True)))


# -- enums and flags ----------------------------------------------------------------


class Colour(enum.Enum):
    RED = 1


class Perm(enum.Flag):
    R = 4
    W = 2
    X = 1


class Mode(enum.IntFlag):
    A = 1
    B = 2


def test_every_flag_value_is_keyed(store: BaseCache) -> None:
    @cached(cache=store)
    def allowed(perm: Any) -> int:
        return int(perm.value)

    values = [Perm(0), Perm.R, Perm.R | Perm.W, Mode(0), Mode(8), Mode.A | Mode.B, Mode.A]
    for value in values:
        assert allowed(value) == int(value.value)  # TypeError on 54ac4a8 for Flag(0)
    assert len({allowed.key(v) for v in values}) == len(values)
    assert allowed.key(Mode.A) != allowed.key(1)


# -- helpers ------------------------------------------------------------------------


def _django_model() -> Any:
    # One model class per process: Django's app registry refuses a second one.
    made = getattr(sys.modules[__name__], "_customer_model", None)
    if made is not None:
        return made
    pytest.importorskip("django")
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(INSTALLED_APPS=[], DATABASES={}, USE_TZ=True)
    django.setup()
    from django.db import models

    class Customer(models.Model):
        name = models.CharField(max_length=50)

        class Meta:
            app_label = "shop"

        def __str__(self) -> str:
            return str(self.name)

    globals()["_customer_model"] = Customer
    return Customer


def _pydantic_model(pydantic: Any) -> Any:
    made = globals().get("Price")
    if made is None:
        source = "class Price(BaseModel):\n    amount: int\n    currency: str\n"
        namespace: dict[str, Any] = {"BaseModel": pydantic.BaseModel, "__name__": __name__}
        exec(source, namespace)  # noqa: S102 - a model at module level, made once
        made = globals()["Price"] = namespace["Price"]
    return made


# -- review of issue 13: wrappers, redefinitions, rebinding, containers --------------


def _base(x: int) -> int:
    return x


def _times(n: int) -> Any:
    def decorate(fn: Any) -> Any:
        @functools.wraps(fn)
        def inner(x: int) -> int:
            return int(fn(x)) * n

        return inner

    return decorate


def test_wraps_wrappers_are_told_apart_by_what_they_capture(store: BaseCache) -> None:
    double = cached(cache=store)(_times(2)(_base))
    triple = cached(cache=store)(_times(3)(_base))
    assert double(3) == 6
    assert triple(3) == 9  # 6 before the fix: both were keyed by _base alone
    assert double.key(3) != triple.key(3)
    # The same wrapper made again shares its entries.
    again = cached(cache=store)(_times(3)(_base))
    assert again.key(3) == triple.key(3)


def test_wraps_wrappers_capturing_an_unkeyable_value_are_refused(store: BaseCache) -> None:
    class Client:
        pass

    def with_client(client: Any) -> Any:
        def decorate(fn: Any) -> Any:
            @functools.wraps(fn)
            def inner(x: int) -> str:
                return f"{client} {fn(x)}"

            return inner

        return decorate

    with pytest.raises(UnkeyableArgument, match="captures 'client'"):
        cached(cache=store)(with_client(Client())(_base))


def _module_from(source: str, name: str, store: BaseCache) -> Any:
    module = types.ModuleType(name)
    module.__dict__.update(cached=cached, store=store)
    sys.modules[name] = module
    try:
        exec(compile(source, f"<{name}>", "exec"), module.__dict__)  # noqa: S102 - a module made for the test
    finally:
        del sys.modules[name]
    return module


def test_a_module_level_function_redefined_under_its_name_is_refused(store: BaseCache) -> None:
    source = (
        "def price(x):\n    return x\n"
        "first = cached(cache=store)(price)\n"
        "def price(x):\n    return x * 10\n"
        "second = cached(cache=store)(price)\n"
    )
    with pytest.raises(UnkeyableArgument, match="redefined") as refused:
        _module_from(source, "memokit_test_redefined", store)
    assert "name=" in str(refused.value)


def test_the_same_function_decorated_twice_shares(store: BaseCache) -> None:
    first = cached(cache=store)(_base)
    second = cached(cache=store)(_base)
    assert first.key(1) == second.key(1)


class _Ordered(collections.OrderedDict[str, int]):
    pass


def test_ordered_dict_subclasses_keep_their_order(store: BaseCache) -> None:
    @cached(cache=store)
    def first(value: Any) -> str:
        return str(next(iter(value)))

    assert first(_Ordered(a=1, b=2)) == "a"
    assert first(_Ordered(b=2, a=1)) == "b"  # "a" before the fix: keyed as a plain dict


def test_defaultdicts_are_keyed_with_their_default_factory(store: BaseCache) -> None:
    @cached(cache=store)
    def missing(value: Any) -> Any:
        return value["missing"]

    assert missing(collections.defaultdict(int)) == 0
    assert missing(collections.defaultdict(list)) == []  # 0 before the fix
    with pytest.raises(UnkeyableArgument, match="lambda"):
        missing(collections.defaultdict(lambda: 1))


def test_a_captured_value_rebound_after_decoration_is_keyed_anew(store: BaseCache) -> None:
    def make(k: int) -> Any:
        n = None

        @cached(cache=store)
        def times(x: int) -> int:
            return x * n  # type: ignore[operator]

        n = k
        return times

    two, five = make(2), make(5)
    assert two(3) == 6
    assert five(3) == 15  # 6 before the fix: both keyed with n=None
    assert two.key(3) != five.key(3)
    assert make(5).key(3) == five.key(3)


def test_pydantic_models_keep_field_types_and_excluded_fields(store: BaseCache) -> None:
    pytest.importorskip("pydantic")
    loose, secretive = _pydantic_review_models()

    @cached(cache=store)
    def kind(model: Any) -> str:
        return type(getattr(model, "x", None) or model.secret).__name__ + str(model)

    moment = datetime.datetime(2020, 1, 1)
    as_date, as_text = loose(x=moment), loose(x=moment.isoformat())
    assert kind.key(as_date) != kind.key(as_text)  # equal before the fix: one JSON dump
    assert kind(as_date) != kind(as_text)
    assert kind.key(secretive(a=1, secret=1)) != kind.key(secretive(a=1, secret=2))


def _pydantic_review_models() -> Any:
    made = globals().get("Loose")
    if made is None:
        source = (
            "class Loose(BaseModel):\n    x: object\n"
            "class Secretive(BaseModel):\n    a: int\n"
            "    secret: int = Field(default=0, exclude=True)\n"
        )
        pydantic = sys.modules["pydantic"]
        namespace: dict[str, Any] = {
            "BaseModel": pydantic.BaseModel,
            "Field": pydantic.Field,
            "__name__": __name__,
        }
        exec(source, namespace)  # noqa: S102 - models at module level, made once
        globals()["Loose"], globals()["Secretive"] = namespace["Loose"], namespace["Secretive"]
    return globals()["Loose"], globals()["Secretive"]


def test_ignoring_self_of_a_method_of_a_runtime_class_is_refused(store: BaseCache) -> None:
    def make(table: str) -> Any:
        class Repo:
            def __init__(self) -> None:
                self.table = table

            @cached(cache=store, ignore=["self"])
            def rows(self) -> str:
                return self.table

        return Repo

    # Before the fix: accepted, and make("orders")().rows() returned "users".
    with pytest.raises(UnkeyableArgument, match="ignore") as refused:
        make("users")
    assert "name=" in str(refused.value)

    def make_named(table: str) -> Any:
        class Repo:
            @cached(cache=store, ignore=["self"], name=f"rows:{table}")
            def rows(self) -> str:
                return table

        return Repo

    assert (make_named("users")().rows(), make_named("orders")().rows()) == ("users", "orders")


def test_a_runtime_class_as_argument_is_named_in_the_refusal(store: BaseCache) -> None:
    @cached(cache=store)
    def table_of(model: type) -> str:
        return str(model.name)  # type: ignore[attr-defined]

    with pytest.raises(UnkeyableArgument, match="class Model") as refused:
        table_of(make_model("users"))
    message = str(refused.value)
    assert "give type a __cache_key__" not in message  # the message before the fix
    assert "register_key(type" not in message  # registering `type` would key every class
    for part in ("key=", "ignore="):
        assert part in message
