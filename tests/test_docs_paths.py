"""The docs name only modules, files and classes that exist (issue 13, item 8), so a
move or a rename cannot leave them stale silently:

- every ``kernel_gateway/...`` / ``vwed_kernel/...`` path and every dotted
  ``kernel_gateway.x`` / ``vwed_kernel.x`` module written in README.md and docs/*.md exists;
- in docs/architecture.md, every file or folder in backticks (relative to the repository or
  to one of the two packages) exists, and every ``Class`` or ``Class.member`` in backticks is
  a class of the two packages with that member.

Pure reading of files: no gateway, no kernel.
"""

from __future__ import annotations

import ast
import builtins
import re
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("kernel_gateway", "vwed_kernel", "vwed_lab")
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
ARCHITECTURE = REPO / "docs" / "architecture.md"

_PATH = re.compile(r"\b(?:kernel_gateway|vwed_kernel|vwed_lab)/[A-Za-z0-9_./*-]*")
_DOTTED = re.compile(r"\b(?:kernel_gateway|vwed_kernel|vwed_lab)(?:\.[a-z_][a-z0-9_]*)+(?![\w/-])")
_FILE_SUFFIXES = (".json", ".py", ".md", ".toml", ".png")
_CODE = re.compile(r"`([^`\n]+)`")
_NAME = re.compile(r"[A-Z][A-Za-z0-9]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?")
# Capitalised words in backticks that are not classes: HTTP header names.
_HEADERS = {"Allow", "Host", "Origin"}


def _exists(relative: str, *roots: Path) -> bool:
    relative = relative.rstrip("/")
    for root in roots:
        if "*" in relative:
            if any(root.glob(relative)):
                return True
        elif (root / relative).exists():
            return True
    return False


def _module_exists(dotted: str) -> bool:
    path = REPO / dotted.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_package_paths_in_docs_exist(doc: Path):
    text = doc.read_text()
    missing = [p for p in {m.rstrip(".,:;)") for m in _PATH.findall(text)} if not _exists(p, REPO)]
    missing += [
        m
        for m in set(_DOTTED.findall(text))
        if not m.endswith(_FILE_SUFFIXES) and not _module_exists(m)
    ]
    assert not missing, f"{doc.name} names what does not exist: {sorted(missing)}"


def test_files_named_in_architecture_exist():
    roots = (REPO, *(REPO / p for p in PACKAGES))
    named = {
        code
        for code in _CODE.findall(ARCHITECTURE.read_text())
        if " " not in code
        and not code.startswith("/")  # a URL (`/script-api/*`)
        and code.endswith((".py", "/", "/*"))
    }
    assert len(named) > 50, "the module tables were not found"
    missing = sorted(n for n in named if not _exists(n, *roots))
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"


@cache
def _classes() -> dict[str, set[str]]:
    """Class name -> the names defined in it (methods, class attributes, ``self.x = ...``),
    over every class of that name in the two packages."""
    classes: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.ClassDef):
                    continue
                members = classes.setdefault(node.name, set())
                for item in ast.walk(node):
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        members.add(item.name)
                    elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        members.add(item.target.id)
                    elif isinstance(item, (ast.Assign, ast.AnnAssign)):
                        targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                        for target in targets:
                            if isinstance(target, ast.Name):
                                members.add(target.id)
                            elif isinstance(target, ast.Attribute) and (
                                isinstance(target.value, ast.Name) and target.value.id == "self"
                            ):
                                members.add(target.attr)
    return classes


def test_classes_and_members_named_in_architecture_exist():
    classes = _classes()
    checked, missing = 0, []
    for code in set(_CODE.findall(ARCHITECTURE.read_text())):
        if not _NAME.fullmatch(code) or code in _HEADERS:
            continue
        name, _, member = code.partition(".")
        if name not in classes:
            if name.isupper() or hasattr(builtins, name):
                continue  # a constant (ROUTES, OPTIONS) or a builtin exception
            missing.append(code)
            continue
        checked += 1
        if member and member not in classes[name]:
            missing.append(code)
    assert checked > 50, "the class names were not found"
    assert not missing, f"docs/architecture.md names what the code does not have: {missing}"


def test_the_checks_can_fail(tmp_path: Path):
    """The patterns find a stale path, module and class (the checks are not vacuous)."""
    text = "see `kernel_gateway/engine.py`, kernel_gateway.routing_old and `CallRouter.gone`"
    assert _PATH.findall(text) == ["kernel_gateway/engine.py"]
    assert not _exists("kernel_gateway/engine.py", REPO)
    assert _exists("kernel_gateway/engine/", REPO) and _exists("handlers/*", REPO / PACKAGES[0])
    assert _DOTTED.findall(text) == ["kernel_gateway.routing_old"]
    assert not _module_exists("kernel_gateway.routing_old")
    assert _module_exists("kernel_gateway.openapi") and _module_exists("vwed_kernel.launch")
    assert "CallRouter.gone" in _CODE.findall(text) and _NAME.fullmatch("CallRouter.gone")
    assert "gone" not in _classes()["CallRouter"] and "call_route" in _classes()["CallRouter"]
