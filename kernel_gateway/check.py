"""The code check of a script: syntax errors, pyflakes' findings, a missing ``boot``,
and the routes and functions it registers with literal arguments (``claims.py``),
compared with the running scripts' by :func:`taken`.

A script runs in IPython, one cell at a time, each through IPython's input
transformer: ``%magic`` and ``!cmd`` lines are legal. So every cell is compiled on
its own (a syntax error is that cell's): as it is if it parses as Python, else
after ``TransformerManager`` (lines keep their numbers); the cells that compile are
checked together by pyflakes as one module (a name defined in cell 1 is known in
cell 2). ``VWED`` and the names IPython puts in builtins are known names.

All but :func:`taken` are pure functions of the text: safe to run off the event loop.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nbformat
from IPython.core.inputtransformer2 import TransformerManager, leading_empty_lines
from pyflakes import checker, messages

from .claims import Registration, literal_registrations, owned_elsewhere
from .errors import BadRequest, ScriptError
from .registry import Registry
from .scripts import SKIP_TAG, ScriptSource

__all__ = [
    "Cell",
    "Finding",
    "Registration",
    "Analysis",
    "analyse",
    "compiles",
    "notebook_cells",
    "require_compiles",
    "syntax_findings",
    "taken",
]

# Names a script may use without defining them: the VWED object and what IPython
# puts in builtins (get_ipython is also what a transformed %magic line calls).
KNOWN_NAMES = frozenset({"VWED", "get_ipython", "display", "exit", "quit", "In", "Out"})
ERRORS = (messages.UndefinedName,)
_CODES: dict[type, str] = {
    messages.UndefinedName: "UNDEFINED_NAME",
    messages.UnusedImport: "UNUSED_IMPORT",
}


@dataclass(frozen=True)
class Cell:
    """One piece of code run at once: the whole ``.py``, or one notebook code cell
    (``index``: its place in the notebook's ``cells``, ``None`` for a ``.py``)."""

    source: str
    index: int | None = None


@dataclass
class Finding:
    line: int  # 1-based, in the author's text (of the cell, for a notebook)
    column: int  # 1-based
    severity: str  # "error" | "warning"
    code: str
    message: str
    end_line: int | None = None
    end_column: int | None = None
    cell: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"line": self.line, "column": self.column}
        if self.end_line is not None:
            out["end_line"] = self.end_line
        if self.end_column is not None:
            out["end_column"] = self.end_column
        if self.cell is not None:
            out["cell"] = self.cell
        out.update(severity=self.severity, code=self.code, message=self.message)
        return out


@dataclass
class Analysis:
    findings: list[Finding] = field(default_factory=list)
    registrations: list[Registration] = field(default_factory=list)

    def has(self, code: str) -> bool:
        return any(f.code == code for f in self.findings)


class _Checker(checker.Checker):  # type: ignore[misc]
    """pyflakes, with IPython's top-level ``await`` (autoawait) legal: pyflakes would
    report it and skip the names in it (an import used only there looked unused)."""

    def AWAIT(self, node: ast.Await) -> None:  # noqa: N802 (pyflakes' handler names)
        self.handleChildren(node)


# -- cells ---------------------------------------------------------------------------
def notebook_cells(text: str, *, include_skipped: bool = True) -> list[Cell]:
    """The code cells of a notebook's text (400 ``NOTEBOOK_INVALID`` if it is not one)."""
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as exc:
        raise BadRequest(f"content is not a valid notebook: {exc}", "NOTEBOOK_INVALID") from exc
    cells = []
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code" or not c.source.strip():
            continue
        if not include_skipped and SKIP_TAG in (c.get("metadata", {}).get("tags") or []):
            continue
        cells.append(Cell(c.source, i))
    return cells


_transformer = TransformerManager()
# Keep leading empty lines: line numbers stay those of the author's text.
_transformer.cleanup_transforms = [
    t for t in _transformer.cleanup_transforms if t is not leading_empty_lines
]


def _transform(source: str) -> str:
    """IPython's view of a cell as Python (``%magic`` -> ``get_ipython()...``)."""
    try:
        return _transformer.transform_cell(source)
    except Exception:  # IPython could not transform it: compile what the author wrote
        return source


def _parse(code: str) -> ast.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SyntaxWarning (e.g. "\d") is not ours to print
        return ast.parse(code, filename="<script>")


def _compile(cell: Cell) -> tuple[ast.Module | None, Finding | None]:
    # IPython's syntax (%magic, !cmd, x?, prompts, an indented cell) is never valid
    # Python: plain Python is parsed as it is (the transformer takes seconds on a
    # large file); only what does not parse goes through the transformer.
    try:
        return _parse(cell.source), None
    except SyntaxError:
        pass
    try:
        return _parse(_transform(cell.source)), None
    except SyntaxError as exc:
        line = exc.lineno or 1
        column = exc.offset or 1
        end_line = getattr(exc, "end_lineno", None)
        end_col = getattr(exc, "end_offset", None)
        if end_line is not None and end_col is not None and (end_line, end_col) <= (line, column):
            end_line = end_col = None
        message = exc.msg
        if isinstance(exc, IndentationError) and "indent" not in message:
            message = f"indentation: {message}"
        return None, Finding(
            line, max(column, 1), "error", "SYNTAX_ERROR", message, end_line, end_col, cell.index
        )


def syntax_findings(cells: list[Cell]) -> list[Finding]:
    """Only the syntax errors (what blocks a start)."""
    return [f for f in (_compile(c)[1] for c in cells) if f is not None]


