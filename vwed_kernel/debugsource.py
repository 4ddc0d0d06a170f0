"""The script's own files as the Jupyter debugger sees them (docs/debugging.md).

The gateway runs a script's code as ``execute_request``s (one per ``.py`` file, one
per code cell of a ``.ipynb``). ipykernel compiles every cell under the name its
debugger gives that exact text, ``<tmp>/ipykernel_<pid>/<murmur2 of the text>.py``,
and JupyterLab's debugger computes the same name for the text of a file editor or
a notebook cell (``dumpCell``, or ``debugInfo``'s hash seed and prefix). So a
breakpoint clicked in ``warehouse/controller.py`` opened in JupyterLab names the
code objects the script compiled when it booted, hours before the debugger
attached, as long as their line numbers are the file's: IPython drops a cell's
leading empty lines (ipykernel's debugger turns that off only while it runs), so
this kernel keeps them, always.

What this module adds:

- it records which cells were the script's own (those run between ``prepare`` and
  ``boot``) under the script's name;
- the debugger's Kernel Sources panel (the ``modules`` request) lists them under
  that name, and opening one works without a file editor (``source`` is answered
  from memory; the files are also written where the debugger expects them when it
  starts, so debugpy and JupyterLab find them on disk); modules of the scripts root
  (``importer.py``: compiled under their real path) are listed by ipykernel itself,
  and ``source`` answers them from ``linecache`` where the file is not on disk;
- tracebacks name the script (IPython's ``File <path>, line N`` instead of
  ``Cell In[0]``, and ``readable_traceback`` for the tracebacks a call returns).

The trade-off: a code object's ``co_filename`` stays the debugger's name, because
that is what breakpoints and stack frames match on (debugpy has no per-file
mapping from a hashed name to a real path); people see the real path where this
module can put it (tracebacks, the Kernel Sources panel, the ``name`` of a stack
frame's source), and the debugger's Call Stack shows the hashed path.

Threads: cells are recorded on the kernel's main thread; debug requests are
answered on the control thread. The table is replaced, never mutated in place,
under a lock.
"""

from __future__ import annotations

import contextlib
import linecache
import os
import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["ScriptFile", "ScriptSources", "readable_traceback"]


@dataclass(frozen=True)
class ScriptFile:
    """One piece of the script's source as the debugger names it."""

    code_name: str  # the debugger's name of the text (the code objects' co_filename)
    name: str  # what people see: "warehouse/controller.py" or "flow.ipynb [code cell 2]"
    real: str  # the same, with the script's absolute path (tracebacks)
    text: str


class ScriptSources:
    """The script's cells, by the name the debugger gives them (one per kernel)."""

    def __init__(self, shell: Any) -> None:
        self._shell = shell
        self._lock = threading.Lock()
        self._files: dict[str, ScriptFile] = {}
        self._loading: tuple[str, str] | None = None  # (name, absolute path) while loading
        self._cells = 0

    def install(self) -> None:
        """Keep the source's line numbers, record the script's cells, name them in
        IPython's tracebacks."""
        from IPython.core.inputtransformer2 import leading_empty_lines

        cleanup = self._shell.input_transformer_manager.cleanup_transforms
        if leading_empty_lines in cleanup:
            cleanup.remove(leading_empty_lines)
        self._shell.events.register("pre_run_cell", self._pre_run_cell)
        compiler = self._shell.compile
        default = compiler.format_code_name

        def format_code_name(name: str) -> tuple[str, str] | None:
            found = self._files.get(name)
            return ("File", found.real) if found is not None else default(name)

        compiler.format_code_name = format_code_name

    # -- loading (main thread) -----------------------------------------------------------
    def begin(self, name: str, real: str) -> None:
        """The script's cells come next (the ``prepare`` op)."""
        with self._lock:
            self._files = {}
            self._loading = (name, real)
            self._cells = 0

    def end(self) -> None:
        """The script's code has run (the ``boot`` op): later cells are not the script's."""
        self._loading = None

    def _pre_run_cell(self, info: Any) -> None:
        loading = self._loading
        raw = getattr(info, "raw_cell", None)
        if loading is None or not isinstance(raw, str):
            return
        name, real = loading
        self._cells += 1
        if name.endswith(".ipynb"):
            label = f" [code cell {self._cells}]"
            name, real = name + label, real + label
        code_name = self._shell.compile.get_code_name(raw, raw, 0)
        with self._lock:
            files = dict(self._files)
            files[code_name] = ScriptFile(code_name, name, real, raw)
            self._files = files

    # -- lookups (any thread) --------------------------------------------------------------
    def files(self) -> list[ScriptFile]:
        return list(self._files.values())

    def get(self, code_name: str) -> ScriptFile | None:
        return self._files.get(code_name)

    # -- the debugger (control thread) ---------------------------------------------------
    def on_debug_reply(self, request: dict[str, Any], reply: Any) -> Any:
        """Adjust ipykernel's answer to a debug request (Debug Adapter Protocol)."""
        if not isinstance(reply, dict):
            return reply
        command = request.get("command")
        if command == "initialize" and reply.get("success"):
            self.write_files()
        elif command == "modules":
            body = reply.setdefault("body", {})
            ours = [{"id": f.code_name, "name": f.name, "path": f.code_name} for f in self.files()]
            body["modules"] = ours + list(body.get("modules") or [])
            body["totalModules"] = int(body.get("totalModules") or 0) + len(ours)
        elif command == "source" and not reply.get("success"):
            path = ((request.get("arguments") or {}).get("source") or {}).get("path", "")
            found = self.get(str(path))
            # a script's cell, or a module of the scripts root (importer.py keeps its
            # lines in linecache: the file may not be on this machine's disk)
            cached: Any = linecache.cache.get(str(path))
            text = found.text if found is not None else "".join(cached[2]) if cached else None
            if text is not None:
                reply.update(success=True, body={"content": text})
                reply.pop("message", None)
        elif command == "stackTrace" and reply.get("success"):
            for frame in (reply.get("body") or {}).get("stackFrames") or []:
                source = frame.get("source") or {}
                found = self.get(str(source.get("path", "")))
                if found is not None:
                    source["name"] = found.name
        return reply

    def write_files(self) -> None:
        """Write each cell where the debugger expects its text (as ``dumpCell`` does)."""
        for f in self.files():
            with contextlib.suppress(OSError):
                os.makedirs(os.path.dirname(f.code_name), mode=0o700, exist_ok=True)
                try:
                    with open(f.code_name, encoding="utf-8") as existing:
                        if existing.read() == f.text:
                            continue
                except OSError:
                    pass
                with open(f.code_name, "w", encoding="utf-8") as out:
                    out.write(f.text)


def readable_traceback(text: str) -> str:
    """A formatted traceback with the script's cells named by the script's path."""
    sources = _current_sources()
    if sources is None:
        return text
    for f in sources.files():
        text = text.replace(f'File "{f.code_name}"', f'File "{f.real}"')
    return text


def _current_sources() -> ScriptSources | None:
    try:
        from IPython.core.getipython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency of the kernel
        return None
    shell = get_ipython()
    kernel = getattr(shell, "kernel", None)
    sources = getattr(kernel, "vwed_sources", None)
    return sources if isinstance(sources, ScriptSources) else None
