"""The code check (POST /script-engine/check) and the syntax check before every start,
restart and reload: a real gateway, real kernels, a real HTTP client."""

from __future__ import annotations

import json

import httpx
import nbformat
import pytest

from conftest import GatewayThread, unique
from kernel_gateway.config import Settings

pytestmark = pytest.mark.timeout(120)


def check(client, **body):
    r = client.post("/script-engine/check", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["success"] is True and isinstance(out["duration_ms"], float)
    return out


def codes(out):
    return [f["code"] for f in out["findings"]]


def test_syntax_error_has_line_and_column(client):
    out = check(client, content="def boot():\n    x = (1,\n    return x\n")
    assert out["ok"] is False
    [f] = out["findings"]
    assert f["code"] == "SYNTAX_ERROR" and f["severity"] == "error"
    assert (f["line"], f["column"]) == (2, 9)
    assert "never closed" in f["message"]

    out = check(client, content="\n\ndef boot(:\n    pass\n")  # leading blank lines kept
    [f] = out["findings"]
    assert (f["code"], f["line"]) == ("SYNTAX_ERROR", 3)


def test_undefined_name_unused_import_and_known_names(client):
    code = (
        "import os\n"
        "import json\n"
        "def boot():\n"
        "    VWED.log.info(json.dumps(1))\n"
        "    print(missing_name)\n"
    )
    out = check(client, content=code)
    assert out["ok"] is False
    undefined = [f for f in out["findings"] if f["code"] == "UNDEFINED_NAME"]
    assert undefined == [
        {
            "line": 5,
            "column": 11,
            "severity": "error",
            "code": "UNDEFINED_NAME",
            "message": "undefined name 'missing_name'",
        }
    ]
    unused = [f for f in out["findings"] if f["code"] == "UNUSED_IMPORT"]
    assert [(f["line"], f["severity"]) for f in unused] == [(1, "warning")]
    assert "'os'" in unused[0]["message"]
    assert "NO_BOOT" not in codes(out)  # and VWED is known


def test_missing_boot_is_a_warning(client):
    out = check(client, content="def start():\n    pass\n")
    assert out["ok"] is True
    assert out["findings"] == [
        {
            "line": 1,
            "column": 1,
            "severity": "warning",
            "code": "NO_BOOT",
            "message": out["findings"][0]["message"],
        }
    ]
    assert check(client, content="async def boot():\n    pass\n")["findings"] == []


def test_ipython_magics_are_not_errors(client):
    code = (
        "%load_ext autoreload\nfiles = !ls\n!echo hi\n%time x = 1\ndef boot():\n    print(files)\n"
    )
    out = check(client, content=code)
    assert out["ok"] is True and out["findings"] == []
    # IPython's top-level await (autoawait) is legal, and uses what it names
    out = check(client, content="import asyncio\nawait asyncio.sleep(0)\ndef boot():\n    pass\n")
    assert out["findings"] == []
    # a line after a magic keeps its number
    out = check(client, content="%time y = 1\ndef boot():\n    return nope\n")
    assert [(f["code"], f["line"]) for f in out["findings"]] == [("UNDEFINED_NAME", 3)]


def test_other_pyflakes_messages_are_warnings(client):
    out = check(client, content="def boot():\n    x = 1\n    return f'plain'\n")
    assert out["ok"] is True
    assert {f["code"] for f in out["findings"]} == {
        "PYFLAKES_UNUSEDVARIABLE",
        "PYFLAKES_FSTRINGMISSINGPLACEHOLDERS",
    }
    assert all(f["severity"] == "warning" for f in out["findings"])


def test_route_and_function_owned_by_another_running_script(client, scripts):
    tag = unique("chk")
    owner = scripts.write(
        f"{tag}/owner.py",
        f"""
        def h(request=None):
            return 1

        def boot():
            VWED.api.register_route("/{tag}/items/{{item_id}}", "GET", h)
            VWED.function.register("{tag}_fn", h)
        """,
    )
    scripts.start(owner)
    other = (
        "def h(request=None):\n"
        "    return 2\n"
        "\n"
        "def boot():\n"
        f'    VWED.api.register_route(path="/script-api/{tag}/items/{{rid}}", handler=h)\n'
        f'    VWED.function.register("{tag}_fn", h)\n'
        f'    VWED.api.register_route("/{tag}/items/{{rid}}", "POST", h)\n'  # another method
        f'    VWED.function.register("{tag}_" + "fn", h)\n'  # not a literal: skipped
        "\n"
        f'@VWED.api.route("/{tag}/items/{{x}}", methods=["PUT", "GET"])\n'
        "def deco(request):\n"
        "    return 3\n"
    )
    out = check(client, content=other, script_path=f"{tag}/other.py")
    assert out["ok"] is False
    taken = [f for f in out["findings"] if f["severity"] == "error"]
    assert [(f["code"], f["line"]) for f in taken] == [
        ("ROUTE_TAKEN", 5),
        ("FUNCTION_TAKEN", 6),
        ("ROUTE_TAKEN", 10),
    ]
    for f in taken:
        assert owner in f["message"]
    assert taken[0]["column"] == 5 and taken[0]["end_line"] == 5
    assert f"GET /script-api/{tag}/items/{{rid}}" in taken[0]["message"]
    assert f"'{tag}_fn'" in taken[1]["message"]

    # the owner's own registrations are not a conflict when the check names it
    mine = check(client, content=other, script_path=owner)
    assert not any(f["code"].endswith("_TAKEN") for f in mine["findings"])
    alone = check(client, script_path=owner)
    assert alone["ok"] is True and alone["findings"] == []


def test_notebook_cells_have_their_index(client, scripts):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# a title"),
        nbformat.v4.new_code_cell("import json\nVALUE = 1"),
        nbformat.v4.new_code_cell("%time z = 2\ndef boot():\n    print(VALUE, nothing)"),
        nbformat.v4.new_code_cell("def broken(:\n    pass"),
    ]
    text = nbformat.writes(nb)
    out = check(client, content=text, notebook=True)
    got = [(f["code"], f.get("cell"), f["line"]) for f in out["findings"]]
    assert got == [("UNUSED_IMPORT", 1, 1), ("UNDEFINED_NAME", 2, 3), ("SYNTAX_ERROR", 3, 1)]
    # the same from a file: .ipynb is a notebook
    rel = scripts.write(f"{unique('nb')}.ipynb", text)
    assert check(client, script_path=rel)["findings"] == out["findings"]


