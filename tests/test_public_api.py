"""The public surface of VWED: what a script sees, each part documented."""

from __future__ import annotations

import inspect

from vwed_kernel.vwed import VWED


def test_vwed_modules_and_documented_methods():
    v = VWED()
    modules = [
        "api",
        "function",
        "log",
        "event",
        "timer",
        "http",
        "mail",
        "secrets",
        "device",
        "storage",
        "task",
        "robot",
        "mqtt",
    ]
    assert dir(v) == sorted(
        [*modules, "script_id", "replica", "replicas", "registrations", "progress", "deploy"]
    )
    for module_name in modules:
        module = getattr(v, module_name)
        assert module.__doc__, module_name
        for name, member in inspect.getmembers(module):
            if not name.startswith("_") and callable(member):
                assert member.__doc__, f"VWED.{module_name}.{name} has no docstring"


def test_call_local_accepts_a_request_dict():
    v = VWED()
    v.api.register_route("/who", "POST", lambda request: (request["json"], request["headers"]))
    assert v.api.call_local("/who", "POST", request={"json": {"a": 1}, "headers": {"X": "1"}}) == (
        {"a": 1},
        {"X": "1"},
    )
