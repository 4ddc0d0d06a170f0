"""The operator's web console (issue 15): its serving, and the page in a real browser
(Debian's Chromium through Playwright) against a real gateway subprocess with tokens.

The scenario: a caller token is refused; sign in; see `warehouse/controller.py` in the tree;
open it; a syntax error shows inline and in the findings; undo; Start; the status turns
running and the script's `controller ready` line arrives live in Logs; a call of its route
by an HTTP client shows in Calls with its log lines one click away; Steps; Charts; Stop.
With VWED_DOCS_SCREENSHOTS=1 the screenshots of each pane go to docs/img/console-*.png.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import browser
import httpx
import pytest
from browser import missing, needs_browser, screenshot
from wheels import build_sdist, build_test_wheels

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
    # the gateway's guards hold here too: a foreign Host (DNS rebinding), no writes
    foreign = client.get("/", headers={"Host": "evil.example"})
    assert foreign.status_code == 403 and foreign.json()["code"] == "HOST_NOT_ALLOWED"
    for method in ("POST", "PUT", "DELETE"):
        refused = client.request(method, "/console/js/api.js")
        assert refused.status_code == 405 and refused.json()["success"] is False, method
    assert client.head("/").status_code == 200

    # every file the page names (stylesheets, modules, preloads) is served
    named = re.findall(r'(?:href|src)="(/console/[^"]+)"', page.text)
    assert "/console/vendor/codemirror.js" in named and "/console/js/main.js" in named
    for url in named:
        assert client.get(url).status_code == 200, url


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
        wheels = build_test_wheels(tmp / "wheels")  # the packages a script may declare
        build_sdist(wheels, "vwedslow", "1.0", SLOW_SDIST)  # builds for seconds, then fails
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
            "--jupyter-url",
            "http://127.0.0.1:8888",
            "--deps-find-links",
            str(wheels),
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
    with browser.console_page(chromium, request) as p:
        yield p


def sign_in(page: Any, url: str, token: str) -> None:
    browser.console_sign_in(page, url, token)


def editor_text(page: Any) -> str:
    return str(page.evaluate("() => window.vwedConsole.editorText()"))


@needs_browser
def test_a_caller_token_is_refused_with_a_clear_message(console: Console, page: Any) -> None:
    sign_in(page, console.url, console.caller)
    alert = page.locator("#signin-error")
    wait_until(lambda: "caller token" in (alert.text_content() or ""), 20, "the refusal")
    screenshot(page, "console-signin")
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


BOOM = """\
def boot():
    VWED.api.register_route("/boom", "GET", boom)


def boom(request):
    print("\\x1b[31mred text\\x1b[0m")
    return 1 / 0