def test_bad_bodies(client, scripts_dir):
    def post(body, status, code):
        r = client.post("/script-engine/check", json=body)
        assert (r.status_code, r.json()["code"]) == (status, code), r.text
        assert r.json()["success"] is False

    post({}, 400, "MISSING_FIELD")
    post({"content": 3}, 400, "BAD_REQUEST")
    post({"script_path": ["a.py"]}, 400, "BAD_REQUEST")
    post({"content": "x = 1", "notebook": "yes"}, 400, "BAD_REQUEST")
    post({"content": "x = 1", "extra": 1}, 400, "BAD_REQUEST")
    post({"content": "{not json", "notebook": True}, 400, "NOTEBOOK_INVALID")
    post({"script_path": "../outside.py"}, 400, "PATH_INVALID")
    post({"script_path": "/etc/passwd"}, 400, "PATH_INVALID")
    post({"script_path": f"{unique('gone')}.py"}, 404, "SCRIPT_NOT_FOUND")
    post({"content": "#" * (64 * 1024 + 1)}, 413, "FILE_TOO_LARGE")
    r = client.post(
        "/script-engine/check", content=b"[1]", headers={"Content-Type": "application/json"}
    )
    assert (r.status_code, r.json()["code"]) == (400, "INVALID_JSON")


