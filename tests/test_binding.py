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
