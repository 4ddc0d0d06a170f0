"""Tracebacks name the script's file and its own line numbers, although the code's
file name is the one the Jupyter debugger gives its text (vwed_kernel/debugsource.py)."""

from __future__ import annotations

from conftest import unique


def test_a_load_failure_names_the_file_and_its_lines(scripts, client, gw):
    n = unique("tbload")
    # leading empty lines: the compiled lines are the file's (IPython used to drop them)
    scripts.write(f"{n}.py", "\n\ndef f():\n    return 1 / 0\n\n\nf()\n")
    r = client.post("/script-engine/start", json={"script_path": f"{n}.py"})
    assert r.status_code == 422 and r.json()["code"] == "BOOT_FAILED"
    tb = r.json()["traceback"]
    real = str(scripts.root / f"{n}.py")
    assert f"File {real}, line 7" in tb and f"File {real}, line 4, in f()" in tb, tb
    assert "ipykernel_" not in tb and "Cell In" not in tb