def test_caller_token_is_refused(tmp_path):
    settings = Settings(
        scripts_dir=str(tmp_path),
        port=0,
        data_dir=str(tmp_path / "d"),
        pool_size=0,
        workers=1,
        token="admin-secret",
        caller_token="caller-secret",
    ).validated()
    gw = GatewayThread(settings).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            body = {"content": "def boot():\n    pass\n"}
            r = c.post(
                "/script-engine/check", json=body, headers={"Authorization": "token caller-secret"}
            )
            assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN"
            assert c.post("/script-engine/check", json=body).status_code == 401
            r = c.post(
                "/script-engine/check", json=body, headers={"Authorization": "token admin-secret"}
            )
            assert r.status_code == 200 and r.json()["ok"] is True
    finally:
        gw.stop()


def test_start_refused_on_syntax_error_before_a_kernel_is_used(gw, client, scripts):
    rel = scripts.write(f"{unique('bad')}.py", "def boot():\n    pass\n\nx = [1, 2\n")
    gw.wait_pool(2)
    pooled = [k.kernel_id for k in gw.gateway.pool._ready]
    r = client.post("/script-engine/start", json={"script_path": rel})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "SYNTAX_ERROR" and body["success"] is False
    assert "line 4" in body["error"]
    [f] = body["findings"]
    assert (f["code"], f["line"], f["severity"]) == ("SYNTAX_ERROR", 4, "error")
    # no kernel was taken from the pool, nothing runs from that path
    assert [k.kernel_id for k in gw.gateway.pool._ready][: len(pooled)] == pooled
    running = client.get("/script-engine/running").json()["scripts"]
    assert rel not in [s["script_path"] for s in running]

    # in a notebook, the finding names the cell
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("def boot():\n    pass"),
        nbformat.v4.new_markdown_cell("text"),
        nbformat.v4.new_code_cell("y = (\n"),
    ]
    nb_rel = scripts.write(f"{unique('bad')}.ipynb", nbformat.writes(nb))
    r = client.post("/script-engine/start", json={"script_path": nb_rel})
    assert r.status_code == 422 and r.json()["findings"][0]["cell"] == 2


def test_other_findings_do_not_block_a_start(client, scripts):
    body = scripts.start(f"{unique('warn')}.py", "import os\ndef boot():\n    pass\n")
    assert body["script_id"]


def test_restart_and_reload_refused_keep_the_running_version(client, scripts, scripts_dir):
    rel = f"{unique('live')}.py"
    tag = rel[:-3]
    good = f"def boot():\n    VWED.api.register_route('/{tag}', 'GET', lambda: 'v1')\n"
    started = scripts.start(rel, good)
    (scripts_dir / rel).write_text(good + "def oops(:\n")
    for action in ("reload", "restart"):
        r = client.post(f"/script-engine/{action}", json={"script_id": started["script_id"]})
        assert (r.status_code, r.json()["code"]) == (422, "SYNTAX_ERROR"), r.text
        assert r.json()["findings"][0]["line"] == 3
        # still the same script, still serving
        assert client.get(f"/script-api/{tag}").json() == "v1"
        summary = client.get(f"/script-engine/scripts/{started['script_id']}").json()
        assert summary["status"] == "running"
    assert json.loads(client.get(f"/script-api/{tag}").text) == "v1"


def test_a_source_that_compiled_is_checked_again_once_changed():
    """A start's compile check is remembered per source text (the start of an unchanged
    file checks nothing again): a changed text is checked, a broken one refused."""
    import asyncio

    from kernel_gateway.check import compiles
    from kernel_gateway.errors import ScriptError
    from kernel_gateway.scripts import ScriptSource

    good = ScriptSource("c.py", "/x/c.py", ["def boot():\n    pass\n"], 0.0, 1)
    asyncio.run(compiles(good))
    asyncio.run(compiles(good))  # remembered
    bad = ScriptSource("c.py", "/x/c.py", ["def boot(:\n    pass\n"], 0.0, 1)
    for _ in range(2):  # a failure is never remembered
        with pytest.raises(ScriptError) as caught:
            asyncio.run(compiles(bad))
        assert caught.value.code == "SYNTAX_ERROR"
