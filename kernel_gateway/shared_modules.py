"""Shared modules: the scripts root is importable by scripts, replicas and steps.

The rule: ``common/utils.py`` under the scripts root is ``import common.utils``; a
folder is a package with or without ``__init__.py``. Kernels do not read the root
themselves (a kernel may run where the gateway's file system is not): the kernel's
meta-path finder (``vwed_kernel/importer.py``) asks the ``module.find`` service,
answered here with the module's source.

Security: a module name is dotted identifiers only, and its file is found through
``ScriptStore.resolve``, so it is confined to the scripts root after resolving
symlinks (a link pointing out is not importable), and held to the scripts' size limit.

The lookup also records, per kernel, which root modules the kernel loaded (and which
names it was told do not exist), with their file's signature: the step service asks
:meth:`SharedModules.stale` before each step, so a worker drops modules whose file
changed (docs/protocol.md, "Steps").
"""

from __future__ import annotations

import asyncio
import json
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BadRequest, GatewayError
from .kernels import ScriptKernel
from .scripts import ScriptStore

__all__ = ["SharedModules", "ModuleAnswer"]

MAX_NAME = 512
MAX_MISSING = 1024  # names a kernel was told are missing, kept to notice them appear

# What a file looked like when a kernel loaded it: None when it did not exist.
Signature = tuple[int, int, int] | None


def _signature(path: Path) -> Signature:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


@dataclass
class ModuleAnswer:
    """The answer for one name: found or not, and if found, where and what."""

    name: str
    found: bool
    origin: str = ""  # relative to the scripts root, with '/'
    file: str = ""  # absolute, on the gateway's file system ('' for a folder without init)
    is_package: bool = False
    source: str = ""
    reason: str = ""  # why a module that exists is refused (outside the root, too large)
    checked: Path | None = None  # the file whose change makes a loaded module stale

    def payload(self) -> dict[str, Any]:
        if not self.found:
            return {"found": False, "name": self.name, "reason": self.reason}
        return {
            "found": True,
            "name": self.name,
            "origin": self.origin,
            "file": self.file,
            "is_package": self.is_package,
            "source": self.source,
        }


@dataclass
class _Loaded:
    """What one kernel loaded from the root, and the names it was told are missing."""

    modules: dict[str, tuple[Path, Signature]] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)


class SharedModules:
    """Finds modules of the scripts root for kernels, and remembers what each loaded."""

    def __init__(self, store: ScriptStore) -> None:
        self.store = store
        self._loaded: weakref.WeakKeyDictionary[ScriptKernel, _Loaded] = weakref.WeakKeyDictionary()

    # -- the service ---------------------------------------------------------------------
    async def find(self, kernel: ScriptKernel, payload: dict[str, Any]) -> bytes:
        """``module.find``: ``{"name"}`` -> :meth:`ModuleAnswer.payload` as JSON."""
        name = payload.get("name")
        if not isinstance(name, str) or not name or len(name) > MAX_NAME:
            raise BadRequest("'name' must be a module name", "BAD_REQUEST")
        answer = await asyncio.to_thread(self.lookup, name)  # a slow disk never stalls the loop
        loaded = self._loaded.setdefault(kernel, _Loaded())
        if answer.found and answer.checked is not None:
            loaded.modules[name] = (answer.checked, _signature(answer.checked))
            loaded.missing.discard(name)
        elif not answer.reason and len(loaded.missing) < MAX_MISSING:
            loaded.missing.add(name)
        return json.dumps(answer.payload()).encode()

    def lookup(self, name: str) -> ModuleAnswer:
        """The answer for ``name``, with the module's source when it is found."""
        try:
            kind, path = self._where(name)
        except GatewayError as exc:  # PathInvalid: a link out of the root, a loop
            return ModuleAnswer(name, False, reason=exc.message)
        if path is None:
            return ModuleAnswer(name, False, reason=kind)
        if kind == "folder":
            return ModuleAnswer(
                name,
                True,
                origin=self.store.relative(path),
                is_package=True,
                checked=path / "__init__.py",
            )
        return self._read(name, path, is_package=kind == "package")

    def _where(self, name: str) -> tuple[str, Path | None]:
        """Where ``name`` is under the root, the way Python's path finder looks: a
        folder with ``__init__.py`` (``package``), then ``name.py`` (``module``), then a
        folder without init (``folder``). Not there: ``("", None)``; not a module
        name: ``(reason, None)``; a path leaving the root raises ``PathInvalid``."""
        parts = name.split(".")
        if not all(p.isidentifier() for p in parts):
            return f"{name!r} is not a module name", None
        rel = "/".join(parts)
        init = self._file(f"{rel}/__init__.py")
        if init is not None:
            return "package", init
        module = self._file(f"{rel}.py")
        if module is not None:
            return "module", module
        candidate = self.store.root.joinpath(*parts)
        if candidate.is_dir() or candidate.is_symlink():
            folder = self.store.resolve(rel)
            if folder.is_dir():
                return "folder", folder
        return "", None

    def _file(self, rel: str) -> Path | None:
        """The resolved file for ``rel`` if it exists (raises if a link leaves the root)."""
        candidate = self.store.root.joinpath(*rel.split("/"))
        if not candidate.exists() and not candidate.is_symlink():
            return None  # the common case, without resolve's checks
        path = self.store.resolve(rel)
        return path if path.is_file() else None

    def _read(self, name: str, path: Path, *, is_package: bool) -> ModuleAnswer:
        origin = self.store.relative(path)
        size = path.stat().st_size
        if size > self.store.max_file_size:
            return ModuleAnswer(
                name,
                False,
                reason=f"{origin} is larger than {self.store.max_file_size} bytes",
            )
        try:
            source = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return ModuleAnswer(name, False, reason=f"{origin} cannot be read: {exc}")
        return ModuleAnswer(
            name,
            True,
            origin=origin,
            file=str(path),
            is_package=is_package,
            source=source,
            checked=path,
        )

    # -- what kernels loaded -------------------------------------------------------------
    def stale(self, kernel: ScriptKernel) -> dict[str, list[str]]:
        """What ``kernel`` holds that no longer matches the root: ``modules`` whose file
        changed or went away, ``missing`` names that now exist. Empty lists: nothing."""
        loaded = self._loaded.get(kernel)
        if loaded is None:
            return {"modules": [], "missing": []}
        changed = [
            name
            for name, (path, signature) in loaded.modules.items()
            if _signature(path) != signature
        ]
        appeared = [name for name in loaded.missing if self._exists(name)]
        return {"modules": sorted(changed), "missing": sorted(appeared)}

    def _exists(self, name: str) -> bool:
        try:
            return self._where(name)[1] is not None
        except GatewayError:
            return False

    def forget(self, kernel: ScriptKernel, missing: list[str]) -> None:
        """``kernel`` dropped every root module it had, and the ``missing`` names."""
        loaded = self._loaded.get(kernel)
        if loaded is not None:
            loaded.modules.clear()
            loaded.missing.difference_update(missing)
