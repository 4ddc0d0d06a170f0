"""The script file store over HTTP, and path confinement."""

from __future__ import annotations

import os

import httpx
import nbformat
import pytest

from conftest import unique


def test_write_read_tree_rename_delete(client, scripts_dir):
    d = unique("dir")
    r = client.post(f"/script-engine/files/{d}", json={"type": "directory"})
    assert r.status_code == 201
    r = client.put(f"/script-engine/files/{d}/job.py", json={"content": "def boot():\n    pass\n"})
    assert r.status_code == 200 and r.json()["created"] is True
    r = client.put(
        f"/script-engine/files/{d}/job.py", json={"content": "def boot():\n    return\n"}
    )
    assert r.json()["created"] is False
    r = client.get(f"/script-engine/files/{d}/job.py")
    assert r.json()["content"] == "def boot():\n    return\n"
    tree = client.get("/script-engine/files").json()["tree"]
    folder = next(c for c in tree["children"] if c["name"] == d)
    assert [c["path"] for c in folder["children"]] == [f"{d}/job.py"]

    r = client.patch(f"/script-engine/files/{d}/job.py", json={"new_path": f"{d}/sub/renamed.py"})
    assert r.status_code == 200 and r.json()["path"] == f"{d}/sub/renamed.py"
    assert client.get(f"/script-engine/files/{d}/job.py").json()["code"] == "FILE_NOT_FOUND"
    r = client.delete(f"/script-engine/files/{d}")
    assert r.status_code == 409 and r.json()["code"] == "DIRECTORY_NOT_EMPTY"
    r = client.delete(f"/script-engine/files/{d}/sub/renamed.py")
    assert r.status_code == 200
    r = client.delete(f"/script-engine/files/{d}", params={"recursive": "true"})
    assert r.status_code == 200 and not (scripts_dir / d).exists()


def test_create_from_template_boots(client, scripts):
    name = unique("tpl")
    r = client.post(f"/script-engine/files/{name}.py", json={})
    assert r.status_code == 201
    text = client.get(f"/script-engine/files/{name}.py").json()["content"]
    for module in (
        "VWED.api",
        "VWED.function",
        "VWED.event",
        "VWED.timer",
        "VWED.log",
        "VWED.http",
        "VWED.device",
        "VWED.task",
        "VWED.robot",
        "VWED.storage",
        "VWED.mail",
    ):
        assert module in text
    r = client.post(f"/script-engine/files/{name}.py", json={})
    assert r.status_code == 409 and r.json()["code"] == "EXISTS"
    started = scripts.start(f"{name}.py")
    assert started["registrations"]["apis"][0]["path"] == f"/{name}/hello"
    assert client.get(f"/script-api/{name}/hello", params={"name": "AMR"}).json() == {
        "message": "hello, AMR"
    }
    nb = unique("tplnb")
    assert client.post(f"/script-engine/files/{nb}.ipynb", json={}).status_code == 201
    content = client.get(f"/script-engine/files/{nb}.ipynb").json()["content"]
    assert nbformat.reads(content, as_version=4).metadata["kernelspec"]["name"] == "vwed"


def test_type_and_size_limits(client):
    r = client.put("/script-engine/files/notes.txt", json={"content": "x"})
    assert r.status_code == 400 and r.json()["code"] == "FILE_TYPE_NOT_ALLOWED"
    r = client.put(f"/script-engine/files/{unique('big')}.py", json={"content": "#" * (65 * 1024)})
    assert r.status_code == 413 and r.json()["code"] == "FILE_TOO_LARGE"
    r = client.put(
        f"/script-engine/files/{unique('nb')}.ipynb", json={"content": "{not a notebook"}
    )
    assert r.status_code == 400 and r.json()["code"] == "NOTEBOOK_INVALID"
    r = client.put("/script-engine/files/x.py", json={"text": "no content field"})
    assert r.status_code == 400


