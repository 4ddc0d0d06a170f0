"""The parts of ``VWED`` share one context (registrations, link, log), and nothing in
``vwed_kernel`` reaches into ``VWED``'s private attributes. No kernel needed."""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vwed_kernel.context import Link
from vwed_kernel.encoding import encode_result
from vwed_kernel.registrations import Registrations
from vwed_kernel.response import Response
from vwed_kernel.vwed import VWED

PACKAGE = Path(__file__).resolve().parent.parent / "vwed_kernel"


class RecordingLink(Link):
    """A link to a gateway that keeps what it is told (a real ``Link``, not a mock)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any]] = []

    @property
    def attached(self) -> bool:
        return True

    def notify_register(self, kind: str, description: dict[str, Any]) -> None:
        self.sent.append(("register", kind, description))

    def notify_unregister(self, kind: str, description: dict[str, Any]) -> None:
        self.sent.append(("unregister", kind, description))

    def notify_log(self, level: str, tag: str, message: str) -> bool:
        self.sent.append(("log", level, (tag, message)))
        return True

    def notify(self, service: str, payload: dict[str, Any]) -> None:
        self.sent.append(("notify", service, payload))


def test_every_module_registers_and_logs_through_the_one_link():
    link, registrations = RecordingLink(), Registrations()
    vwed = VWED(link, registrations=registrations)

    def handler() -> str:
        return "ok"

    vwed.api.register_route("/ctx/{id}", "GET", handler)
    vwed.function.register("ctx_fn", handler)
    listener = vwed.event.listen("ctx_event", handler)
    vwed.log.warning("ctx", "careful")
    vwed.event.emit("ctx_event", {"a": 1})
    assert vwed.api.unregister_route("/ctx/{id}", "GET")
    assert vwed.function.unregister("ctx_fn")
    assert vwed.event.unlisten("ctx_event", listener) == 1

    assert [(op, kind) for op, kind, _ in link.sent] == [
        ("register", "api"),
        ("register", "function"),
        ("register", "event"),
        ("log", "WARNING"),
        ("notify", "event.emit"),
        ("unregister", "api"),
        ("unregister", "function"),
        ("unregister", "event"),
    ]
    assert link.sent[3][2] == ("ctx", "careful")
    assert vwed.registrations() == registrations.snapshot()
    assert registrations.snapshot()["apis"] == []


def test_timers_register_in_the_shared_registrations_and_report_failed_ticks():
    link, registrations = RecordingLink(), Registrations()
    vwed = VWED(link, registrations=registrations)

    def tick() -> None:
        raise RuntimeError("tick refuses")

    async def scenario() -> None:
        timer_id = vwed.timer.delay(0.01, tick)
        assert timer_id in registrations.timers
        task = registrations.timers[timer_id].task
        await asyncio.wait_for(task, 10)

    asyncio.run(asyncio.wait_for(scenario(), 20))
    assert registrations.timers == {}
    kinds = [(op, kind) for op, kind, _ in link.sent]
    assert kinds == [("register", "timer"), ("log", "ERROR"), ("unregister", "timer")]
    tag, message = link.sent[1][2]
    assert tag == "timer" and "RuntimeError: tick refuses" in message


def test_detached_log_lines_are_printed(capsys: pytest.CaptureFixture[str]):
    vwed = VWED()
    vwed.log.info("ctx", "to stdout")
    vwed.log.error("ctx", "to stderr")
    out, err = capsys.readouterr()
    assert out.endswith("[INFO] ctx: to stdout\n")
    assert err.endswith("[ERROR] ctx: to stderr\n")


def test_a_response_is_encoded_for_the_wire_by_encoding():
    fields, buffers = encode_result("api", Response({"queued": True}, status=202))
    assert fields["response"]["status"] == 202
    assert fields["response"]["body_type"] == "json"
    assert fields["response"]["content_type"] == "application/json"
    assert buffers == [b'{"queued":true}']
    assert VWED().api.Response is Response


def test_encoding_does_not_import_the_vwed_modules():
    """The runtime cycle encoding -> modules.api -> encoding is gone."""
    code = (
        "import sys, vwed_kernel.encoding; "
        "print(sorted(m for m in sys.modules if m.startswith('vwed_kernel.modules')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


def _private_reads(path: Path) -> list[str]:
    """``x._name`` where ``x`` is not ``self``/``cls`` (dunders aside)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ):
            found.append(f"{path.name}:{node.lineno}: .{node.attr}")
    return found


def test_no_vwed_module_reads_another_objects_privates():
    found = [
        hit for path in sorted((PACKAGE / "modules").glob("*.py")) for hit in _private_reads(path)
    ]
    assert found == []


def test_nothing_in_vwed_kernel_reaches_into_vwed():
    names = {"_context", "_registrations", "_link"}
    found = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "vwed.py"
        for hit in _private_reads(path)
        if hit.rsplit(".", 1)[1] in names
    ]
    assert found == []


def test_every_vwed_kernel_module_is_at_most_400_lines():
    sizes = {
        str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > 400} == {}
