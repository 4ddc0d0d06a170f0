"""The console's Steps pane with asynchronous executions (issue 18), in a real browser
(Debian's Chromium through Playwright) against a real gateway subprocess with tokens.

Three executions are submitted over HTTP with the caller token, as a task engine does: one
that succeeds, one that fails after a retry, one long one that reports its progress. The
pane lists them with their statuses and filters them by status; the long one's detail
follows its output (and progress) live over its WebSocket; Cancel asks first, then the
execution ends ``cancelled``; the steps history shows each step's worker, CPU time and peak
memory, and each attempt of the retried one. With VWED_DOCS_SCREENSHOTS=1 the screenshots go
to docs/img/console-executions*.png.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import browser
import httpx
import pytest
from browser import VIEWPORT, missing, needs_browser, screenshot

from conftest import GatewayProcess, wait_until

chromium = browser.chromium  # the fixture
pytestmark = pytest.mark.timeout(240)

STEPS = """
import time


class DeviceError(Exception):
    pass


def pack(n):
    for i in range(1, n + 1):
        print(f"packed box {i}")
    return {"boxes": n}


def lift():
    raise DeviceError("the lift is busy")


def convoy(n):
    for i in range(1, n + 1):
        VWED.progress(i, total=n, message=f"pallet {i} of {n}")
        print(f"moved pallet {i}")
        time.sleep(0.4)
    return {"moved": n}