"""


def count(locator: Any, text: str) -> int:
    return int((locator.text_content() or "").count(text))


@needs_browser
def test_conflicts_refusals_tracebacks_pause_export_and_files(console: Console, page: Any) -> None:
    (console.root / "demo").mkdir(exist_ok=True)
    (console.root / "demo" / "boom.py").write_text(BOOM)
    (console.root / "demo" / "broken.py").write_text("def boot(:\n    pass\n")
    caller = {"Authorization": f"token {console.caller}"}
    sign_in(page, console.url, console.token)
    page.get_by_role("treeitem", name="demo/broken.py").get_by_role("button").click()

    # a start refused with 422 SYNTAX_ERROR: the finding is shown
    page.get_by_role("button", name="Start", exact=True).click()
    findings = page.get_by_role("list", name="Findings")
    wait_until(lambda: "SYNTAX_ERROR" in (findings.text_content() or ""), 20, "the finding")
    wait_until(lambda: "SYNTAX_ERROR" in (page.locator("#notice").text_content() or ""), 20, "422")
    assert "demo/broken.py" not in console.gateway.running()

    # save with If-Match: the file changed on disk since it was opened -> a clear choice
    page.get_by_role("treeitem", name="demo/boom.py").get_by_role("button").click()
    wait_until(lambda: "def boom" in editor_text(page), 20, "boom.py in the editor")
    page.locator(".cm-content").click()
    page.keyboard.press("Control+End")
    page.keyboard.type("# mine\n")
    (console.root / "demo" / "boom.py").write_text(BOOM + "# theirs\n")
    page.get_by_role("button", name="Save").click()
    conflict = page.locator("#ed-conflict")
    conflict.wait_for()
    assert "changed on disk" in (conflict.text_content() or "")
    assert (console.root / "demo" / "boom.py").read_text().endswith("# theirs\n")
    page.get_by_role("button", name="Overwrite").click()
    conflict.wait_for(state="hidden")
    wait_until(
        lambda: (console.root / "demo" / "boom.py").read_text() == editor_text(page), 20, "saved"
    )
    assert "# mine" in (console.root / "demo" / "boom.py").read_text()

    # live logs: ANSI colours, a traceback's file:line opens the editor there
    page.get_by_role("button", name="Start", exact=True).click()
    page.get_by_label("status running").wait_for()
    page.get_by_role("tab", name="Logs").click()
    log_view = page.get_by_role("log", name="Log records")
    r = httpx.get(f"{console.url}/script-api/boom", headers=caller, timeout=30)
    assert r.status_code >= 400 and r.json()["code"] == "HANDLER_ERROR", r.text
    wait_until(lambda: count(log_view, "ZeroDivisionError: division") >= 1, 30, "the traceback")
    red = log_view.locator("span", has_text="red text").last
    assert red.evaluate("e => getComputedStyle(e).color") == "rgb(255, 107, 107)"

    # Pause buffers, Resume shows what came in meanwhile
    page.get_by_role("button", name="Pause").click()
    before = count(log_view, "ZeroDivisionError: division")
    r = httpx.get(f"{console.url}/script-api/boom", headers=caller, timeout=30)
    call_id = r.json()["call_id"]

    def stored() -> bool:
        got = console.gateway.client.get("/script-engine/logs", params={"call_id": call_id})
        return got.status_code == 200 and got.json()["count"] >= 2

    wait_until(stored, 30, "the second call's records")
    wait_until(lambda: "new" in (page.locator("#log-state").text_content() or ""), 20, "buffered")
    assert count(log_view, "ZeroDivisionError: division") == before
    page.get_by_role("button", name="Resume").click()
    wait_until(
        lambda: count(log_view, "ZeroDivisionError: division") > before, 20, "the buffered lines"
    )

    # Export: fetched with the token header, saved as a file
    with page.expect_download() as info:
        page.get_by_role("button", name="Export").click()
    exported = Path(info.value.path()).read_text()
    assert "ZeroDivisionError" in exported

    log_view.get_by_role("link", name="demo/boom.py", exact=False).last.click()
    page.get_by_role("tab", name="Editor", selected=True).wait_for()
    wait_until(
        lambda: "return 1 / 0" in (page.locator(".cm-activeLine").text_content() or ""),
        20,
        "the editor at the traceback's line",
    )

    page.get_by_role("button", name="Stop", exact=True).click()
    page.get_by_label("status stopped").wait_for()

    # New script (from the template), Rename, Delete (asked first)
    page.once("dialog", lambda d: d.accept("demo/fresh.py"))
    page.get_by_role("button", name="New script").click()
    wait_until(lambda: (console.root / "demo" / "fresh.py").is_file(), 20, "the new file")
    page.get_by_role("treeitem", name="demo/fresh.py").wait_for()
    wait_until(lambda: "def boot" in editor_text(page), 20, "the template in the editor")
    page.once("dialog", lambda d: d.accept("demo/renamed.py"))
    page.get_by_role("button", name="Rename").click()
    wait_until(lambda: (console.root / "demo" / "renamed.py").is_file(), 20, "the renamed file")
    assert not (console.root / "demo" / "fresh.py").exists()
    # the page selects the renamed file once the answer is in (the file is renamed on disk
    # before the answer: the rename's commit comes between)
    wait_until(
        lambda: page.locator("#sel-path").text_content() == "demo/renamed.py", 20, "selected"
    )
    questions: list[str] = []

    def answer(dialog: Any) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.once("dialog", answer)
    page.get_by_role("button", name="Delete").click()
    wait_until(lambda: not (console.root / "demo" / "renamed.py").exists(), 20, "deleted")
    assert questions and "Delete demo/renamed.py" in questions[0]
    page.get_by_role("treeitem", name="demo/renamed.py").wait_for(state="detached")


@needs_browser
def test_one_scripts_logs_and_older_records_paged_in_when_scrolling_up(
    console: Console, page: Any
) -> None:
    (console.root / "chatty").mkdir(exist_ok=True)
    (console.root / "chatty" / "talk.py").write_text(
        "def boot():\n"
        "    for i in range(450):\n"
        "        VWED.log.info('talk', f'line {i:03d}')\n"
        "    VWED.log.info('talk', 'all said')\n"
    )
    r = console.gateway.client.post("/script-engine/start", json={"script_path": "chatty/talk.py"})
    assert r.status_code == 200, r.text
    try:

        def stored() -> bool:
            got = console.gateway.client.get(
                "/script-engine/logs", params={"tag": "talk", "q": "all said"}
            )
            return got.status_code == 200 and got.json()["count"] == 1

        wait_until(stored, 30, "the records in the database")
        sign_in(page, console.url, console.token)
        page.get_by_role("treeitem", name="chatty/talk.py").get_by_role("button").click()
        page.get_by_role("tab", name="Logs").click()
        page.get_by_role("combobox", name="Logs of script").select_option("chatty/talk.py")
        log_view = page.get_by_role("log", name="Log records")
        wait_until(lambda: "all said" in (log_view.text_content() or ""), 20, "the tail")
        assert "line 000" not in (log_view.text_content() or "")  # only the last 200 replayed
        # JupyterLab is one click away when the gateway knows where it is
        link = page.get_by_role("link", name="Open in JupyterLab")
        assert link.get_attribute("href") == "http://127.0.0.1:8888/lab/tree/chatty/talk.py"
        for _ in range(10):
            if "line 000" in (log_view.text_content() or ""):
                break
            log_view.evaluate("e => { e.scrollTop = 0; e.dispatchEvent(new Event('scroll')); }")
            wait_until(
                lambda: (
                    log_view.evaluate("e => e.scrollTop") > 0
                    or "line 000" in (log_view.text_content() or "")
                ),
                10,
                "an older page",
            )
        text = log_view.text_content() or ""
        assert "line 000" in text and "all said" in text
        assert text.count("line 123") == 1  # no record twice
        # the other scripts' records are not in this script's view
        assert "controller ready" not in text
    finally:
        console.gateway.client.post("/script-engine/stop", json={"script_path": "chatty/talk.py"})


# an sdist whose in-tree build backend takes 5 s and then fails: the script stays
# "installing" long enough to be seen, then its start is refused
SLOW_BACKEND = """\
import time


