"""Module plugins: ``VWED.<name>`` from the entry points of group ``vwed.modules``
(docs/extending.md, "Module plugins"; the base class is :mod:`vwed_kernel.plugin`).

Discovery reads distribution metadata only (no plugin code runs): each folder of
``sys.path`` is scanned once and its entry points kept with the folder's
modification time, so a fork-server child (vwed_kernel/forkserver.py warms the
cache before its first fork) and a script's ``prepare`` (its own site dirs, added
after the kernel's paths) scan only folders they have not seen, or that changed
(a package installed since). As ``importlib.metadata`` does, the first
distribution of a name on ``sys.path`` wins.

Loading is forgiving: a plugin that fails to import, is not a
:class:`~vwed_kernel.plugin.VwedModule`, raises while built, or whose name is taken
(a built-in module, an attribute of ``VWED``, another plugin) is an ERROR record
naming it and its distribution, kept until a gateway is attached (``prepare``)
and then sent to the script's log; the kernel starts anyway.

``python -m vwed_kernel.plugins`` prints, as JSON, the modules a kernel of this
interpreter gets (built-ins and plugins, whether each loads): what the gateway's
``GET /script-engine/modules`` shows, asked of the kernel's interpreter.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .context import Context
from .plugin import VwedModule

__all__ = ["GROUP", "Found", "Plugins", "scan", "builtin_names", "reserved_names", "main"]

GROUP = "vwed.modules"
TAG = "plugins"
log = logging.getLogger("vwed_kernel")
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Found:
    """One entry point of the group, from its distribution's metadata."""

    name: str
    value: str  # "package.module:Class"
    distribution: str
    version: str
    path: str  # the sys.path folder it was found in

    def describe(self) -> str:
        return f"{self.distribution} {self.version}, entry point {self.value}"


# sys.path folder -> (its mtime when scanned, (normalized distribution name, found))
_cache: dict[str, tuple[int, list[tuple[str, list[Found]]]]] = {}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _scan_folder(folder: str) -> list[tuple[str, list[Found]]]:
    """The distributions in one folder of ``sys.path`` and their entry points of the
    group (metadata files only: nothing is imported)."""
    try:
        stamp = os.stat(folder or ".").st_mtime_ns
    except OSError:
        return []
    # by absolute path: "" is the working folder, which a forked kernel names so while
    # the fork server that scanned it named it by its path
    where = os.path.abspath(folder or ".")
    cached = _cache.get(where)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    dists: list[tuple[str, list[Found]]] = []
    if not _may_hold_distributions(folder):  # the scripts' folder, changed by a save
        _cache[where] = (stamp, dists)
        return dists
    for dist in metadata.distributions(path=[folder]):
        try:
            points = [ep for ep in dist.entry_points if ep.group == GROUP]
            key = getattr(dist, "_normalized_name", None) or _normalize(dist.metadata["Name"])
            if not points:
                dists.append((key, []))
                continue
            name, version = str(dist.metadata["Name"]), str(dist.version)
        except Exception:  # noqa: BLE001 - a broken dist-info is not a plugin
            continue
        dists.append((key, [Found(ep.name, ep.value, name, version, folder) for ep in points]))
    _cache[where] = (stamp, dists)
    return dists


def _may_hold_distributions(folder: str) -> bool:
    """False for a folder with no ``*.dist-info`` or ``*.egg-info`` entry, the names
    ``importlib.metadata`` looks for (a listing: about 20 times cheaper than its
    search); True for anything else on ``sys.path`` (a zip file, an unreadable folder)."""
    try:
        with os.scandir(folder or ".") as entries:
            return any(e.name.lower().endswith((".dist-info", ".egg-info")) for e in entries)
    except NotADirectoryError:
        return True
    except OSError:
        return True


def scan(paths: Iterable[str] | None = None) -> list[Found]:
    """The group's entry points on ``paths`` (default ``sys.path``), in path order;
    a distribution found again further along the path is shadowed, as in
    ``importlib.metadata``."""
    seen: set[str] = set()
    found: list[Found] = []
    for folder in list(sys.path if paths is None else paths):
        if not isinstance(folder, str):
            continue
        for key, points in _scan_folder(folder):
            if key in seen:
                continue
            seen.add(key)
            found.extend(points)
    return found


def builtin_names(vwed: Any) -> list[str]:
    """The built-in modules of a ``VWED`` object: its public attributes set when it
    was built (``VWED.api``, ``VWED.timer``, ...; a module added to ``VWED`` later
    is listed with no change here)."""
    plugins = getattr(vwed, "_plugins", {})
    return [n for n in vars(vwed) if not n.startswith("_") and n not in plugins]


def reserved_names(vwed: Any) -> set[str]:
    """Names a plugin cannot take: the built-in modules and every attribute of
    ``VWED`` (``script_id``, ``progress``, ``deploy``, ...)."""
    return set(builtin_names(vwed)) | {n for n in dir(type(vwed)) if not n.startswith("_")}


@dataclass
class Failure:
    found: Found
    message: str

    def record(self) -> str:
        return (
            f"module plugin {self.found.name!r} ({self.found.describe()}) "
            f"was not loaded: {self.message}"
        )


