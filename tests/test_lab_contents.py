"""JupyterLab's file browser over the gateway's files API (vwed_lab.contents), for a
gateway on another machine: a real Jupyter Server in gateway mode whose root_dir is an
empty folder, so everything it shows comes from the gateway."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from conftest import GatewayThread
from kernel_gateway.config import Settings
from labserver import JupyterServer

ADMIN = "files-admin-" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def files_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    root = tmp_path_factory.mktemp("files-scripts")
    (root / "warehouse").mkdir()
    (root / "warehouse" / "controller.py").write_text("def boot():\n    pass\n")
    settings = Settings(
        scripts_dir=str(root),
        port=0,
        data_dir=str(tmp_path_factory.mktemp("files-data")),
        pool_size=0,
        auth=True,
        token=ADMIN,
        caller_token="files-caller-" + uuid.uuid4().hex[:8],
    )
    thread = GatewayThread(settings.validated()).start()
    yield thread
    thread.stop()


@pytest.fixture
def lab(files_gw: GatewayThread, tmp_path: Path) -> Iterator[JupyterServer]:
    empty = tmp_path / "not-the-scripts"
    empty.mkdir()
    server = JupyterServer(
        files_gw.url,
        ADMIN,
        tmp_path,
        empty,
        "--ServerApp.contents_manager_class=vwed_lab.contents.GatewayContentsManager",
    )
    yield server
    server.stop()


def test_the_file_browser_shows_and_edits_the_scripts_root(files_gw, lab):
    root = Path(files_gw.settings.scripts_dir)
    top = lab.http.get("/api/contents").json()
    assert top["type"] == "directory"
    assert {c["name"]: c["type"] for c in top["content"]} == {"warehouse": "directory"}
    f = lab.http.get("/api/contents/warehouse/controller.py").json()
    assert f["type"] == "file" and f["format"] == "text" and "def boot()" in f["content"]

    # save from the editor: written to the scripts root
    code = "def boot():\n    VWED.log.info('edited in JupyterLab')\n"
    r = lab.http.put(
        "/api/contents/warehouse/controller.py",
        json={"type": "file", "format": "text", "content": code},
    )
    assert r.status_code in (200, 201), r.text
    assert (root / "warehouse" / "controller.py").read_text() == code
    # ... and committed to the scripts repository, as JupyterLab's (issue 17)
    log = subprocess.run(
        ["git", "-C", str(root), "log", "-1", "--format=%an|%s", "--", "warehouse/controller.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert log.strip() == "JupyterLab (admin)|update warehouse/controller.py"

    # a notebook: saved, read back as a notebook
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    lab.http.put("/api/contents/robot", json={"type": "directory"})
    r = lab.http.put("/api/contents/robot/n.ipynb", json={"type": "notebook", "content": nb})
    assert r.status_code in (200, 201), r.text
    back = lab.http.get("/api/contents/robot/n.ipynb").json()
    assert back["type"] == "notebook" and back["content"]["cells"][0]["source"] == "x = 1"
    assert lab.http.post("/api/contents/robot/n.ipynb/checkpoints").status_code == 201

    # rename, delete
    r = lab.http.patch("/api/contents/robot/n.ipynb", json={"path": "robot/m.ipynb"})
    assert r.status_code == 200, r.text
    assert (root / "robot" / "m.ipynb").is_file() and not (root / "robot" / "n.ipynb").exists()
    assert lab.http.delete("/api/contents/robot/m.ipynb").status_code == 204
    assert not (root / "robot" / "m.ipynb").exists()

    # what the gateway refuses is refused with its reason, not a traceback
    r = lab.http.put(
        "/api/contents/notes.txt", json={"type": "file", "format": "text", "content": "x"}
    )
    assert r.status_code == 400 and "FILE_TYPE_NOT_ALLOWED" in r.text
    assert lab.http.get("/api/contents/nothing-here.py").status_code == 404