# the sources that compiled (a digest of their cells): the start of a file that did not
# change checks nothing again, and takes no thread for it
_COMPILED: OrderedDict[bytes, None] = OrderedDict()
COMPILED_KEPT = 256


# a source this small compiles on the event loop (about 0.6 ms a KiB here, so 1.3 at most):
# a thread's handoff costs more, and waits for the interpreter lock behind a start's
# commit (repo/fastcommit.py) running in another thread
INLINE_COMPILE = 2048


async def compiles(source: ScriptSource) -> None:
    """:func:`require_compiles` (off the event loop for a large file); a source that
    compiled before is not checked again."""
    text = "\x00".join(source.cells)
    digest = hashlib.sha256(text.encode("utf-8", "replace")).digest()
    if digest in _COMPILED:
        _COMPILED.move_to_end(digest)
        return
    if len(text) <= INLINE_COMPILE:
        require_compiles(source)
    else:
        await asyncio.get_running_loop().run_in_executor(None, require_compiles, source)
    _COMPILED[digest] = None
    while len(_COMPILED) > COMPILED_KEPT:
        _COMPILED.popitem(last=False)


def require_compiles(source: ScriptSource) -> None:
    """422 ``SYNTAX_ERROR`` (with ``details.findings``) unless every cell of ``source``
    compiles: asked before a start, restart or reload takes any kernel."""
    indexes: list[int | None] = list(source.indexes) or [None] * len(source.cells)
    found = syntax_findings([Cell(s, i) for s, i in zip(source.cells, indexes, strict=True)])
    if not found:
        return
    first = found[0]
    where = f"cell {first.cell}, " if first.cell is not None else ""
    raise ScriptError(
        f"{source.path}: {where}line {first.line}, column {first.column}: {first.message}",
        "SYNTAX_ERROR",
        details={"script_path": source.path, "findings": [f.to_json() for f in found]},
    )


# -- the whole check -----------------------------------------------------------------
def analyse(cells: list[Cell]) -> Analysis:
    """Every finding of the code itself, and its literal registrations."""
    result = Analysis()
    trees: list[tuple[Cell, ast.Module]] = []
    for cell in cells:
        tree, error = _compile(cell)
        if error is not None:
            result.findings.append(error)
        elif tree is not None:
            trees.append((cell, tree))
    for cell, tree in trees:
        result.registrations += literal_registrations(tree, cell.index)
    if not any(_defines_boot(tree) for _, tree in trees) and not result.has("SYNTAX_ERROR"):
        result.findings.append(
            Finding(
                1,
                1,
                "warning",
                "NO_BOOT",
                "no top-level 'def boot()': the script registers nothing when started",
                cell=cells[0].index if cells else None,
            )
        )
    result.findings += _pyflakes(trees)  # last: it shifts the trees' line numbers
    result.findings.sort(key=_order)
    return result


def _order(f: Finding) -> tuple[int, int, int]:
    return (-1 if f.cell is None else f.cell, f.line, f.column)


def _pyflakes(trees: list[tuple[Cell, ast.Module]]) -> list[Finding]:
    """pyflakes over the cells as one module; each message back to its cell and line."""
    if not trees:
        return []
    # One module: the cells' statements in order, their line numbers shifted so that
    # each is unique, then mapped back.
    body: list[ast.stmt] = []
    starts: list[tuple[int, Cell]] = []
    offset = 0
    for cell, tree in trees:
        if offset:
            ast.increment_lineno(tree, offset)
        starts.append((offset, cell))
        body.extend(tree.body)
        offset += max(_last_line(tree), cell.source.count("\n") + 1) + 1
    module = ast.Module(body=body, type_ignores=[])
    flakes = _Checker(module, filename="<script>", builtins=set(KNOWN_NAMES))
    found = []
    for msg in flakes.messages:
        line = int(getattr(msg, "lineno", 1) or 1)
        start, cell = max((s for s in starts if s[0] < line), key=lambda s: s[0], default=starts[0])
        name = type(msg)
        code = _CODES.get(name, "PYFLAKES_" + name.__name__.upper())
        found.append(
            Finding(
                line - start,
                int(getattr(msg, "col", 0) or 0) + 1,
                "error" if issubclass(name, ERRORS) else "warning",
                code,
                msg.message % msg.message_args,
                cell=cell.index,
            )
        )
    return found


def _last_line(tree: ast.Module) -> int:
    return max((getattr(n, "end_lineno", 0) or 0 for n in ast.walk(tree)), default=0)


def _defines_boot(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "boot":
            return True
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "boot" for t in targets):
                return True
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if any((a.asname or a.name) == "boot" for a in node.names):
                return True
    return False


# -- against the running scripts -----------------------------------------------------
def taken(
    registrations: list[Registration],
    registry: Registry,
    path_of: Callable[[str], str | None],
    own_path: str | None,
) -> list[Finding]:
    """``ROUTE_TAKEN`` / ``FUNCTION_TAKEN``: a literal registration that another running
    script (another path than ``own_path``) owns now (``claims.py``)."""
    found = []
    for reg, owner in owned_elsewhere(registrations, registry, path_of, own_path):
        what = {"api": "route", "function": "function", "websocket": "WebSocket"}[reg.kind]
        found.append(
            Finding(
                reg.line,
                reg.column,
                "error",
                "FUNCTION_TAKEN" if reg.kind == "function" else "ROUTE_TAKEN",
                f"{what} {reg.name!r} is already registered by the running script {owner}",
                reg.end_line,
                reg.end_column,
                reg.cell,
            )
        )
    return found
