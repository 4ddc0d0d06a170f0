"""The routing table on its own (kernel_gateway/registry.py), with plain snapshots as a
script's boot() sends them: which route wins and which methods a path has. What two
scripts may not both register, and that a commit is all or nothing:
test_registry_commits.py."""

from __future__ import annotations

from typing import Any

import pytest

from kernel_gateway.errors import BadRequest
from kernel_gateway.registry import Registry, normalize_path, parse_registrations


def api(method: str, path: str, description: str = "") -> dict[str, Any]:
    return {"method": method, "path": path, "description": description}


def commit(reg: Registry, script_id: str, **snapshot: Any) -> None:
    reg.commit(script_id, parse_registrations(script_id, snapshot))


def routed(reg: Registry, method: str, path: str) -> tuple[str, str, dict[str, str]] | None:
    """(owner, route as registered, path parameters) of what ``method path`` reaches."""
    found = reg.match(method, path)
    return None if found is None else (found[0].script_id, found[0].path, found[1])


# -- matching ---------------------------------------------------------------------------


def test_a_static_route_wins_over_a_parameterised_one_whatever_the_order():
    for order in ((0, 1), (1, 0)):
        reg = Registry()
        routes = [api("GET", "/robots/{robot_id}"), api("GET", "/robots/status")]
        commit(reg, "s", apis=[routes[i] for i in order])
        assert routed(reg, "GET", "/robots/status") == ("s", "/robots/status", {})
        assert routed(reg, "GET", "/robots/7") == ("s", "/robots/{robot_id}", {"robot_id": "7"})


def test_among_parameterised_routes_more_static_segments_win():
    reg = Registry()
    commit(
        reg,
        "s",
        apis=[
            api("GET", "/robots/{robot_id}/{field}"),
            api("GET", "/{kind}/{robot_id}/{field}"),
            api("GET", "/robots/{robot_id}/battery"),
        ],
    )
    assert routed(reg, "GET", "/robots/7/battery") == (
        "s",
        "/robots/{robot_id}/battery",
        {"robot_id": "7"},
    )
    assert routed(reg, "GET", "/robots/7/speed") == (
        "s",
        "/robots/{robot_id}/{field}",
        {"robot_id": "7", "field": "speed"},
    )
    assert routed(reg, "GET", "/lifts/2/speed") == (
        "s",
        "/{kind}/{robot_id}/{field}",
        {"kind": "lifts", "robot_id": "2", "field": "speed"},
    )


def test_segments_must_all_match_and_count_the_same():
    reg = Registry()
    commit(reg, "s", apis=[api("GET", "/robots/{robot_id}/status"), api("GET", "/a/b")])
    assert routed(reg, "GET", "/robots/7/status") is not None
    assert routed(reg, "GET", "/robots/7/other") is None
    assert routed(reg, "GET", "/robots/7") is None
    assert routed(reg, "GET", "/robots/7/status/more") is None
    assert routed(reg, "GET", "/a/b/c") is None
    assert routed(reg, "GET", "/a") is None


def test_the_method_is_part_of_the_match():
    reg = Registry()
    commit(
        reg,
        "s",
        apis=[
            api("get", "/orders"),  # methods are upper-cased
            api("POST", "/orders"),
            api("PUT", "/orders/{order_id}"),
        ],
    )
    assert routed(reg, "GET", "/orders") == ("s", "/orders", {})
    assert routed(reg, "POST", "/orders") == ("s", "/orders", {})
    assert routed(reg, "DELETE", "/orders") is None
    assert routed(reg, "GET", "/orders/5") is None
    assert routed(reg, "PUT", "/orders/5") == ("s", "/orders/{order_id}", {"order_id": "5"})


def test_methods_for_a_path_tell_405_from_404():
    reg = Registry()
    commit(
        reg,
        "s",
        apis=[api("POST", "/orders"), api("GET", "/orders"), api("PUT", "/orders/{order_id}")],
    )
    commit(reg, "t", apis=[api("DELETE", "/orders/{order_id}")])
    assert reg.methods_for("/orders") == ["GET", "POST"]  # sorted
    # a static route and a parameterised one both serve /orders/status, each its own method
    commit(reg, "u", apis=[api("GET", "/orders/status")])
    assert reg.methods_for("/orders/status") == ["DELETE", "GET", "PUT"]
    assert routed(reg, "PUT", "/orders/status") == (
        "s",
        "/orders/{order_id}",
        {"order_id": "status"},
    )
    assert reg.methods_for("/nothing/here") == []


def test_paths_are_normalised_when_registered():
    assert normalize_path("robots/") == "/robots"
    assert normalize_path("//a///b/") == "/a/b"
    assert normalize_path("/script-api/a/b") == "/a/b"
    assert normalize_path("/script-api") == "/"
    assert normalize_path("/script-apis/a") == "/script-apis/a"
    reg = Registry()
    commit(reg, "s", apis=[api("GET", "/script-api/robots/{robot_id}/"), api("GET", "plain")])
    assert routed(reg, "GET", "/robots/3") == ("s", "/robots/{robot_id}", {"robot_id": "3"})
    assert routed(reg, "GET", "/plain") == ("s", "/plain", {})


@pytest.mark.parametrize(
    ("kind", "item", "message"),
    [
        ("apis", api("FETCH", "/x"), "route method 'FETCH' is not valid"),
        ("functions", {"name": ""}, "function name must be a non-empty string"),
        ("events", {"event": "e"}, "listener needs an event name and an id"),
    ],
)
def test_an_invalid_registration_is_a_400(kind, item, message):
    with pytest.raises(BadRequest) as caught:
        parse_registrations("s", {kind: [item]})
    assert (caught.value.status, caught.value.code) == (400, "REGISTRATION_INVALID")
    assert caught.value.message == message
