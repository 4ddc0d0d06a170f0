"""The text of executions in a terminal: a progress line, the end line, the table of
``vwed exec ls`` and the record of ``vwed exec show`` (``executions.py`` runs the
commands). Text from a step is printed without terminal control characters."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from .output import _printable as printable
from .output import duration, table, to_json

__all__ = [
    "end_line",
    "executions_table",
    "ms",
    "progress_text",
    "record_text",
    "step_of",
    "step_output",
    "usage_facts",
]


def step_output(source: dict[str, Any], emit: Callable[[str], None]) -> None:
    for stream in ("stdout", "stderr"):
        text = printable(str(source.get(stream) or source.get(f"{stream}_tail") or ""))
        if text.strip():
            emit(f"--- {stream}")
            emit(text.rstrip("\n"))


def usage_facts(record: dict[str, Any]) -> list[str]:
    usage = record.get("usage") or {}
    facts = []
    if record.get("worker"):
        facts.append(f"worker {str(record['worker'])[:8]}")
    if record.get("duration_ms") is not None:
        facts.append(f"took {ms(record['duration_ms'])}")
    if usage.get("cpu_ms") is not None:
        facts.append(f"cpu {ms(usage['cpu_ms'])}")
    if usage.get("peak_rss_bytes") is not None:
        facts.append(f"peak memory {usage['peak_rss_bytes'] / 2**20:.1f} MiB")
    return facts


def progress_text(progress: dict[str, Any], width: int = 200) -> str:
    """``40% (2/5) lift up``."""
    parts = []
    if progress.get("fraction") is not None:
        parts.append(f"{float(progress['fraction']) * 100:.0f}%")
    if progress.get("total") is not None:
        parts.append(f"({float(progress.get('done') or 0):g}/{float(progress['total']):g})")
    elif progress.get("done") is not None and progress.get("fraction") is None:
        parts.append(f"{float(progress['done']):g} done")
    if progress.get("message"):
        parts.append(str(progress["message"]))
    text = " ".join(parts) or "-"
    return text if len(text) <= width else text[: width - 1] + "…"


def end_line(record: dict[str, Any]) -> str:
    """``succeeded in 1.52 s: {"moved": 5}`` or ``failed: STEP_FAILED the step raised ...``."""
    status = str(record.get("status"))
    took = f" in {ms(record['duration_ms'])}" if record.get("duration_ms") is not None else ""
    if status == "succeeded":
        return f"{status}{took}: {json.dumps(record.get('result'), ensure_ascii=False)}"
    error = record.get("error") or {}
    why = f"{error.get('code')}: {error.get('message')}" if error else record.get("reason")
    return printable(f"{status}{took}: {why}")


def step_of(record: dict[str, Any]) -> str:
    text = f"{record.get('script_path')} {record.get('function_name') or '(RUN)'}"
    return text + (f", task {record['task_id']}" if record.get("task_id") else "")


def ms(value: Any) -> str:
    ms = float(value)
    if ms < 1000:
        return f"{ms:.1f} ms"
    return f"{ms / 1000:.2f} s" if ms < 60_000 else duration(ms / 1000)


def _when(ts: Any) -> str:
    if ts is None:
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))
    except (TypeError, ValueError, OverflowError):
        return "?"


def executions_table(rows: list[dict[str, Any]], now: float | None = None) -> str:
    if not rows:
        return "no asynchronous execution"
    now = time.time() if now is None else now
    header = ["ID", "STATUS", "PROGRESS", "PATH", "FUNCTION", "TASK", "ATTEMPTS"]
    body = []
    for r in rows:
        took = r.get("duration_ms")
        if took is None and r.get("started_at") and r.get("status") == "running":
            took = (now - float(r["started_at"])) * 1000
        limit = (r.get("retry") or {}).get("attempts")
        tried = len(r.get("attempts") or []) + (r.get("status") == "running")  # + this one
        body.append(
            [
                str(r.get("execution_id"))[:12],
                str(r.get("status")),
                progress_text(r["progress"], 28) if r.get("progress") else "-",
                str(r.get("script_path")),
                str(r.get("function_name") or "(RUN)"),
                str(r.get("task_id") or "-"),
                f"{tried}/{limit}" if limit else str(tried),
                "-" if took is None else ms(took),
                _when(r.get("submitted_at")),
            ]
        )
    return printable(table([*header, "DURATION", "SUBMITTED"], body))


def record_text(r: dict[str, Any]) -> str:
    """``exec show``: the record, a field a line; attempts, output tails and the result
    under it."""
    kind = "asynchronous" if r.get("async") else "synchronous"
    lines = [
        f"execution  {r.get('execution_id')} ({kind})",
        f"status     {r.get('status')}"
        + (f" ({r['reason']})" if r.get("reason") not in (None, r.get("status")) else ""),
        f"step       {step_of(r)}, mode {r.get('mode')}",
        f"submitted  {_when(r.get('submitted_at'))}",
        f"started    {_when(r.get('started_at'))}",
        f"finished   {_when(r.get('finished_at'))}",
    ]
    facts = usage_facts(r)
    if facts:
        lines.append("ran        " + ", ".join(facts))
    if r.get("progress"):
        lines.append(f"progress   {progress_text(r['progress'])}")
    retry = r.get("retry")
    if retry:
        on = f", on {', '.join(retry['on'])}" if retry.get("on") else ""
        lines.append(
            f"retry      up to {retry.get('attempts')} attempts, {retry.get('backoff')} "
            f"{retry.get('initial_s'):g}-{retry.get('max_s'):g} s{on}"
        )
    if r.get("idempotency_key"):
        lines.append(f"key        {r['idempotency_key']}")
    if r.get("at_most_once"):
        lines.append("at most once (not run again after a gateway died)")
    error = r.get("error")
    if error:
        lines.append(f"error      {error.get('code')}: {error.get('message')}")
        trace = (error.get("details") or {}).get("traceback")
        if trace:
            lines += ["  " + t for t in str(trace).rstrip().splitlines()]
    attempts = r.get("attempts") or []
    if attempts:
        lines.append("attempts")
    for a in attempts:
        took = ""
        if a.get("started_at") and a.get("finished_at"):
            took = f" in {ms((a['finished_at'] - a['started_at']) * 1000)}"
        what = f"{'ok' if a.get('ok') else 'failed'}{took} ({a.get('execution_id')})"
        why = "" if a.get("ok") else f": {a.get('code')}: {a.get('message')}"
        lines.append(f"  {a.get('attempt')}. {what}{why}")
    step_output(r, lines.append)
    if r.get("status") == "succeeded" and "result" in r:
        lines += ["--- result", to_json(r.get("result"))]
    return printable("\n".join(lines))