"""


class Env:
    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "scripts"
        (self.root / "line").mkdir(parents=True)
        (self.root / "line" / "steps.py").write_text(STEPS)
        self.token = uuid.uuid4().hex
        self.caller_token = uuid.uuid4().hex
        self.gateway = GatewayProcess(
            self.root,
            tmp / "data",
            "--auth",
            "--token",
            self.token,
            "--caller-token",
            self.caller_token,
        )
        self.gateway.client.headers["Authorization"] = f"token {self.token}"
        self.caller = httpx.Client(
            base_url=self.gateway.url,
            timeout=60,
            headers={"Authorization": f"token {self.caller_token}"},
        )

    def submit(self, function: str, args: Any = None, **extra: Any) -> str:
        body = {"script_path": "line/steps.py", "function_name": function, "args": args}
        r = self.caller.post("/script-engine/execute", json={**body, "async": True, **extra})
        assert r.status_code == 202, r.text
        return str(r.json()["execution_id"])

    def record(self, execution_id: str) -> dict[str, Any]:
        r = self.caller.get(f"/script-engine/executions/{execution_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def wait_end(self, execution_id: str) -> dict[str, Any]:
        r = self.caller.get(
            f"/script-engine/executions/{execution_id}/wait", params={"timeout": 60}
        )
        assert r.status_code == 200, r.text
        return dict(r.json())


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    reason = missing()
    if reason:
        pytest.skip(reason)
    e = Env(tmp_path_factory.mktemp("console-executions"))
    try:
        yield e
    finally:
        e.caller.close()
        e.gateway.finish()


@pytest.fixture
def page(env: Env, chromium: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    with browser.console_page(chromium, request, {**VIEWPORT, "height": 900}) as p:
        yield p


def sign_in(page: Any, url: str, token: str) -> None:
    browser.console_sign_in(page, url, token)
    page.get_by_role("button", name="Sign out").wait_for()


def text(locator: Any) -> str:
    return str(locator.text_content() or "")


@needs_browser
def test_asynchronous_executions_in_the_steps_pane(env: Env, page: Any) -> None:
    # what a task engine submits: one that succeeds, one that fails after a retry
    packed = env.submit("pack", [3], task_id="T-pack")
    done = env.wait_end(packed)
    assert done["status"] == "succeeded", (done["error"], done["stderr_tail"])
    retry = {"attempts": 2, "backoff": "constant", "initial_s": 0.2, "on": ["DeviceError"]}
    lifted = env.submit("lift", None, retry=retry, task_id="T-lift")
    failed = env.wait_end(lifted)
    assert failed["status"] == "failed" and len(failed["attempts"]) == 2, failed
    # and a long one, running while the console looks at it
    long = env.submit("convoy", [60], task_id="T-convoy")
    wait_until(lambda: env.record(long)["status"] == "running", 30, "the long one running")

    sign_in(page, env.gateway.url, env.token)
    page.get_by_role("tab", name="Steps").click()
    table = page.get_by_role("table", name="Asynchronous executions")
    rows = table.locator("tbody tr")
    wait_until(lambda: rows.count() == 3, 30, "the three asynchronous executions")
    for execution_id, status in ((packed, "succeeded"), (lifted, "failed"), (long, "running")):
        row = table.locator(f'tr[data-id="{execution_id}"]')
        wait_until(lambda r=row, s=status: s in text(r), 20, f"{execution_id} {status}")
    assert "DeviceError" in text(table.locator(f'tr[data-id="{lifted}"]'))
    assert "queue:" in text(page.locator("#steps-queue"))

    # the status filter (beside the task filter)
    status_filter = page.get_by_label("Status of the asynchronous executions")
    status_filter.select_option("failed")
    wait_until(
        lambda: rows.count() == 1 and lifted in (rows.first.get_attribute("data-id") or ""),
        20,
        "only the failed one",
    )
    status_filter.select_option("")
    wait_until(lambda: rows.count() == 3, 20, "all three again")

    # the long one's detail: its output arrives live over the WebSocket
    page.get_by_role("button", name=re.compile(r"^Details of execution .* convoy\)$")).click()
    detail = page.get_by_role("region", name=f"Execution {long}")
    detail.wait_for()
    wait_until(lambda: text(detail.locator("#exec-live")) == "live", 20, "followed live")
    stdout = detail.locator("#exec-stdout")
    wait_until(lambda: "moved pallet" in text(stdout), 30, "the output")
    seen = text(stdout).count("moved pallet")
    wait_until(lambda: text(stdout).count("moved pallet") >= seen + 2, 30, "more output, live")
    # the long step reports its progress: in the detail, and in the table
    bar = detail.get_by_role("progressbar")
    wait_until(lambda: int(bar.get_attribute("aria-valuenow") or 0) > 0, 20, "progress")
    assert "pallet" in text(detail.locator("#exec-progress"))
    row_bar = table.locator(f'tr[data-id="{long}"]').get_by_role("progressbar")
    wait_until(lambda: row_bar.count() == 1, 20, "the progress in the table")
    screenshot(page, "console-executions")

    # Cancel asks first; declined, nothing happens
    questions: list[str] = []

    def decline(dialog: Any) -> None:
        questions.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", decline)
    cancel = detail.get_by_role("button", name="Cancel execution")
    cancel.click()
    wait_until(lambda: len(questions) == 1, 10, "the question")
    assert long in questions[0]
    assert env.record(long)["status"] == "running"

    def accept(dialog: Any) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    cancel.click()
    status = detail.locator("#exec-status")
    wait_until(lambda: text(status) == "cancelled", 30, "cancelled in the detail")
    assert env.record(long)["status"] == "cancelled"
    assert cancel.is_hidden()  # nothing left to cancel
    assert "CANCELLED" in text(detail)
    wait_until(
        lambda: "cancelled" in text(table.locator(f'tr[data-id="{long}"]')), 20, "in the table"
    )

    # the failed one: each attempt with its error
    page.get_by_role("button", name=re.compile(r"^Details of execution .* lift\)$")).click()
    detail = page.get_by_role("region", name=f"Execution {lifted}")
    detail.wait_for()
    attempts = detail.get_by_role("list", name="Attempts").get_by_role("listitem")
    wait_until(lambda: attempts.count() == 2, 20, "two attempts")
    assert all("the lift is busy" in text(attempts.nth(i)) for i in range(2))
    assert "DeviceError" in text(attempts.first)
    screenshot(page, "console-executions-failed")

    # the succeeded one: its result
    page.get_by_role("button", name=re.compile(r"^Details of execution .* pack\)$")).click()
    detail = page.get_by_role("region", name=f"Execution {packed}")
    wait_until(lambda: '"boxes": 3' in text(detail.locator("#exec-result")), 20, "the result")
    assert "packed box 3" in text(detail.locator("#exec-stdout"))

    # the steps history: the worker, CPU time and peak memory of each step, its attempt
    done = env.record(packed)
    history = page.get_by_role("table", name="Executions")
    step = history.locator("tr", has_text=f"1 of {packed[:8]}")
    wait_until(lambda: step.count() == 1, 20, "the step in the history")
    cells = step.locator("td")
    assert text(cells.nth(6)) == done["worker"][:8]
    usage = done["usage"]
    assert usage["cpu_ms"] is not None and usage["peak_rss_bytes"]  # measured by the worker
    assert text(cells.nth(7)) == f"{usage['cpu_ms']:.1f}"
    assert text(cells.nth(8)) == f"{usage['peak_rss_bytes'] / 1048576:.1f}"
    assert text(cells.nth(10)) == "succeeded"
    for attempt in (1, 2):
        row = history.locator("tr", has_text=f"{attempt} of {lifted[:8]}")
        wait_until(lambda r=row: r.count() == 1, 20, f"attempt {attempt} in the history")
        assert "failed" in text(row) and "DeviceError" in text(row)
    # an attempt's button opens its execution
    history.get_by_role("button", name=f"Attempt 2 of execution {lifted[:8]}").click()
    page.get_by_role("region", name=f"Execution {lifted}").wait_for()
    page.get_by_role("button", name="Close the execution details").click()
    page.get_by_role("region", name=f"Execution {lifted}").wait_for(state="hidden")
    screenshot(page, "console-executions-history", full_page=True)
