"""A notebook as a ``.py`` script and back (the files API's ``export``, ``VWED.deploy``).

``.ipynb`` -> ``.py``: code cells in order, separated by ``# %%`` markers, markdown
cells as comments, ``skip``-tagged cells left out. ``.py`` -> ``.ipynb``: one code cell
per ``# %%`` section (the whole file if it has none), with the ``vwed`` kernelspec.
"""

from __future__ import annotations

import nbformat

__all__ = ["notebook_to_script", "script_to_notebook", "SKIP_TAG", "VWED_KERNELSPEC"]

SKIP_TAG = "skip"  # notebook cells with this tag are not run by the gateway (test cells)
VWED_KERNELSPEC = {"name": "vwed", "display_name": "Python 3 (VWED)", "language": "python"}


def notebook_to_script(text: str) -> str:
    nb = nbformat.reads(text, as_version=4)
    parts = []
    for cell in nb.cells:
        if SKIP_TAG in (cell.get("metadata", {}).get("tags") or []):
            continue
        if cell.cell_type == "code" and cell.source.strip():
            parts.append("# %%\n" + cell.source.rstrip() + "\n")
        elif cell.cell_type == "markdown" and cell.source.strip():
            parts.append(
                "# %% [markdown]\n"
                + "\n".join("# " + line if line else "#" for line in cell.source.splitlines())
                + "\n"
            )
    return "\n".join(parts)


def script_to_notebook(text: str) -> str:
    chunks = list(text.split("# %%")) if "# %%" in text else [text]
    nb = nbformat.v4.new_notebook()
    for chunk in chunks:
        if chunk.startswith(" [markdown]"):
            lines = chunk[len(" [markdown]") :].strip("\n").splitlines()
            nb.cells.append(
                nbformat.v4.new_markdown_cell(
                    "\n".join(
                        line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines
                    )
                )
            )
        elif chunk.strip():
            nb.cells.append(nbformat.v4.new_code_cell(chunk.strip("\n")))
    nb.metadata["kernelspec"] = dict(VWED_KERNELSPEC)
    return nbformat.writes(nb)
