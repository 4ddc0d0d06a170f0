"""The routing table on its own (kernel_gateway/registry.py): what two scripts may not
both register, a commit all or nothing, removal, and registrations one at a time after
boot (add_one/remove_one)."""

from __future__ import annotations

import pytest
from test_registry import api, commit, routed

from kernel_gateway.errors import BadRequest, Conflict
from kernel_gateway.registrations import parse_registrations
from kernel_gateway.registry import Registry

# -- conflicts between scripts ---------------------------------------------------------


@pytest.mark.parametrize(
    ("snapshot", "kind", "name"),
    [
        ({"apis": [api("GET", "/shared")]}, "api", "GET /shared"),
        ({"apis": [api("GET", "/shared/{x}")]}, "api", "GET /shared/{x}"),
        ({"functions": [{"name": "shared"}]}, "function", "shared"),
        ({"websockets": [{"path": "/shared/ws"}]}, "websocket", "/shared/ws"),
        ({"tcp": [{"port": 9502}]}, "tcp", "9502"),
    ],
)
def test_two_scripts_cannot_register_the_same_name(snapshot, kind, name):
    reg = Registry()
    reg.commit("A", parse_registrations("A", snapshot))
    with pytest.raises(Conflict) as caught:
        reg.commit("B", parse_registrations("B", snapshot))
    err = caught.value
    assert (err.status, err.code) == (409, "REGISTRATION_CONFLICT")
    assert err.message == f"{kind} {name!r} is already registered by script A"
    assert err.details == {
        "owner": "A",
        "conflicts": [{"kind": kind, "name": name, "owner": "A"}],
    }
    assert reg.of("B") is None


def test_a_route_differing_only_in_parameter_names_is_a_conflict():
    reg = Registry()
    commit(reg, "A", apis=[api("GET", "/robots/{robot_id}")])
    with pytest.raises(Conflict):
        commit(reg, "B", apis=[api("GET", "/robots/{rid}")])


def test_every_conflict_is_listed_and_the_message_names_the_first():
    reg = Registry()
    commit(reg, "A", apis=[api("GET", "/a")], functions=[{"name": "fa"}])
    commit(reg, "C", websockets=[{"path": "/ws"}])
    with pytest.raises(Conflict) as caught:
        commit(
            reg,
            "B",
            apis=[api("GET", "/a"), api("GET", "/b")],
            functions=[{"name": "fa"}, {"name": "fb"}],
            websockets=[{"path": "/ws"}],
        )
    assert caught.value.message == "api 'GET /a' is already registered by script A"
    assert caught.value.details["conflicts"] == [
        {"kind": "api", "name": "GET /a", "owner": "A"},
        {"kind": "function", "name": "fa", "owner": "A"},
        {"kind": "websocket", "name": "/ws", "owner": "C"},
    ]


def test_what_is_not_a_conflict():
    reg = Registry()
    commit(
        reg,
        "A",
        apis=[api("GET", "/x")],
        events=[{"event": "arrived", "id": "l1"}],
        timers=[{"id": "t1", "kind": "interval"}],
    )
    # another method on the same path, the same event, the same timer id: no clash
    commit(
        reg,
        "B",
        apis=[api("POST", "/x")],
        events=[{"event": "arrived", "id": "l1"}],
        timers=[{"id": "t1", "kind": "interval"}],
    )
    assert routed(reg, "GET", "/x")[0] == "A" and routed(reg, "POST", "/x")[0] == "B"
    assert [e.script_id for e in reg.listeners("arrived")] == ["A", "B"]


# -- atomic commit ---------------------------------------------------------------------


def test_a_commit_that_conflicts_changes_nothing():
    reg = Registry()
    commit(reg, "A", apis=[api("GET", "/a")], functions=[{"name": "taken"}])
    commit(reg, "B", apis=[api("GET", "/b1")], functions=[{"name": "b_old"}])
    before = (reg.of("A").describe(), reg.of("B").describe(), reg.functions())
    with pytest.raises(Conflict):
        commit(
            reg,
            "B",
            apis=[api("GET", "/b2"), api("PUT", "/b2/{x}")],
            functions=[{"name": "b_new"}, {"name": "taken"}],
            events=[{"event": "e", "id": "l"}],
            websockets=[{"path": "/b/ws"}],
        )
    assert (reg.of("A").describe(), reg.of("B").describe(), reg.functions()) == before
    assert routed(reg, "GET", "/b1")[0] == "B"  # the old version of B still serves
    assert routed(reg, "GET", "/b2") is None and routed(reg, "PUT", "/b2/1") is None
    assert reg.function("b_new") is None and reg.function("taken").script_id == "A"
    assert reg.listeners("e") == [] and reg.websocket("/b/ws") is None
    with pytest.raises(Conflict):
        commit(reg, "C", functions=[{"name": "c"}, {"name": "taken"}])
    assert reg.of("C") is None and reg.function("c") is None


