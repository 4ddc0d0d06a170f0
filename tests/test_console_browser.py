"""The operator's web console (issue 15): its serving, and the page in a real browser
(Debian's Chromium through Playwright) against a real gateway subprocess with tokens.

The scenario: a caller token is refused; sign in; see `warehouse/controller.py` in the tree;
open it; a syntax error shows inline and in the findings; undo; Start; the status turns
running and the script's `controller ready` line arrives live in Logs; a call of its route
by an HTTP client shows in Calls with its log lines one click away; Steps; Charts; Stop.
With VWED_DOCS_SCREENSHOTS=1 the screenshots of each pane go to docs/img/console-*.png.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import browser
import httpx
import pytest
from browser import VIEWPORT, missing, needs_browser, screenshot

from conftest import GatewayProcess, wait_until
from kernel_gateway.handlers.console import CONSOLE_DIR

ROOT = Path(__file__).resolve().parent.parent
chromium = browser.chromium  # the fixture
pytestmark = pytest.mark.timeout(300)


# -- serving (no browser) -----------------------------------------------------------------
def test_the_page_and_its_files_are_served_without_a_token(client: httpx.Client) -> None:
    page = client.get("/", headers={"Authorization": ""})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/console/js/main.js">' in page.text
    assert "<script>" not in page.text  # no inline script: the CSP forbids them
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src" not in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Cache-Control"] == "no-cache"
    etag = page.headers["ETag"]
    again = client.get("/", headers={"If-None-Match": etag})
    assert again.status_code == 304  # revalidated, not downloaded again

    js = client.get("/console/js/api.js")
    assert js.status_code == 200
    assert "javascript" in js.headers["content-type"]
    assert "Authorization" in js.text
    for name in ("vendor/codemirror.js", "vendor/uPlot.esm.js", "style.css"):
        assert client.get(f"/console/{name}").status_code == 200, name


@pytest.mark.parametrize(
    "path",
    [
        "/console/missing.js",
        "/console/js/",
        "/console/%2e%2e/routes.py",
        "/console/..%2Froutes.py",
        "/console/js/%2e%2e/%2e%2e/app.py",
    ],
)
def test_a_missing_file_or_a_path_out_of_the_folder_is_a_json_404(
    client: httpx.Client, path: str
) -> None:
    r = client.get(path)
    assert r.status_code == 404, (path, r.text)
    assert r.json()["code"] == "FILE_NOT_FOUND"
    assert "Traceback" not in r.text


def test_a_symlink_out_of_the_folder_is_not_followed(client: httpx.Client) -> None:
    target = ROOT / "kernel_gateway" / "routes.py"
    link = CONSOLE_DIR / f"link-{uuid.uuid4().hex[:8]}.txt"
    link.symlink_to(target)
    try:
        r = client.get(f"/console/{link.name}")
        assert r.status_code == 404, r.text
        assert r.json()["code"] == "FILE_NOT_FOUND"
        assert "ROUTES" not in r.text
    finally:
        link.unlink()


# -- the page in a browser ----------------------------------------------------------------
class Console:
    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "scripts"
        shutil.copytree(ROOT / "examples", self.root)
        self.token = uuid.uuid4().hex
        self.caller = uuid.uuid4().hex
        self.gateway = GatewayProcess(
            self.root,
            tmp / "data",
            "--auth",
            "--token",
            self.token,
            "--caller-token",
            self.caller,
            "--stats-interval",
            "1",
        )
        self.gateway.client.headers["Authorization"] = f"token {self.token}"

    @property
    def url(self) -> str:
        return self.gateway.url


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    reason = missing()
    if reason:
        pytest.skip(reason)
    c = Console(tmp_path_factory.mktemp("console"))
    try:
        yield c
    finally:
        c.gateway.finish()


@pytest.fixture
def page(console: Console, chromium: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = chromium.new_context(viewport=VIEWPORT)
    context.set_default_timeout(30_000)
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield p
        assert not errors, errors  # no uncaught exception in the page's own code
    finally:
        try:
            browser.LAST.mkdir(exist_ok=True)
            last = browser.LAST / f"{request.node.name}.png"
            p.screenshot(path=str(last))
            print(f"--- the page at the end: {last}")
        finally:
            context.close()


def sign_in(page: Any, url: str, token: str) -> None:
    page.goto(f"{url}/")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def editor_text(page: Any) -> str:
    return str(
        page.evaluate(
            "() => document.querySelector('.cm-content').cmView.view.state.doc.toString()"
        )
    )


@needs_browser
def test_a_caller_token_is_refused_with_a_clear_message(console: Console, page: Any) -> None:
    sign_in(page, console.url, console.caller)
    alert = page.locator("#signin-error")
    wait_until(lambda: "caller token" in (alert.text_content() or ""), 20, "the refusal")
    assert page.get_by_role("button", name="Sign out").is_hidden()
    sign_in(page, console.url, "not-a-token")
    wait_until(lambda: "not valid" in (alert.text_content() or ""), 20, "the refusal")


@needs_browser
def test_the_operator_scenario(console: Console, page: Any) -> None:
    gw = console.gateway.client
    sign_in(page, console.url, console.token)
    page.get_by_role("button", name="Sign out").wait_for()

    # the tree, then the file in the editor
    item = page.get_by_role("treeitem", name="warehouse/controller.py")
    item.wait_for()
    item.get_by_role("button").click()
    page.get_by_role("tab", name="Editor", selected=True).wait_for()
    wait_until(lambda: "def boot():" in editor_text(page), 20, "the file in the editor")
    original = editor_text(page)

    # a syntax error: inline (a lint mark) and in the findings list
    page.locator(".cm-content").click()
    page.keyboard.press("Control+End")
    page.keyboard.type("\ndef broken(:\n")
    page.locator(".cm-lintRange-error").first.wait_for()
    findings = page.get_by_role("list", name="Findings")
    wait_until(lambda: "SYNTAX_ERROR" in (findings.text_content() or ""), 20, "the finding")
    screenshot(page, "console-editor")
    # undo until the file is as it was (typing pauses may make several undo steps)
    for _ in range(20):
        if editor_text(page) == original:
            break
        page.keyboard.press("Control+z")
    assert editor_text(page) == original
    wait_until(lambda: page.locator(".cm-lintRange-error").count() == 0, 20, "no error mark")

    # Start: the status turns running; the script's log line arrives live
    page.get_by_role("tab", name="Logs").click()
    page.get_by_role("button", name="Start", exact=True).click()
    status = page.get_by_label("status running")
    status.wait_for()
    log_view = page.get_by_role("log", name="Log records")
    wait_until(lambda: "controller ready" in (log_view.text_content() or ""), 30, "the log line")
    screenshot(page, "console-logs")
    assert "warehouse/controller.py" in console.gateway.running()

    page.get_by_role("tab", name="Scripts").click()
    row = page.get_by_role("table", name="Running scripts").locator(
        'tr[data-path="warehouse/controller.py"]'
    )
    row.wait_for()
    wait_until(lambda: "running" in (row.text_content() or ""), 20, "the running row")
    screenshot(page, "console-scripts")

    # a call by an HTTP client shows in Calls; its log lines are one click away
    r = httpx.get(
        f"{console.url}/script-api/warehouse/status",
        headers={"Authorization": f"token {console.caller}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    fn = gw.post(
        "/script-engine/functions/allocate_storage/call", json={"args": {"goods_type": "box"}}
    )
    assert fn.status_code == 200, fn.text
    page.get_by_role("tab", name="Calls").click()
    calls = page.get_by_role("table", name="Calls")
    wait_until(lambda: "warehouse/status" in (calls.text_content() or ""), 30, "the call in Calls")
    wait_until(lambda: "allocate_storage" in (calls.text_content() or ""), 30, "the function call")
    calls.locator("tr", has_text="allocate_storage").get_by_role("button").first.click()
    call_logs = page.locator("#call-logs-view")
    wait_until(lambda: "allocated" in (call_logs.text_content() or ""), 20, "the call's log lines")
    screenshot(page, "console-calls")

    # Steps: an execution and its task's variables
    step = gw.post(
        "/script-engine/execute",
        json={
            "script_path": "warehouse/steps.py",
            "function_name": "pick_location",
            "args": {"goods_type": "box"},
            "mode": "SET_TASK_VARIABLES",
            "task_id": "T-1001",
        },
    )
    assert step.status_code == 200, step.text
    page.get_by_role("tab", name="Steps").click()
    page.get_by_role("button", name="Variables of task T-1001").first.click()
    variables = page.locator("#vars-view")
    wait_until(lambda: '"zone": "A"' in (variables.text_content() or ""), 20, "the variables")
    screenshot(page, "console-steps")

    # Charts: the gateway's sampled series (sampled every second here)
    for _ in range(3):
        httpx.get(
            f"{console.url}/script-api/warehouse/status",
            headers={"Authorization": f"token {console.caller}"},
            timeout=30,
        )
    page.get_by_role("tab", name="Charts").click()
    page.locator(".chart").first.wait_for()
    wait_until(lambda: page.locator(".chart").count() >= 3, 30, "the charts")
    screenshot(page, "console-charts")

    # Stop
    page.get_by_role("button", name="Stop", exact=True).click()
    page.get_by_label("status stopped").wait_for()
    wait_until(lambda: "warehouse/controller.py" not in console.gateway.running(), 30, "stopped")
