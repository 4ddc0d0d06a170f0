"""JupyterLab UI steps for the browser tests, with robust selectors (JupyterLab's data-*
attributes, roles and text) and waits on conditions, never fixed sleeps."""

from __future__ import annotations

from typing import Any

# the visible document panel (others in the dock are hidden with lm-mod-hidden)
NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"


def new_notebook_from_launcher(page: Any, kernel: str = "Python 3 (VWED)") -> Any:
    """Click the launcher's notebook card of ``kernel``; wait for the notebook's kernel idle."""
    page.locator('.jp-LauncherCard[data-category="Notebook"]', has_text=kernel).click()
    return wait_notebook_idle(page)


# the current widget's kernel: connected over its WebSocket (needs
# --LabApp.expose_app_in_browser, which tests/browser.py sets). Not "idle": when the iopub
# status of JupyterLab's first kernel_info is lost (the gateway subscribes to iopub as the
# client connects) the status stays "unknown" until the next message, harmlessly; messages
# sent meanwhile are answered.
KERNEL_READY = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.connectionStatus === 'connected';
}"""

CURRENT_KERNEL = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return k ? {id: k.id, name: k.name, status: k.status, connection: k.connectionStatus} : null;
}"""


def wait_notebook_idle(page: Any, timeout: float = 60_000) -> Any:
    """Wait for the current notebook's kernel: connected."""
    panel = page.locator(NOTEBOOK)
    panel.wait_for(timeout=timeout)
    page.wait_for_function(KERNEL_READY, timeout=timeout)
    return panel


def current_kernel(page: Any) -> dict[str, str] | None:
    """id, name, status and connection status of the current widget's kernel."""
    return page.evaluate(CURRENT_KERNEL)  # type: ignore[no-any-return]


def run_cell(page: Any, code: str, timeout: float = 60_000) -> str:
    """Type ``code`` in the active cell, run it (Shift+Enter), return its output's text."""
    panel = page.locator(NOTEBOOK)
    cells = panel.locator(".jp-Notebook .jp-Cell")
    index = cells.count() - 1
    active = panel.locator(".jp-Cell.jp-mod-active")
    if active.count():
        index = cells.evaluate_all(
            "cells => cells.findIndex(c => c.classList.contains('jp-mod-active'))"
        )
    cell = cells.nth(index)
    cell.locator(".cm-content").click()
    page.keyboard.insert_text(code)  # no auto-indent or completion
    page.keyboard.press("Shift+Enter")
    output = cell.locator(".jp-OutputArea-output")
    output.first.wait_for(timeout=timeout)
    # wait until the cell finished: its prompt shows an execution count, not "*"
    cell.locator(".jp-InputPrompt").filter(has_text="[").wait_for(timeout=timeout)
    page.wait_for_function(
        "el => !el.textContent.includes('[*]')",
        arg=cell.locator(".jp-InputPrompt").element_handle(),
        timeout=timeout,
    )
    return str(output.all_inner_texts() and "\n".join(output.all_inner_texts()))


# the visible console panel
CONSOLE = ".jp-ConsolePanel:not(.lm-mod-hidden)"


def run_in_console(page: Any, code: str, timeout: float = 60_000) -> str:
    """Type ``code`` in the current console's prompt, run it, return its output's text."""
    panel = page.locator(CONSOLE)
    done = panel.locator(".jp-CodeConsole-content .jp-CodeCell")
    before = done.count()
    panel.locator(".jp-CodeConsole-promptCell .cm-content").click()
    page.keyboard.insert_text(code)
    page.keyboard.press("Shift+Enter")
    cell = done.nth(before)
    cell.wait_for(timeout=timeout)
    cell.locator(".jp-OutputArea-output").first.wait_for(timeout=timeout)
    return "\n".join(cell.locator(".jp-OutputArea-output").all_inner_texts())


def open_running_panel(page: Any) -> Any:
    """Show the left sidebar's Running Terminals and Kernels panel."""
    panel = page.locator("#jp-running-sessions")
    if not panel.is_visible():
        page.locator('.lm-TabBar-tab[data-id="jp-running-sessions"]').click()
    panel.wait_for()
    return panel


def open_debugger_panel(page: Any) -> Any:
    """Show the right sidebar's Debugger panel (variables, call stack, breakpoints, sources)."""
    panel = page.locator("#jp-debugger-sidebar")
    if not panel.is_visible():
        page.locator('.lm-TabBar-tab[data-id="jp-debugger-sidebar"]').click()
    panel.wait_for()
    return panel


def running_kernel_item(page: Any, kernel_id: str) -> Any:
    """The Running panel's entry of a kernel (its label: the session's name and short id)."""
    return page.locator(
        f'#jp-running-sessions .jp-RunningSessions-item.jp-mod-kernel[data-context="{kernel_id}"]'
    )


def running_session_item(page: Any, name: str) -> Any:
    """The Running panel's entry of a session under its kernel (one click opens it)."""
    return page.locator(
        "#jp-running-sessions .jp-RunningSessions-item.jp-mod-kernel-widget "
        f'> .jp-RunningSessions-itemLabel[title="{name}"]'
    )


def menu(page: Any, top: str, item: str) -> None:
    """Click ``top`` in the menu bar, then its entry ``item`` (text, without the shortcut)."""
    page.locator(".lm-MenuBar-item", has_text=top).click()
    page.locator(".lm-Menu .lm-Menu-item", has_text=item).first.click()


def accept_dialog(page: Any, button: str) -> str:
    """Click ``button`` of the open dialog; return the dialog's text."""
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for()
    # this dialog, not whichever is open next: a second dialog may open right after this one
    # closes (JupyterLab's "Shut Down All", then the plugin's), and a locator by class would
    # find that one and wait for it to go away
    handle = dialog.element_handle()
    text = str(handle.inner_text())
    handle.query_selector(f'.jp-Dialog-button:has-text("{button}")').click()
    handle.wait_for_element_state("hidden")
    return text


def widen_left_panel(page: Any, by: int = 160) -> None:
    """Drag the left side panel's edge ``by`` pixels to the right (labels not cut short)."""
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    box = handle.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + by, y, steps=5)
    page.mouse.up()