def test_a_recommit_of_the_same_script_replaces_its_entries():
    reg = Registry()
    commit(
        reg,
        "A",
        apis=[api("GET", "/old"), api("GET", "/keep/{k}", "v1")],
        functions=[{"name": "f_old"}, {"name": "f_keep", "description": "v1"}],
        events=[{"event": "old", "id": "l1"}],
        websockets=[{"path": "/old/ws"}],
        tcp=[{"port": 9000}],
    )
    commit(
        reg,
        "A",
        apis=[api("GET", "/keep/{k}", "v2"), api("GET", "/new")],
        functions=[{"name": "f_keep", "description": "v2"}],
        events=[{"event": "new", "id": "l1"}],
    )
    assert routed(reg, "GET", "/old") is None
    assert reg.match("GET", "/keep/1")[0].description == "v2"
    assert routed(reg, "GET", "/new")[0] == "A"
    assert [f.name for f in reg.functions()] == ["f_keep"]
    assert reg.function("f_keep").description == "v2"
    assert reg.listeners("old") == [] and [e.event for e in reg.listeners("new")] == ["new"]
    assert reg.websocket("/old/ws") is None
    assert reg.of("A").counts() == {
        "apis": 2,
        "functions": 1,
        "events": 1,
        "timers": 0,
        "websockets": 0,
        "tcp": 0,
        "mqtt": 0,
    }
    # what A gave up is free for another script
    commit(reg, "B", apis=[api("GET", "/old")], websockets=[{"path": "/old/ws"}])
    assert routed(reg, "GET", "/old")[0] == "B" and reg.websocket("/old/ws") == "B"


def test_remove_takes_everything_of_one_script_and_nothing_else():
    reg = Registry()
    commit(reg, "A", apis=[api("GET", "/a"), api("GET", "/a/{x}")], functions=[{"name": "fa"}])
    commit(
        reg,
        "B",
        apis=[api("GET", "/b/{x}")],
        functions=[{"name": "fb"}],
        events=[{"event": "e", "id": "l"}],
        websockets=[{"path": "/ws"}],
        tcp=[{"port": 9001}],
    )
    removed = reg.remove("B")
    assert removed is not None and set(removed.functions) == {"fb"}
    assert reg.remove("B") is None
    assert routed(reg, "GET", "/b/1") is None and reg.function("fb") is None
    assert reg.listeners("e") == [] and reg.websocket("/ws") is None
    assert routed(reg, "GET", "/a")[0] == "A" and routed(reg, "GET", "/a/1")[0] == "A"
    assert [f.name for f in reg.functions()] == ["fa"]
    commit(reg, "C", tcp=[{"port": 9001}])  # the port is free again


def test_listeners_come_higher_priority_first_in_registration_order_otherwise():
    reg = Registry()
    commit(
        reg,
        "A",
        events=[
            {"event": "e", "id": "a1", "priority": 1},
            {"event": "e", "id": "a5", "priority": 5},
            {"event": "e", "id": "abad", "priority": "high"},  # not an int: priority 1
        ],
    )
    commit(reg, "B", events=[{"event": "e", "id": "b5", "priority": 5, "all_replicas": True}])
    got = [(e.script_id, e.id, e.priority) for e in reg.listeners("e")]
    assert got == [("A", "a5", 5), ("B", "b5", 5), ("A", "a1", 1), ("A", "abad", 1)]
    assert reg.listeners("e")[1].all_replicas is True


# -- one registration at a time, after boot -------------------------------------------


def test_add_one_route_and_function_and_their_conflicts():
    reg = Registry()
    commit(reg, "A", apis=[api("GET", "/a")], functions=[{"name": "fa"}])
    commit(reg, "B")
    reg.add_one("B", "api", api("GET", "/b/{x}"))
    reg.add_one("B", "function", {"name": "fb"})
    assert routed(reg, "GET", "/b/1") == ("B", "/b/{x}", {"x": "1"})
    assert reg.function("fb").script_id == "B"
    assert reg.of("B").counts()["apis"] == 1 and reg.of("B").counts()["functions"] == 1
    for kind, item, message in (
        ("api", api("GET", "/a"), "api 'GET /a' is owned by A"),
        ("function", {"name": "fa"}, "function 'fa' is owned by A"),
    ):
        with pytest.raises(Conflict) as caught:
            reg.add_one("B", kind, item)
        assert (caught.value.status, caught.value.code) == (409, "REGISTRATION_CONFLICT")
        assert caught.value.message == message
    assert routed(reg, "GET", "/a")[0] == "A" and reg.function("fa").script_id == "A"
    # the same key again from its own script replaces the entry
    reg.add_one("B", "api", api("GET", "/b/{x}", "second"))
    assert reg.match("GET", "/b/1")[0].description == "second"
    assert reg.of("B").counts()["apis"] == 1
    with pytest.raises(BadRequest):
        reg.add_one("B", "api", api("BREW", "/tea"))


