"""The wall between the two packages: `kernel_gateway` never imports `vwed_kernel`, and
`vwed_kernel` never imports `kernel_gateway` (docs/protocol.md is all they share). The
`vwed` command line's package, `vwed_client`, is an outside client of the documented API:
it imports none of `kernel_gateway`, `vwed_kernel`, `vwed_lab`, and none of them imports it.

Checked statically (every import statement of every .py file of each package, at any
depth: inside functions, classes, `if TYPE_CHECKING:` and `try:` blocks; relative
imports resolved; `importlib.import_module("...")` and `__import__("...")` with a
constant name), and at run time in a fresh interpreter (importing one package's entry
modules leaves the other out of `sys.modules`).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# each package, and the packages it must not import
WALL: dict[str, tuple[str, ...]] = {
    "kernel_gateway": ("vwed_kernel", "vwed_client"),
    "vwed_kernel": ("kernel_gateway", "vwed_client"),
    "vwed_lab": ("vwed_client",),
    "vwed_client": ("kernel_gateway", "vwed_kernel", "vwed_lab"),
}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str | None, level: int, importer: str, is_package: bool) -> str:
    """The absolute name a (possibly relative) `from ... import` refers to."""
    if level == 0:
        return module or ""
    base = importer.split(".")
    # a module's level-1 parent is its package; a package's is itself
    drop = level - 1 if is_package else level
    base = base[: len(base) - drop] if drop else base
    return ".".join([*base, module] if module else base)


def imported_names(source: str, importer: str, is_package: bool = False) -> list[tuple[int, str]]:
    """Every (line, absolute module name) the source imports, at any depth."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node.module, node.level, importer, is_package)
            found.append((node.lineno, target))
            # `from . import x` may name a submodule: count `package.x` too
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            arg = node.args[0]
            if (
                name in ("import_module", "__import__")
                and isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
            ):
                found.append((node.lineno, arg.value))
    return found


def breaches(package: str, root: Path = ROOT) -> list[str]:
    """`file:line imports name` for each import of the other side of the wall."""
    out = []
    for path in sorted((root / package).rglob("*.py")):
        importer = _module_name(path, root)
        source = path.read_text(encoding="utf-8")
        for line, name in sorted(imported_names(source, importer, path.name == "__init__.py")):
            if any(name == other or name.startswith(other + ".") for other in WALL[package]):
                out.append(f"{path.relative_to(root)}:{line} imports {name}")
    return out


@pytest.mark.parametrize("package", sorted(WALL))
def test_no_module_imports_the_other_package(package):
    files = list((ROOT / package).rglob("*.py"))
    assert len(files) >= 4, f"found only {len(files)} files under {package}"
    assert breaches(package) == [], f"{package} imports one of {WALL[package]}"


def test_the_scanner_finds_imports_at_any_depth(tmp_path):
    """The check above can fail: a package that breaches the wall in every way it can."""
    pkg = tmp_path / "kernel_gateway"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "top.py").write_text("import vwed_kernel\n")
    (pkg / "sub" / "deep.py").write_text(
        textwrap.dedent(
            """
            from __future__ import annotations
            import json
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from vwed_kernel.vwed import VWED
            try:
                import vwed_kernel.bridge as b
            except ImportError:
                b = None
            def later():
                from vwed_kernel import modules
                import importlib
                return importlib.import_module("vwed_kernel.kernel"), __import__("vwed_kernel")
            class K:
                def m(self):
                    import os, vwed_kernel.calling
            from .. import top
            from . import deep
            """
        )
    )
    (pkg / "clean.py").write_text(
        "# vwed_kernel is named in a comment\nARGV = ['-m', 'vwed_kernel']\nimport vwed_kernelx\n"
    )
    found = breaches("kernel_gateway", tmp_path)
    assert found == [
        "kernel_gateway/sub/deep.py:6 imports vwed_kernel.vwed",
        "kernel_gateway/sub/deep.py:6 imports vwed_kernel.vwed.VWED",
        "kernel_gateway/sub/deep.py:8 imports vwed_kernel.bridge",
        "kernel_gateway/sub/deep.py:12 imports vwed_kernel",
        "kernel_gateway/sub/deep.py:12 imports vwed_kernel.modules",
        "kernel_gateway/sub/deep.py:14 imports vwed_kernel",
        "kernel_gateway/sub/deep.py:14 imports vwed_kernel.kernel",
        "kernel_gateway/sub/deep.py:17 imports vwed_kernel.calling",
        "kernel_gateway/top.py:1 imports vwed_kernel",
    ]


@pytest.mark.parametrize(
    ("importer", "is_package", "module", "level", "expected"),
    [
        ("kernel_gateway.openapi.logs", False, None, 1, "kernel_gateway.openapi"),
        ("kernel_gateway.openapi.logs", False, "schema", 1, "kernel_gateway.openapi.schema"),
        ("kernel_gateway.openapi.logs", False, None, 2, "kernel_gateway"),
        ("kernel_gateway.openapi", True, None, 2, "kernel_gateway"),
        ("kernel_gateway.openapi", True, "calls", 1, "kernel_gateway.openapi.calls"),
        ("kernel_gateway.app", False, "errors", 0, "errors"),
    ],
)
def test_relative_imports_resolve(importer, is_package, module, level, expected):
    assert _resolve(module, level, importer, is_package) == expected


_LOADED = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize(
    ("modules", "others"),
    [
        (["kernel_gateway.app", "kernel_gateway.openapi"], ("vwed_kernel", "vwed_client")),
        (
            ["vwed_kernel.kernel", "vwed_kernel.vwed", "vwed_kernel.cli"],
            ("kernel_gateway", "vwed_client"),
        ),
        (
            ["vwed_client.cli", "vwed_client.follow"],
            ("kernel_gateway", "vwed_kernel", "vwed_lab"),
        ),
    ],
)
def test_importing_one_package_leaves_the_other_unloaded(modules, others):
    done = subprocess.run(
        [sys.executable, "-c", _LOADED, *modules],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=True,
    )
    loaded = json.loads(done.stdout)
    assert set(modules) <= set(loaded)
    assert [m for m in loaded if m.split(".")[0] in others] == []