def get_requires_for_build_wheel(config_settings=None):
    return []


def _refuse():
    time.sleep(5)
    raise RuntimeError("vwedslow takes its time and then refuses to build (a test package)")


def prepare_metadata_for_build_wheel(directory, config_settings=None):
    _refuse()


def build_wheel(directory, config_settings=None, metadata_directory=None):
    _refuse()
"""
SLOW_SDIST = {
    "pyproject.toml": (
        '[build-system]\nrequires = []\nbuild-backend = "slow_backend"\nbackend-path = ["."]\n'
        '\n[project]\nname = "vwedslow"\nversion = "1.0"\n'
    ),
    "slow_backend.py": SLOW_BACKEND,
}

WITH_PACKAGES = """\
# /// script
# dependencies = ["vwedtiny==2.0"]
# ///
import vwedtiny


def boot():
    VWED.log.info("pkg", f"tiny {vwedtiny.VERSION} ready")
"""


@needs_browser
def test_the_packages_of_a_script_and_a_start_that_installs_asks_first(
    console: Console, page: Any
) -> None:
    (console.root / "demo").mkdir(exist_ok=True)
    (console.root / "demo" / "packaged.py").write_text(WITH_PACKAGES)
    sign_in(page, console.url, console.token)
    page.get_by_role("button", name="Sign out").wait_for()
    page.get_by_role("button", name="Refresh files").click()
    page.get_by_role("treeitem", name="demo/packaged.py").get_by_role("button").click()
    packages = page.get_by_role("region", name="Packages of the selected script")
    wait_until(lambda: "not installed" in (packages.text_content() or ""), 20, "the packages")
    listed = page.get_by_role("list", name="Declared packages")
    assert listed.text_content() == "vwedtiny==2.0"

    # Start asks first, listing what it will install; declined: nothing starts
    # confirm() blocks the click until it is answered: answered as it comes, by a handler
    questions: list[str] = []

    def answer(accept: bool) -> Any:
        def on_dialog(dialog: Any) -> None:
            questions.append(dialog.message)
            dialog.accept() if accept else dialog.dismiss()

        return on_dialog

    page.get_by_role("tab", name="Scripts").click()
    page.once("dialog", answer(False))
    with page.expect_event("dialog"):  # the console asks once it has the packages
        page.get_by_role("button", name="Start", exact=True).click()
    question = questions[0]
    assert question.startswith("Install 1 package and start demo/packaged.py?"), question
    assert "vwedtiny==2.0" in question
    wait_until(
        lambda: "not started" in (page.locator("#notice").text_content() or ""), 20, "declined"
    )
    assert "demo/packaged.py" not in console.gateway.running()

    # accepted: installed, then started; the packages turn installed
    page.once("dialog", answer(True))
    with page.expect_event("dialog"):
        page.get_by_role("button", name="Start", exact=True).click()
    page.get_by_label("status running").wait_for()
    wait_until(lambda: "vwedtiny 2.0" in (packages.text_content() or ""), 30, "installed")
    assert page.locator("#sel-packages-state").text_content() == "installed"
    screenshot(page, "console-packages")
    page.get_by_role("button", name="Stop", exact=True).click()
    page.get_by_label("status stopped").wait_for()

    # while the gateway installs, the script is "installing" in the table; a build that
    # fails ends the start with DEPENDENCY_FAILED
    (console.root / "demo" / "slow.py").write_text(
        WITH_PACKAGES.replace("vwedtiny==2.0", "vwedslow==1.0")
    )
    page.get_by_role("button", name="Refresh files").click()
    page.get_by_role("treeitem", name="demo/slow.py").get_by_role("button").click()
    wait_until(lambda: "vwedslow==1.0" in (packages.text_content() or ""), 20, "its packages")
    page.get_by_role("tab", name="Scripts").click()  # opening a file showed the Editor
    page.once("dialog", answer(True))
    with page.expect_event("dialog"):
        page.get_by_role("button", name="Start", exact=True).click()
    row = page.get_by_role("table", name="Running scripts").locator('tr[data-path="demo/slow.py"]')
    wait_until(lambda: "installing" in (row.text_content() or ""), 20, "the installing row")
    notice = page.locator("#notice")
    wait_until(lambda: "DEPENDENCY_FAILED" in (notice.text_content() or ""), 60, "the refusal")
    wait_until(lambda: row.count() == 0, 20, "no row left")


@needs_browser
def test_the_secrets_view_lists_names_and_scopes_never_values(console: Console, page: Any) -> None:
    value = "plc-" + uuid.uuid4().hex
    r = console.gateway.client.put(
        "/script-engine/secrets/plc_password",
        json={"value": value, "scripts": ["warehouse/"]},
        headers={"X-VWED-Author": "ana"},
    )
    assert r.status_code in (200, 201), r.text
    sign_in(page, console.url, console.token)
    page.get_by_role("button", name="Sign out").wait_for()
    page.get_by_role("tab", name="Secrets").click()
    rows = page.get_by_role("table", name="Secrets")
    wait_until(lambda: "plc_password" in (rows.text_content() or ""), 20, "the secret listed")
    assert "warehouse/" in (rows.text_content() or "") and "ana (admin)" in (
        rows.text_content() or ""
    )
    # set one from the form: listed, its value gone from the page
    other = "key-" + uuid.uuid4().hex
    page.get_by_label("Secret name").fill("erp_api_key")
    page.get_by_label("Secret value").fill(other)
    page.get_by_role("button", name="Set", exact=True).click()
    wait_until(lambda: "erp_api_key" in (rows.text_content() or ""), 20, "the new secret")
    assert page.get_by_label("Secret value").input_value() == ""
    html = page.content()
    assert value not in html and other not in html
    screenshot(page, "console-secrets")
    # delete asks first
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete secret erp_api_key").click()
    wait_until(lambda: "erp_api_key" not in (rows.text_content() or ""), 20, "deleted")
    assert "erp_api_key" not in console.gateway.client.get("/script-engine/secrets").text


VERSIONED = """\
def boot():
    VWED.api.register_route("/versioned/which", "GET", lambda: {v!r})