def test_add_one_websocket_and_tcp_and_their_conflicts():
    reg = Registry()
    commit(reg, "A", websockets=[{"path": "/ws/a"}], tcp=[{"port": 9100}])
    commit(reg, "B")
    reg.add_one("B", "websocket", {"path": "ws/b/"})
    reg.add_one("B", "tcp", {"port": 9101})
    assert reg.websocket("/ws/b") == "B"
    assert reg.of("B").counts()["websockets"] == 1 and reg.of("B").counts()["tcp"] == 1
    for kind, item, message in (
        ("websocket", {"path": "/ws/a"}, "websocket '/ws/a' is owned by A"),
        ("tcp", {"port": 9100}, "tcp '9100' is owned by A"),
    ):
        with pytest.raises(Conflict) as caught:
            reg.add_one("B", kind, item)
        assert (caught.value.status, caught.value.code) == (409, "REGISTRATION_CONFLICT")
        assert caught.value.message == message
    assert reg.websocket("/ws/a") == "A"


def test_add_one_listener_replaces_its_id_and_timer_is_recorded():
    reg = Registry()
    commit(reg, "A", events=[{"event": "e1", "id": "l", "priority": 1}])
    reg.add_one("A", "event", {"event": "e2", "id": "l", "priority": 3})
    assert reg.listeners("e1") == []
    assert [(e.id, e.priority) for e in reg.listeners("e2")] == [("l", 3)]
    reg.add_one("A", "timer", {"id": "t", "kind": "interval", "seconds": 1})
    reg.add_one("A", "timer", {"kind": "no id: ignored"})
    assert reg.of("A").timers == {
        "t": {"id": "t", "kind": "interval", "seconds": 1, "script_id": "A"}
    }


def test_add_one_and_remove_one_for_a_script_not_committed_do_nothing():
    reg = Registry()
    reg.add_one("ghost", "api", api("GET", "/g"))
    reg.add_one("ghost", "function", {"name": "g"})
    reg.remove_one("ghost", "api", api("GET", "/g"))
    assert routed(reg, "GET", "/g") is None and reg.function("g") is None
    assert reg.of("ghost") is None


def test_remove_one_of_each_kind():
    reg = Registry()
    commit(
        reg,
        "A",
        apis=[api("GET", "/static"), api("PUT", "/dyn/{x}")],
        functions=[{"name": "f"}, {"name": "g"}],
        events=[{"event": "e", "id": "l1"}, {"event": "e", "id": "l2"}],
        timers=[{"id": "t"}],
    )
    reg.remove_one("A", "api", api("get", "static/"))  # normalised like a registration
    reg.remove_one("A", "api", api("PUT", "/dyn/{x}"))
    reg.remove_one("A", "function", {"name": "f"})
    reg.remove_one("A", "event", {"id": "l1"})
    reg.remove_one("A", "timer", {"id": "t"})
    reg.remove_one("A", "function", {"name": "never registered"})
    assert routed(reg, "GET", "/static") is None and routed(reg, "PUT", "/dyn/1") is None
    assert reg.methods_for("/dyn/1") == []
    assert [f.name for f in reg.functions()] == ["g"]
    assert [e.id for e in reg.listeners("e")] == ["l2"]
    assert reg.of("A").counts() == {
        "apis": 0,
        "functions": 1,
        "events": 1,
        "timers": 0,
        "websockets": 0,
        "tcp": 0,
        "mqtt": 0,
    }


def test_remove_one_does_not_touch_another_scripts_function():
    reg = Registry()
    commit(reg, "A", functions=[{"name": "f"}])
    commit(reg, "B")
    reg.remove_one("B", "function", {"name": "f"})
    assert reg.function("f").script_id == "A"


def test_describe_lists_what_a_script_registered():
    reg = Registry()
    commit(
        reg,
        "A",
        apis=[api("GET", "/a", "an a")],
        functions=[{"name": "f", "description": "eff", "params": ["x"]}],
        events=[{"event": "e", "id": "l", "priority": 2}],
        timers=[{"id": "t"}],
        websockets=[{"path": "/ws"}],
        tcp=[{"port": 9200}],
        mqtt=[
            {"id": "mqtt_1", "topic": "a/+/t", "qos": 1, "active": True, "handler": "h"},
            {"id": "bad", "topic": "a/b", "qos": 7},  # malformed: left out
        ],
    )
    assert reg.of("A").describe() == {
        "apis": [{"method": "GET", "path": "/a", "description": "an a", "script_id": "A"}],
        "functions": [{"name": "f", "description": "eff", "params": ["x"], "script_id": "A"}],
        "events": [
            {"id": "l", "event": "e", "priority": 2, "all_replicas": False, "script_id": "A"}
        ],
        "timers": [{"id": "t", "script_id": "A"}],
        "websockets": [{"path": "/ws", "script_id": "A"}],
        "tcp": [{"port": 9200, "script_id": "A"}],
        "mqtt": [
            {
                "id": "mqtt_1",
                "topic": "a/+/t",
                "qos": 1,
                "all_replicas": False,
                "active": True,
                "handler": "h",
                "script_id": "A",
            }
        ],
    }