@pytest.mark.parametrize(
    "raw_path",
    [
        "/script-engine/files/%2e%2e/escape.py",  # encoded ..
        "/script-engine/files/a/%2E%2E/%2E%2E/escape.py",
        "/script-engine/files/%252e%252e/escape.py",  # double-encoded
        "/script-engine/files/a%00b.py",  # NUL byte
        "/script-engine/files/..%2fescape.py",
        "/script-engine/files/%2fetc/passwd.py",  # absolute after decoding
        "/script-engine/files/a%5c..%5cescape.py",  # backslashes
    ],
)
def test_traversal_is_refused(gw, raw_path):
    # httpx would normalise dot segments; send the raw target as a client may.
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        for method in ("GET", "PUT", "DELETE"):
            req = c.build_request(
                method, gw.url, json={"content": "x"} if method == "PUT" else None
            )
            req.url = req.url.copy_with(raw_path=raw_path.encode())
            r = c.send(req)
            assert r.status_code == 400, (method, raw_path, r.text)
            assert r.json()["code"] == "PATH_INVALID"


def test_symlink_out_of_the_root_is_refused(client, scripts_dir, tmp_path):
    outside = tmp_path / "secret.py"
    outside.write_text("TOKEN = 'x'\ndef boot(): pass\n")
    link = scripts_dir / f"{unique('link')}.py"
    os.symlink(outside, link)
    r = client.get(f"/script-engine/files/{link.name}")
    assert r.status_code == 400 and r.json()["code"] == "PATH_INVALID"
    r = client.post("/script-engine/start", json={"script_path": link.name})
    assert r.status_code == 400 and r.json()["code"] == "PATH_INVALID"
    names = [c["name"] for c in client.get("/script-engine/files").json()["tree"]["children"]]
    assert link.name not in names
    dir_link = scripts_dir / unique("dirlink")
    os.symlink(tmp_path, dir_link)
    r = client.put(f"/script-engine/files/{dir_link.name}/x.py", json={"content": "x = 1"})
    assert r.status_code == 400 and r.json()["code"] == "PATH_INVALID"
    assert not (tmp_path / "x.py").exists()


def test_unknown_endpoint_is_json_404(client):
    r = client.get("/no/such/endpoint")
    assert r.status_code == 404 and r.json() == {
        "success": False,
        "error": "no endpoint /no/such/endpoint",
        "code": "ENDPOINT_NOT_FOUND",
    }


def test_skip_tagged_cells_are_not_run_and_export_both_ways(client, scripts, scripts_dir):
    name = unique("nbskip")
    nb = nbformat.v4.new_notebook()
    test_cell = nbformat.v4.new_code_cell(
        "raise RuntimeError('a test cell must not run in the gateway')"
    )
    test_cell.metadata["tags"] = ["skip"]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Dock scheduler\nassigns docks"),
        nbformat.v4.new_code_cell(
            f"def boot():\n    VWED.api.register_route('/{name}/ok', 'GET', lambda: 'ok')"
        ),
        test_cell,
    ]
    (scripts_dir / f"{name}.ipynb").write_text(nbformat.writes(nb))
    scripts.start(f"{name}.ipynb")
    assert client.get(f"/script-api/{name}/ok").json() == "ok"

    r = client.post(f"/script-engine/files/{name}.ipynb/export", json={})
    assert r.status_code == 201 and r.json()["path"] == f"{name}.py"
    text = client.get(f"/script-engine/files/{name}.py").json()["content"]
    assert "def boot():" in text and "# Dock scheduler" in text and "must not run" not in text
    assert (
        client.post(f"/script-engine/files/{name}.ipynb/export", json={}).json()["code"] == "EXISTS"
    )
    # and back: the .py becomes a notebook again (markdown and code cells)
    r = client.post(f"/script-engine/files/{name}.py/export", json={"overwrite": True})
    assert r.status_code == 201
    back = nbformat.reads(
        client.get(f"/script-engine/files/{name}.ipynb").json()["content"], as_version=4
    )
    assert [c.cell_type for c in back.cells] == ["markdown", "code"]
    assert back.cells[0].source == "# Dock scheduler\nassigns docks"
    assert back.metadata["kernelspec"]["name"] == "vwed"