"""


@needs_browser
def test_the_history_of_a_file_a_diff_run_this_revision_and_restore(
    console: Console, page: Any
) -> None:
    gw = console.gateway.client
    rel = "demo/versioned.py"
    saves = []
    for v, message in (("first", "the first version"), ("second", "serve the second")):
        r = gw.put(
            f"/script-engine/files/{rel}",
            json={"content": VERSIONED.format(v=v), "message": message},
            headers={"X-VWED-Author": "ann"},
        )
        assert r.status_code == 200, r.text
        saves.append(r.json()["revision"])
    first, second = saves
    r = gw.post("/script-engine/start", json={"script_path": rel})
    assert r.status_code == 200 and r.json()["revision"] == second, r.text

    sign_in(page, console.url, console.token)
    page.get_by_role("button", name="Sign out").wait_for()
    page.get_by_role("button", name="Refresh files").click()
    page.get_by_role("treeitem", name=rel).get_by_role("button").click()
    # the Scripts table shows the revision a script runs (short)
    page.get_by_role("tab", name="Scripts").click()
    row = page.get_by_role("table", name="Running scripts").locator(f'tr[data-path="{rel}"]')
    wait_until(lambda: second[:12] in (row.text_content() or ""), 20, "the running revision")

    # History: the commits, newest first, with author and message
    page.get_by_role("tab", name="History").click()
    commits = page.get_by_role("table", name="Commits of the file")
    rows = commits.locator("#history-rows tr")
    wait_until(lambda: rows.count() == 2, 20, "the two commits")
    assert rows.nth(0).get_attribute("data-revision") == second
    assert "serve the second" in (rows.nth(0).text_content() or "")
    assert "ann (admin)" in (rows.nth(0).text_content() or "")
    assert "running" in (rows.nth(0).text_content() or "")  # the revision the script runs

    # a click on the older one: its diff to the current version, lines coloured + / -
    rows.nth(1).get_by_role("button", name=first[:12], exact=True).click()
    diff = page.locator("#history-diff")
    wait_until(lambda: diff.locator(".dl-add").count() == 1, 20, "the diff")
    assert "'second'" in (diff.locator(".dl-add").text_content() or "")
    assert "'first'" in (diff.locator(".dl-del").text_content() or "")
    assert diff.locator("b, i, script, span").count() == 0  # text lines, no markup from the file
    screenshot(page, "console-history")

    # Run this revision: asks, then rolls the running script back without a stop
    questions: list[str] = []

    def answer(dialog: Any) -> None:  # confirm() blocks the click: answered as it comes
        questions.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    rows.nth(1).get_by_role("button", name=f"Run revision {first[:12]}").click()
    wait_until(
        lambda: console.gateway.running().get(rel, {}).get("revision") == first, 30, "rollback"
    )
    assert (
        httpx.get(
            f"{console.url}/script-api/versioned/which",
            timeout=30,
            headers={"Authorization": f"token {console.caller}"},
        ).json()
        == "first"
    )
    page.get_by_role("tab", name="Scripts").click()
    wait_until(lambda: first[:12] in (row.text_content() or ""), 20, "the new revision shown")
    assert questions == [f"Reload {rel} at revision {first[:12]}?"]

    # Restore: asks, then the old content is a new commit (the newest of the history)
    page.get_by_role("tab", name="History").click()
    wait_until(lambda: rows.count() == 2, 20, "the commits again")
    rows.nth(1).get_by_role("button", name=f"Restore {first[:12]}").click()
    wait_until(lambda: rows.count() == 3, 20, "the restore's commit")
    assert questions[1].startswith(f"Restore {rel} to revision {first[:12]}?"), questions
    assert "restore" in (rows.nth(0).text_content() or "")
    assert (console.root / rel).read_text() == VERSIONED.format(v="first")
    gw.post("/script-engine/stop", json={"script_path": rel})
