"""JupyterLab in a real browser against a real gateway (issue 14, the author's loop).

What works today: JupyterLab in gateway mode shows the gateway's VWED kernel in the launcher,
and a notebook on it runs ``VWED`` code. The UI steps of the scenario that need the
``vwed_lab`` extension (test_lab_browser_scenario.py) skip until it is installed.
"""

from __future__ import annotations

from typing import Any

import browser
import pytest
from browser import Lab, needs_browser, screenshot
from browser_ui import new_notebook_from_launcher, run_cell

pytestmark = [needs_browser, pytest.mark.timeout(300)]
chromium, lab, lab_page = browser.chromium, browser.lab, browser.lab_page  # the fixtures


def test_launcher_shows_the_vwed_kernel_and_a_notebook_runs_vwed_code(
    lab: Lab, lab_page: Any
) -> None:
    page = lab_page
    card = page.locator('.jp-LauncherCard[data-category="Notebook"]', has_text="Python 3 (VWED)")
    card.wait_for()
    screenshot(page, "lab-launcher")
    new_notebook_from_launcher(page)
    out = run_cell(
        page, 'print("VWED", sorted(k for k in ("api", "function", "log") if hasattr(VWED, k)))'
    )
    assert out.strip() == "VWED ['api', 'function', 'log']"
    screenshot(page, "lab-notebook-vwed")
    # the notebook's kernel is a kernel of the gateway (Jupyter Server only proxies it)
    kernels = lab.gw.get("/api/kernels").json()
    assert any(k["name"] == "vwed" for k in kernels), kernels
