"""``POST /script-engine/check``: the code check of a script file, or of a text."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..check import Cell, analyse, notebook_cells, taken
from ..engine import ScriptEngine
from ..errors import BadRequest, PayloadTooLarge
from .base import JSONHandler

__all__ = ["CheckHandler"]


class CheckHandler(JSONHandler):
    """Body ``{"script_path"}`` (the file on disk) or ``{"content", "script_path"?,
    "notebook"?}``; answers ``{"ok", "findings", "duration_ms"}``."""

    engine: ScriptEngine

    async def post(self) -> None:
        body = self.json_body()
        began = time.perf_counter()
        path, content, notebook = self._fields(body)
        store = self.engine.files
        rel = None
        if path is not None:
            if content is None:
                rel = store.stat(path).path  # 404 SCRIPT_NOT_FOUND; confined
                content = store.read(rel)["content"]  # 413 FILE_TOO_LARGE
            else:
                rel = store.relative(store.resolve(path))  # confined; need not exist
        assert content is not None
        if len(content.encode("utf-8", "surrogatepass")) > store.max_file_size:
            raise PayloadTooLarge(
                f"content is larger than {store.max_file_size} bytes", "FILE_TOO_LARGE"
            )
        if notebook is None:
            notebook = rel is not None and rel.endswith(".ipynb")
        cells = notebook_cells(content) if notebook else [Cell(content)]
        # The code itself off the event loop (a big file takes a while); the running
        # scripts' registrations on it.
        analysis = await asyncio.get_running_loop().run_in_executor(None, analyse, cells)
        findings = analysis.findings + taken(
            analysis.registrations, self.engine.registry, self._path_of, rel
        )
        findings.sort(key=lambda f: (-1 if f.cell is None else f.cell, f.line, f.column))
        self.send_json(
            {
                "ok": not any(f.severity == "error" for f in findings),
                "findings": [f.to_json() for f in findings],
                "duration_ms": round((time.perf_counter() - began) * 1000, 3),
            }
        )

    def _path_of(self, script_id: str) -> str | None:
        script = self.engine.scripts.lookup(script_id)
        return None if script is None else script.path

    @staticmethod
    def _fields(body: dict[str, Any]) -> tuple[str | None, str | None, bool | None]:
        path, content, notebook = body.get("script_path"), body.get("content"), body.get("notebook")
        if path is None and content is None:
            raise BadRequest("give 'script_path' or 'content'", "MISSING_FIELD")
        if path is not None and (not isinstance(path, str) or not path):
            raise BadRequest("'script_path' must be a path under the scripts root", "BAD_REQUEST")
        if content is not None and not isinstance(content, str):
            raise BadRequest("'content' must be a string", "BAD_REQUEST")
        if notebook is not None and not isinstance(notebook, bool):
            raise BadRequest("'notebook' must be true or false", "BAD_REQUEST")
        unknown = set(body) - {"script_path", "content", "notebook"}
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}", "BAD_REQUEST")
        return path, content, notebook
