"""Argument binding through a real gateway: ``params=[...]`` and the one WARNING of the
likely mistake (the rule, case by case: test_binding.py; the table: docs/vwed.md)."""

from __future__ import annotations

from conftest import unique, wait_until

SCRIPT = """
def boot():
    VWED.function.register("{n}_reserve", reserve)
    VWED.function.register("{n}_reserve_declared", reserve, params=["goods"])
    VWED.function.register("{n}_allocate", allocate, params=["goods_type", "quantity"])
    VWED.function.register("{n}_mark", lambda: VWED.log.warning("mark", "the end"))


def reserve(goods):
    return {{"got": goods}}


def allocate(goods_type, quantity=1):
    return [goods_type, quantity]
"""


def call(client, name, args):
    return client.post(f"/script-engine/functions/{name}/call", json={"args": args})


def test_declared_params_and_the_one_warning(scripts, client):
    n = unique("bind")
    sid = scripts.start(f"{n}.py", SCRIPT.format(n=n))["script_id"]

    # declared: the dict's keys are the parameters
    r = call(client, f"{n}_reserve_declared", {"goods": "pallet"})
    assert r.status_code == 200 and r.json()["result"] == {"got": "pallet"}
    assert call(client, f"{n}_allocate", {"goods_type": "box"}).json()["result"] == ["box", 1]
    r = call(client, f"{n}_allocate", {"goods_type": "box", "colour": "red"})
    assert r.status_code == 400 and r.json()["code"] == "BAD_ARGUMENTS"

    # not declared: the platform's rule (the whole dict), and one WARNING for the function
    first = call(client, f"{n}_reserve", {"goods": "pallet"})
    assert first.json()["result"] == {"got": {"goods": "pallet"}}
    for _ in range(3):
        assert call(client, f"{n}_reserve", {"goods": "crate"}).json()["result"] == {
            "got": {"goods": "crate"}
        }
    assert call(client, f"{n}_reserve", {"sku": "A1"}).json()["result"] == {"got": {"sku": "A1"}}

    def warnings():
        r = client.get(
            "/script-engine/logs", params={"script_id": sid, "level": "WARNING", "limit": 100}
        )
        return [x for x in r.json()["records"] if x["level"] == "WARNING"]

    # log lines travel in order on the kernel's iopub: once the mark is in, every
    # WARNING the calls before it sent is in too
    call(client, f"{n}_mark", None)
    recs = wait_until(
        lambda: (w := warnings()) and any(x["tag"] == "mark" for x in w) and w,
        10,
        "the mark",
    )
    recs = [x for x in recs if x["tag"] != "mark"]
    assert len(recs) == 1, recs
    rec = recs[0]
    assert rec["tag"] == "function" and rec["call_id"] == first.json()["call_id"]
    assert (
        f"function '{n}_reserve': reserve(goods) was called with {{'goods': ...}}"
        in (rec["message"])
    )
    assert "params=['goods']" in rec["message"]
