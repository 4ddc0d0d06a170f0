"""Shared modules: the scripts root is importable (``common/utils.py`` is
``import common.utils``), loaded through the gateway rather than from a path.

A kernel may run where the gateway's file system is not (a remote provisioner), so
the root is not put on ``sys.path``: a meta-path finder, last in ``sys.meta_path``,
asks the gateway's ``module.find`` service over the comm for names no other finder
knows, and loads the source it answers. A module's ``__file__`` and code filename
are its path under the scripts root on the gateway, so tracebacks and the debugger
name the file; its lines are put in ``linecache`` (a traceback shows them even where
the file is not on disk).

Answers: a missing name is remembered for the kernel's life (an optional import
asks once); a step worker is told by the gateway to forget it when it appears, and
to drop the root modules it loaded when one changed (``drop``, called by
``steps.StepRunner``). A kernel without a gateway (plain JupyterLab, ``VWED``
detached) does not find them, and asks again once a gateway attaches.

Threads: ``find_spec`` runs on the importing thread and waits for the answer; it
asks only where ``GatewayLink.can_request`` says a wait can be answered (not on the
service subshell's thread, which delivers the answers).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import linecache
import sys
import threading
import types
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from .errors import GatewayUnavailableError, RemoteCallError

__all__ = ["RootModuleFinder", "RootModuleLoader", "install", "drop"]

SERVICE = "module.find"
TIMEOUT = 15.0


class _Link(Protocol):
    def can_request(self) -> bool: ...

    def request(
        self, service: str, payload: dict[str, Any], timeout: float | None = None
    ) -> Any: ...


class RootModuleLoader(importlib.abc.InspectLoader):
    """Loads one module of the scripts root from the source the gateway sent."""

    def __init__(self, name: str, file: str, source: str, is_package: bool) -> None:
        self.name = name
        self.file = file
        self.source = source
        self.package = is_package

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None  # the default module object

    def exec_module(self, module: types.ModuleType) -> None:
        if self.file:
            lines = self.source.splitlines(keepends=True)
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
            # mtime None: linecache.checkcache keeps it (the file may not be on disk here)
            linecache.cache[self.file] = (len(self.source), None, lines, self.file)
        code = self.get_code(self.name)
        exec(code, module.__dict__)  # noqa: S102 - a module of the scripts root, like a script

    def get_code(self, fullname: str) -> types.CodeType:
        filename = self.file or f"<vwed module {self.name}>"
        return compile(self.source, filename, "exec", dont_inherit=True)

    def get_source(self, fullname: str) -> str:
        return self.source

    def is_package(self, fullname: str) -> bool:
        return self.package

    def get_filename(self, fullname: str) -> str:
        if not self.file:
            raise ImportError(f"{fullname} is a folder without __init__.py", name=fullname)
        return self.file


class RootModuleFinder(importlib.abc.MetaPathFinder):
    """Finds modules of the scripts root by asking the gateway (see the module doc)."""

    def __init__(self, link: _Link, timeout: float = TIMEOUT) -> None:
        self._link = link
        self._timeout = timeout
        self._missing: set[str] = set()
        self._asking = threading.local()

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname in self._missing or getattr(self._asking, "busy", False):
            return None
        if not all(part.isidentifier() for part in fullname.split(".")):
            return None  # no file of the root has that name (``importlib.util.find_spec`` probes)
        if path is not None and not _ours(sys.modules.get(fullname.rpartition(".")[0])):
            return None  # a submodule of a package found elsewhere
        if not self._link.can_request():
            return None
        self._asking.busy = True
        try:
            answer = self._link.request(SERVICE, {"name": fullname}, timeout=self._timeout)
        except GatewayUnavailableError:
            return None
        except RemoteCallError as exc:
            raise ModuleNotFoundError(
                f"No module named {fullname!r} (the gateway could not look it up: {exc})",
                name=fullname,
            ) from None
        finally:
            self._asking.busy = False
        if not isinstance(answer, dict) or not answer.get("found"):
            reason = answer.get("reason") if isinstance(answer, dict) else ""
            if reason:  # it exists but is refused: say why, and ask again next time
                raise ModuleNotFoundError(f"No module named {fullname!r}: {reason}", name=fullname)
            self._missing.add(fullname)
            return None
        return _spec(fullname, answer, self)

    def invalidate_caches(self) -> None:
        """``importlib.invalidate_caches()``: ask again for names that were missing."""
        self._missing.clear()

    def drop(self, missing: Iterable[str]) -> list[str]:
        """Forget the root modules loaded so far (the next import loads them again)
        and the ``missing`` names; returns the names of the modules dropped."""
        self._missing.difference_update(missing)
        dropped = [name for name, module in list(sys.modules.items()) if _ours(module)]
        for name in dropped:
            sys.modules.pop(name, None)
        return dropped


def _ours(module: Any) -> bool:
    spec = getattr(module, "__spec__", None)
    return isinstance(getattr(spec, "loader", None), RootModuleLoader)


def _spec(
    fullname: str, answer: dict[str, Any], finder: RootModuleFinder
) -> importlib.machinery.ModuleSpec:
    file = str(answer.get("file") or "")
    is_package = bool(answer.get("is_package"))
    loader = RootModuleLoader(fullname, file, str(answer.get("source") or ""), is_package)
    spec = importlib.machinery.ModuleSpec(
        fullname, loader, origin=file or None, is_package=is_package
    )
    if file:
        spec.has_location = True  # sets __file__
    if is_package:
        # Empty: the path finder must not load submodules from a shared disk behind
        # the gateway's back (unconfined, never invalidated); they come through here.
        spec.submodule_search_locations = []
    return spec


def install(link: _Link) -> RootModuleFinder:
    """Put a finder for ``link``'s gateway last in ``sys.meta_path`` (once)."""
    for finder in list(sys.meta_path):
        if isinstance(finder, RootModuleFinder):
            sys.meta_path.remove(finder)
    finder = RootModuleFinder(link)
    sys.meta_path.append(finder)
    return finder


def drop(missing: Iterable[str] = ()) -> list[str]:
    """What a step worker does when the gateway says a root module changed: drop the
    root modules (and forget the ``missing`` names) of the installed finder."""
    for finder in sys.meta_path:
        if isinstance(finder, RootModuleFinder):
            return finder.drop(missing)
    return []
