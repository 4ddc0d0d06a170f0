"""The example notebooks run top to bottom (nbclient, the VWED kernel, a real gateway)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from kernel_gateway.kernelspec import make_kernelspec_manager, write_gateway_kernelspec

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_example_notebooks():
    assert len(NOTEBOOKS) >= 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, gw, tmp_path, monkeypatch):
    monkeypatch.setenv("VWED_GATEWAY_URL", gw.url)
    write_gateway_kernelspec(tmp_path)
    nb = nbformat.read(path, as_version=4)
    km = KernelManager(kernel_name="vwed", kernel_spec_manager=make_kernelspec_manager(tmp_path))
    NotebookClient(nb, km=km, timeout=120, allow_errors=False).execute()
    assert all(c.get("outputs") is not None for c in nb.cells if c.cell_type == "code")


def test_the_authoring_notebook_starts_as_a_script(gw, client, scripts, scripts_dir):
    """Its skip-tagged test cells stay out when the gateway runs it."""
    text = (NOTEBOOKS[0]).read_text()
    (scripts_dir / "authoring.ipynb").write_text(text)
    started = scripts.start("authoring.ipynb")
    assert client.get("/script-api/dock/status").json() == {"free": ["A-01", "A-02"]}
    assert started["registrations"]["events"][0]["event"] == "pallet_arrived"
