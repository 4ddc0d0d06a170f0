"""The routes and functions a script's code claims with literal arguments, and which
of them another running script owns now (the code check's ``ROUTE_TAKEN`` and
``FUNCTION_TAKEN``, ``check.py``).

Found by walking the AST for ``VWED.api.register_route(path, method="GET", ...)``,
``@VWED.api.route(path, methods=("GET",))``, ``VWED.api.register_websocket(path, ...)``
and ``VWED.function.register(name, ...)`` (and their decorator forms), with the
defaults of ``vwed_kernel/modules/api.py`` and ``function.py``; an argument that is
not a literal is skipped. Owners come from ``Registry.conflicts``, the rule a boot's
commit applies.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import BadRequest
from .registrations import parse_registrations
from .registry import Registry

__all__ = ["Registration", "literal_registrations", "owned_elsewhere"]


@dataclass(frozen=True)
class Registration:
    """A literal registration found in the code: ``kind`` is ``api`` (``name`` is
    ``"METHOD /path"``), ``function`` or ``websocket``; ``item`` is what the kernel
    would send for it (``registrations.parse_registrations``' shape)."""

    kind: str
    name: str
    item: dict[str, Any]
    line: int
    column: int
    end_line: int | None
    end_column: int | None
    cell: int | None


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _arg(call: ast.Call, pos: int, name: str) -> ast.AST | None:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    if pos < len(call.args) and not any(isinstance(a, ast.Starred) for a in call.args[: pos + 1]):
        return call.args[pos]
    return None


def _text(node: ast.AST | None, default: str | None = None) -> str | None:
    """A literal string argument; ``default`` when absent; ``None`` when not literal."""
    if node is None:
        return default
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _methods(node: ast.AST | None) -> list[str] | None:
    if node is None:
        return ["GET"]
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        found = [_text(e) for e in node.elts]
        return None if any(m is None for m in found) else [m for m in found if m]
    one = _text(node)
    return None if one is None else [one]


def literal_registrations(tree: ast.Module, cell: int | None) -> list[Registration]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        target = _dotted(node.func)
        items: list[tuple[str, str, dict[str, Any]]] = []
        if target == "VWED.api.register_route":
            path, method = _text(_arg(node, 0, "path")), _text(_arg(node, 1, "method"), "GET")
            if path is not None and method is not None:
                items.append(("api", "", {"path": path, "method": method.strip().upper()}))
        elif target == "VWED.api.route":
            path, methods = _text(_arg(node, 0, "path")), _methods(_arg(node, 1, "methods"))
            if path is not None and methods is not None:
                items += [("api", "", {"path": path, "method": m.strip().upper()}) for m in methods]
        elif target == "VWED.function.register":
            name = _text(_arg(node, 0, "name"))
            if name:
                items.append(("function", name, {"name": name}))
        elif target == "VWED.api.register_websocket":
            path = _text(_arg(node, 0, "path"))
            if path is not None:
                items.append(("websocket", path, {"path": path}))
        for kind, name, item in items:
            if kind == "api":
                name = f"{item['method']} {item['path']}"
            found.append(
                Registration(
                    kind,
                    name,
                    item,
                    node.lineno,
                    node.col_offset + 1,
                    node.end_lineno,
                    None if node.end_col_offset is None else node.end_col_offset + 1,
                    cell,
                )
            )
    return found


def owned_elsewhere(
    registrations: list[Registration],
    registry: Registry,
    path_of: Callable[[str], str | None],
    own_path: str | None,
) -> list[tuple[Registration, str]]:
    """Each literal registration that a running script of another path than
    ``own_path`` owns now, with that script's path (``path_of`` maps a script id to
    its path; its id when it has none). Reads the live routing table: on the loop."""
    found = []
    for reg in registrations:
        key = "apis" if reg.kind == "api" else reg.kind + "s"
        try:
            regs = parse_registrations("", {key: [reg.item]})
        except BadRequest:  # not a valid method or name: the kernel will say so at boot
            continue
        for clash in registry.conflicts("", regs):
            owner = path_of(clash["owner"]) or clash["owner"]
            if owner != own_path:
                found.append((reg, owner))
    return found
