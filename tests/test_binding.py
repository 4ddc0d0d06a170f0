"""The one argument-binding module (vwed_kernel.calling), on its own."""

from __future__ import annotations

import pytest

from vwed_kernel.calling import BindError, bind_arguments, parse_string_argument


def two(a, b=2):
    return a + b


def single(payload):
    return payload


def star(*args, **kwargs):
    return args, kwargs


@pytest.mark.parametrize(
    ("func", "args", "expected"),
    [
        (two, {"a": 1, "b": 5}, ((), {"a": 1, "b": 5})),
        (two, [1, 5], ((1, 5), {})),
        (two, "[1, 5]", ((1, 5), {})),
        (two, '{"a": 3}', ((), {"a": 3})),
        (two, "(1, 2)", ((1, 2), {})),
        (two, "7", ((7,), {})),
        (two, None, None),
        (single, {"a": 1, "b": 2}, (({"a": 1, "b": 2},), {})),
        (single, {"payload": 1}, (({"payload": 1},), {})),
        (single, "hello world", (("hello world",), {})),
        (star, {"x": 1}, ((), {"x": 1})),
    ],
)
def test_binding_rules(func, args, expected):
    if expected is None:
        with pytest.raises(BindError, match="do not match"):
            bind_arguments(func, args)
    else:
        assert bind_arguments(func, args) == expected


def test_strings_are_never_evaluated():
    for text in ("__import__('os').system('true')", "open('/etc/passwd')", "1 + 1", "x"):
        assert parse_string_argument(text) == text
    assert parse_string_argument("{'a': (1, 2)}") == {"a": (1, 2)}
    assert parse_string_argument('{"a": null}') == {"a": None}


def test_too_many_arguments_is_a_bind_error():
    with pytest.raises(BindError):
        bind_arguments(two, [1, 2, 3])
    with pytest.raises(BindError):
        bind_arguments(two, {"c": 1})


# -- the table of docs/vwed.md ("Arguments: which parameter gets what"), case by case ------


def reserve(goods):
    return goods


def allocate(goods_type, quantity=1):
    return goods_type, quantity


def anything(**kw):
    return kw


def nothing():
    return "nothing"


def detached():
    from vwed_kernel.vwed import VWED

    return VWED()


@pytest.mark.parametrize(
    ("handler", "params", "args", "expected"),
    [
        # the default rule: a function of one parameter gets the whole dict
        (reserve, None, {"goods": "pallet"}, {"goods": "pallet"}),
        (reserve, None, {"sku": "A1", "qty": 2}, {"sku": "A1", "qty": 2}),
        # declared params: a dict of those names becomes keyword arguments
        (reserve, ["goods"], {"goods": "pallet"}, "pallet"),
        (reserve, ["goods"], '{"goods": "pallet"}', "pallet"),
        # ... any other dict still follows the default rule
        (reserve, ["goods"], {"sku": "A1", "qty": 2}, {"sku": "A1", "qty": 2}),
        (reserve, ["goods"], {"goods": "pallet", "qty": 2}, {"goods": "pallet", "qty": 2}),
        # several parameters: keyword arguments, declared or not
        (allocate, None, {"goods_type": "box"}, ("box", 1)),
        (allocate, ["goods_type", "quantity"], {"goods_type": "box", "quantity": 2}, ("box", 2)),
        # lists, strings, scalars, None: unchanged
        (reserve, ["goods"], ["pallet"], "pallet"),
        (reserve, None, "pallet", "pallet"),
        (reserve, None, 7, 7),
        (anything, None, {"a": 1}, {"a": 1}),
        (nothing, None, None, "nothing"),
    ],
)
def test_the_binding_table(handler, params, args, expected, capsys):
    vwed = detached()
    vwed.function.register("f", handler, params=params)
    assert vwed.function.call("f", args) == expected


@pytest.mark.parametrize(
    ("handler", "params", "args"),
    [
        (allocate, None, {"goods_type": "box", "color": "red"}),
        (allocate, ["goods_type", "quantity"], {"goods_type": "box", "color": "red"}),
        (reserve, ["goods"], [1, 2]),
        (nothing, None, {"a": 1}),
    ],
)
def test_the_binding_table_refusals(handler, params, args):
    vwed = detached()
    vwed.function.register("f", handler, params=params)
    with pytest.raises(BindError, match="do not match"):
        vwed.function.call("f", args)


def test_declared_params_must_be_parameters_of_the_handler():
    from vwed_kernel.errors import RegistrationError

    vwed = detached()
    with pytest.raises(RegistrationError, match=r"'box', which is not a parameter of"):
        vwed.function.register("f", reserve, params=["box"])
    with pytest.raises(RegistrationError, match="must be a list"):
        vwed.function.register("f", reserve, params="goods")
    vwed.function.register("g", anything, params=["whatever"])  # **kwargs takes any name
    vwed.function.register("h", reserve, params=[{"name": "goods", "type": "str"}])
    assert vwed.function.call("h", {"goods": "crate"}) == "crate"
    described = {f["name"]: f["params"] for f in vwed.function.list_all()}
    assert described["h"] == [{"name": "goods", "type": "str"}]


def test_one_warning_per_function_for_the_likely_mistake(capsys):
    vwed = detached()
    vwed.function.register("reserve", reserve)
    vwed.function.register("reserve_too", reserve)
    vwed.function.register("declared", reserve, params=["goods"])
    for _ in range(3):
        assert vwed.function.call("reserve", {"goods": "pallet"}) == {"goods": "pallet"}
    assert vwed.function.call("reserve", {"sku": "A1"}) == {"sku": "A1"}  # not the mistake
    assert vwed.function.call("declared", {"goods": "pallet"}) == "pallet"
    err = capsys.readouterr().err
    assert err.count("[WARNING]") == 1, err
    assert "function 'reserve': reserve(goods) was called with {'goods': ...}" in err
    assert "params=['goods']" in err
    vwed.function.call("reserve_too", {"goods": "pallet"})  # one per function
    assert capsys.readouterr().err.count("[WARNING]") == 1
