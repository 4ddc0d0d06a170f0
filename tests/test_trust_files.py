"""Smaller holes (issue 12, item 8): symlinks back to the root, recursive deletes
through symlinks, names longer than the platform takes, and framing headers set by a
script's ``Response``. A real gateway, real files, real HTTP."""

from __future__ import annotations

import os

import pytest

from conftest import unique


@pytest.mark.timeout(60)
def test_symlinks_to_the_root_and_deletes_through_links(scripts_dir, client, tmp_path):
    n = unique("links")
    base = scripts_dir / n
    (base / "sub").mkdir(parents=True)
    (base / "sub" / "keep.py").write_text("x = 1\n")
    os.symlink(scripts_dir, base / "root_alias")  # a link to the root itself
    os.symlink(base, base / "sub" / "up")  # a link to a folder above it (a loop)
    for rel in (f"{n}/root_alias", f"{n}/root_alias/{n}/sub/keep.py"):
        r = client.get(f"/script-engine/files/{rel}")
        assert r.status_code == 400 and r.json()["code"] == "PATH_INVALID", (rel, r.text)
    # the tree does not follow links into a loop (it answered 500 RecursionError)
    r = client.get(f"/script-engine/files/{n}")
    assert r.status_code == 200, r.text
    names = [c["name"] for c in r.json()["children"]]
    assert "root_alias" not in names

    # deleting a link to a folder removes the link, never what it points to
    outside = tmp_path / "precious"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "data.py").write_text("keep me\n")
    inside = scripts_dir / n / "inside"
    (inside / "deep").mkdir(parents=True)
    (inside / "deep" / "data.py").write_text("keep me too\n")
    os.symlink(inside, base / "alias")
    r = client.delete(f"/script-engine/files/{n}/alias", params={"recursive": "true"})
    assert r.status_code == 200, r.text
    assert not (base / "alias").exists() and (inside / "deep" / "data.py").exists()
    # a folder holding a link to a folder outside: rmtree removes the link, not the target
    os.symlink(outside, base / "sub" / "out")
    r = client.delete(f"/script-engine/files/{n}/sub", params={"recursive": "true"})
    assert r.status_code == 200, r.text
    assert not (base / "sub").exists()
    assert (outside / "deep" / "data.py").read_text() == "keep me\n"


@pytest.mark.timeout(60)
def test_names_longer_than_the_platform_takes_are_400(client):
    long_name = "a" * 300 + ".py"
    deep = "/".join(["d" * 200] * 25) + "/x.py"
    for rel in (long_name, deep, f"ok/{'é' * 200}.py"):
        for method, kw in (
            ("GET", {}),
            ("PUT", {"json": {"content": "x = 1\n"}}),
            ("POST", {"json": {"type": "file"}}),
            ("DELETE", {}),
        ):
            r = client.request(method, f"/script-engine/files/{rel}", **kw)
            assert r.status_code == 400 and r.json()["code"] == "PATH_INVALID", (method, r.text)
    r = client.post("/script-engine/start", json={"script_path": long_name})
    assert r.status_code == 400 and r.json()["code"] == "PATH_INVALID"
    r = client.post("/script-engine/execute", json={"script_path": deep, "function_name": "f"})
    assert r.status_code == 400 and r.json()["code"] == "PATH_INVALID"
    r = client.patch("/script-engine/files/x.py", json={"new_path": long_name})
    assert r.status_code == 400 and r.json()["code"] == "PATH_INVALID"


@pytest.mark.timeout(60)
def test_a_script_cannot_set_framing_headers(scripts, client):
    n = unique("hop")
    scripts.start(
        f"{n}.py",
        f"""
def boot():
    VWED.api.register_route("/{n}/ctor", "GET", ctor)
    VWED.api.register_route("/{n}/later", "GET", later)
    VWED.api.register_route("/{n}/fine", "GET", lambda: VWED.api.Response("ok", headers={{"X-Line": "3"}}))

def ctor(request):
    name = request["query_params"]["h"]
    return VWED.api.Response("x", headers={{name: "0"}})

def later(request):
    r = VWED.api.Response("x")
    r.headers[request["query_params"]["h"]] = "0"   # past the constructor's check
    return r
""",
    )
    for header in ("Transfer-Encoding", "Connection", "Content-Length", "Upgrade", "te"):
        r = client.get(f"/script-api/{n}/ctor", params={"h": header})
        assert r.status_code == 500 and "set by the gateway" in r.json()["message"], r.text
        r = client.get(f"/script-api/{n}/later", params={"h": header})
        assert r.status_code == 500 and r.json()["code"] == "UNSAFE_RESPONSE", r.text
    r = client.get(f"/script-api/{n}/fine")
    assert r.status_code == 200 and r.text == "ok" and r.headers["x-line"] == "3"
