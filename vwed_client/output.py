"""What the command line prints for people: tables, log lines, findings. ``--json``
bypasses all of it and prints the API's JSON."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

__all__ = [
    "script_path_of",
    "table",
    "running_table",
    "started_line",
    "log_line",
    "finding_line",
    "findings_summary",
    "to_json",
    "duration",
]

_SCRIPT_ID = re.compile(r"(.+)_\d+_*")


def script_path_of(script_id: str | None) -> str | None:
    """``warehouse/a.py_1732412345678`` -> ``warehouse/a.py`` (a script's id is its path and
    the millisecond it started; a restart gives a new id, the path stays)."""
    if not script_id:
        return None
    match = _SCRIPT_ID.fullmatch(script_id)
    return match.group(1) if match else script_id


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def duration(seconds: float) -> str:
    """``3d4h``, ``2h05m``, ``4m12s``, ``9s``: the two largest units."""
    s = max(0, int(seconds))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{s:02d}s"
    return f"{s}s"


def _number(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def _sum(kernels: list[dict[str, Any]], *names: str) -> float | None:
    values = [float(k[n]) for k in kernels for n in names if k.get(n) is not None]
    return sum(values) if values else None


def running_table(scripts: list[dict[str, Any]], now: float | None = None) -> str:
    """``vwed ls``: one row per running script; CPU and RSS summed over its kernels; calls
    per second and error rate when the gateway reports them."""
    if not scripts:
        return "no script is running"
    now = time.time() if now is None else now
    rates = any("calls_per_s" in s for s in scripts)
    header = ["PATH", "STATUS", "REPLICAS", "RESTARTS", "UPTIME", "CPU%", "RSS_MIB"]
    if rates:
        header += ["CALLS/S", "ERRORS%"]
    revisions = any(s.get("revision") for s in scripts)
    if revisions:
        header.append("REVISION")
    header.append("SCRIPT_ID")
    rows = []
    for s in scripts:
        kernels = s.get("kernels") or []
        started = s.get("started_at")
        row = [
            str(s.get("script_path", "")),
            str(s.get("status", "")),
            str(s.get("replicas", len(kernels))),
            str(s.get("restarts", 0)),
            duration(now - float(started)) if started else "-",
            _number(_sum(kernels, "cpu_percent")),
            _number(_sum(kernels, "rss_mib", "rss_mb")),
        ]
        if rates:
            rate = s.get("error_rate")
            row += [
                _number(s.get("calls_per_s"), 2),
                "-" if rate is None else f"{float(rate) * 100:.1f}",
            ]
        if revisions:
            row.append(str(s.get("revision") or "-")[:12])
        row.append(str(s.get("script_id", "")))
        rows.append(row)
    out = table(header, rows)
    for s in scripts:
        if s.get("last_error"):
            error = str(s["last_error"]).strip().splitlines() or [""]
            out += f"\n{s.get('script_path')}: last error: {error[-1][:200]}"
    return out


def started_line(verb: str, answer: dict[str, Any]) -> str:
    """``started warehouse/a.py as warehouse/a.py_17324 (1 replica): 1 route, 1 function``"""
    replicas = int(answer.get("replicas", 1))
    text = (
        f"{verb} {answer.get('script_path')} as {answer.get('script_id')} "
        f"({replicas} replica{'s' if replicas != 1 else ''})"
    )
    regs = answer.get("registrations") or {}
    names = {
        "apis": "route",
        "functions": "function",
        "events": "listener",
        "timers": "timer",
        "websockets": "websocket",
        "tcp": "tcp server",
    }
    parts = []
    for key, name in names.items():
        items = regs.get(key) or []
        if items:
            parts.append(f"{len(items)} {name}{'s' if len(items) != 1 else ''}")
    return text + (": " + ", ".join(parts) if parts else "")


def log_line(record: dict[str, Any]) -> str:
    """``2026-11-25 18:44:09.123 INFO    warehouse/controller.py  warehouse: controller ready``"""
    ts = record.get("ts")
    try:
        stamp = datetime.fromtimestamp(float(ts))  # type: ignore[arg-type]
        when = stamp.isoformat(sep=" ", timespec="milliseconds")
    except (TypeError, ValueError, OverflowError, OSError):
        when = "-"
    script = script_path_of(record.get("script_id")) or "-"
    tag = record.get("tag") or record.get("source") or ""
    head = f"{when} {str(record.get('level', '')):<7} {script}  "
    return _printable(head + (f"{tag}: " if tag else "") + str(record.get("message", "")))


_CONTROLS = re.compile(r"\x1b\[[0-9;]*m|[\x00-\x08\x0b-\x1f\x7f]")


def _printable(text: str) -> str:
    """A log line without terminal controls (a script's text could set the clipboard or
    move the cursor: OSC 52, cursor moves); colour codes are dropped too."""
    return _CONTROLS.sub("", text)


def finding_line(path: str, finding: dict[str, Any]) -> str:
    """``path:line:col: severity CODE message`` (``path[cell N]:...`` in a notebook)."""
    where = f"{path}[cell {finding['cell']}]" if finding.get("cell") is not None else path
    return (
        f"{where}:{finding.get('line', 0)}:{finding.get('column', 0)}: "
        f"{finding.get('severity', 'error')} {finding.get('code', '')} {finding.get('message', '')}"
    )


def findings_summary(findings: list[dict[str, Any]]) -> str:
    errors = sum(1 for f in findings if f.get("severity") == "error")
    warnings = len(findings) - errors
    if not findings:
        return "no findings"
    return f"{errors} error{'s' if errors != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''}"


# -- script environments (vwed deps) ----------------------------------------------------
def size_text(size: Any) -> str:
    """``12.3 MB``, ``512 kB``, ``-``."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit in ("B", "kB") else f"{value:.1f} {unit}"
        value /= 1000
    return "-"


def packages_text(packages: Any) -> str:
    """``vwedtiny 2.0, vweddep 1.0`` from ``[[name, version], ...]`` (or ``none``)."""
    items = [f"{p[0]} {p[1]}" for p in packages or [] if isinstance(p, (list, tuple))]
    return ", ".join(items) if items else "none"


def environments_table(envs: list[dict[str, Any]], now: float | None = None) -> str:
    """``vwed deps ls``: one environment a row."""
    if not envs:
        return "no environments"
    now = time.time() if now is None else now
    rows = []
    for env in envs:
        last = env.get("last_used")
        rows.append(
            [
                str(env.get("lock") or "")[:12],
                str(env.get("status") or "-"),
                packages_text(env.get("packages")),
                size_text(env.get("size_bytes")),
                ", ".join(env.get("scripts") or []) or "-",
                f"{duration(now - float(last))} ago" if last else "-",
            ]
        )
    return table(["LOCK", "STATUS", "PACKAGES", "SIZE", "SCRIPTS", "LAST USED"], rows)