def _error_text(exc: BaseException) -> str:
    """``Type: message (file:line)``: where in the plugin's code it failed."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


class Plugins:
    """The plugins attached to one ``VWED`` object."""

    def __init__(self, vwed: Any, context: Context) -> None:
        self.vwed = vwed
        self.context = context
        self.loaded: dict[str, tuple[Found, VwedModule]] = {}
        self.failed: dict[tuple[str, str], Failure] = {}
        self._pending: list[Failure] = []  # not yet sent to a gateway's log
        self._armed = False

    # -- discovery and loading ------------------------------------------------------------
    def discover(self, paths: Iterable[str] | None = None) -> list[str]:
        """Load the plugins not loaded yet; the names attached by this call."""
        added = []
        reserved = reserved_names(self.vwed)
        for found in scan(paths):
            key = (found.name, found.distribution)
            if key in self.failed:
                continue
            current = self.loaded.get(found.name)
            if current is not None:
                if current[0].distribution != found.distribution:
                    self._fail(
                        found,
                        f"the name is taken by the plugin of {current[0].distribution}",
                    )
                continue
            module = self._build(found, reserved)
            if module is not None:
                self.loaded[found.name] = (found, module)
                self.vwed._plugins[found.name] = module
                setattr(self.vwed, found.name, module)
                added.append(found.name)
        if self.loaded:
            self._arm()
        return added

    def _build(self, found: Found, reserved: set[str]) -> VwedModule | None:
        if not _IDENTIFIER.match(found.name):
            self._fail(found, "its name must be lower case letters, digits and '_'")
            return None
        if found.name in reserved:
            self._fail(found, f"VWED.{found.name} is built in")
            return None
        try:
            cls = metadata.EntryPoint(found.name, found.value, GROUP).load()
        except BaseException as exc:  # noqa: BLE001 - SystemExit in an import too
            self._fail(found, f"import failed: {_error_text(exc)}")
            return None
        if not (isinstance(cls, type) and issubclass(cls, VwedModule)):
            self._fail(found, f"{found.value} is not a subclass of vwed_kernel.plugin.VwedModule")
            return None
        try:
            return cls(self.context, found.name)
        except BaseException as exc:  # noqa: BLE001
            self._fail(found, f"building it failed: {_error_text(exc)}")
            return None

    def _fail(self, found: Found, message: str) -> None:
        failure = Failure(found, message)
        self.failed[(found.name, found.distribution)] = failure
        self._pending.append(failure)
        log.error("%s", failure.record())

    # -- the log ----------------------------------------------------------------------------
    def report(self) -> None:
        """Send the failures not sent yet as ERROR records (once a gateway is attached,
        i.e. at ``prepare``: they go to the script's log)."""
        if not self.context.link.attached:
            return
        pending, self._pending = self._pending, []
        for failure in pending:
            self.context.log("ERROR", TAG, failure.record())

    # -- stop ---------------------------------------------------------------------------
    def _arm(self) -> None:
        """Stop every plugin when the registrations are next cleared (stop, reload, a
        new ``prepare``, the kernel's shutdown), then again at the clear after."""
        if self._armed:
            return
        self._armed = True
        self.context.registrations.on_clear(self._on_clear)

    def _on_clear(self) -> None:
        self._armed = False
        self.stop_all()
        if self.loaded:
            self._arm()

    def stop_all(self) -> None:
        for name, (_, module) in list(self.loaded.items()):
            try:
                module.stop()
            except Exception as exc:  # noqa: BLE001 - the others still stop
                self.context.log("ERROR", TAG, f"VWED.{name}.stop() failed: {_error_text(exc)}")

    # -- what GET /script-engine/modules shows ------------------------------------------------
    def describe(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = [
            {
                "name": name,
                "kind": "builtin",
                "distribution": "vwed-script-engine",
                "version": _own_version(),
                "entry_point": None,
                "loads": True,
                "error": None,
            }
            for name in builtin_names(self.vwed)
        ]
        for found, _ in self.loaded.values():
            rows.append(_row(found, True, None))
        for failure in self.failed.values():
            rows.append(_row(failure.found, False, failure.message))
        return rows


def _row(found: Found, loads: bool, error: str | None) -> dict[str, Any]:
    return {
        "name": found.name,
        "kind": "plugin",
        "distribution": found.distribution,
        "version": found.version,
        "entry_point": found.value,
        "loads": loads,
        "error": error,
    }


def _own_version() -> str:
    from . import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    """Print the modules a kernel of this interpreter gets, as JSON (one object)."""
    from .vwed import VWED

    extra = [p for p in (argv if argv is not None else sys.argv[1:]) if p]
    if extra:  # a script's site dirs, after the interpreter's own paths (as prepare does)
        import site

        own = list(sys.path)
        for folder in extra:
            if folder not in sys.path and os.path.isdir(folder):
                site.addsitedir(folder)
        sys.path[:] = own + [entry for entry in sys.path if entry not in own]
        importlib.invalidate_caches()
    vwed = VWED()
    plugins: Plugins = vwed._plugin_loader
    # a plugin's import may print: keep stdout for the answer
    real, sys.stdout = sys.stdout, sys.stderr
    try:
        plugins.discover()
        plugins.stop_all()
    finally:
        sys.stdout = real
    answer = {
        "python": sys.executable,
        "python_version": sys.version.split()[0],
        "modules": plugins.describe(),
    }
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
