"""Resolution: a declaration, layered on the engine's environment, into a lock.

1. ``uv pip install --dry-run --python <engine python> -r <declaration> --constraint <engine
   pins>``: uv counts what the engine has installed as satisfying, so it names only the missing
   packages ("Would install N packages: + name==version"), and the constraints (every
   distribution of the engine's environment at its installed version) make any other version
   of an engine package unsatisfiable. Such a failure names the engine package: it becomes a
   ``DEPENDENCY_CONFLICT``; any other failure a ``DEPENDENCY_FAILED`` with uv's message.
2. The lock: ``uv pip compile --no-deps --generate-hashes`` over those ``name==version`` pins
   (same index options). uv leaves out the hashes of files found through ``--find-links``;
   those are the sha256 of every file of that name and version in the find-links folders.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from ..errors import DependencyConflict, DependencyFailed
from .declaration import Declaration
from .model import Lock
from .uv import Uv

__all__ = ["engine_pins", "resolve", "make_lock", "lock_from_text", "conflict_from"]

_PLUS = re.compile(r"^\s*\+\s*(?P<name>[A-Za-z0-9._-]+)==(?P<version>\S+)\s*$", re.M)
_LIST = (
    "import importlib.metadata as m, json; "
    "print(json.dumps([[d.metadata['Name'], d.version] for d in m.distributions() "
    "if d.metadata['Name']]))"
)


def engine_pins(python: str) -> dict[str, str]:
    """Every distribution of ``python``'s environment: canonical name -> installed version."""
    if Path(python).resolve() == Path(sys.executable).resolve() or python == sys.executable:
        found = [_name_version(d) for d in importlib.metadata.distributions()]
    else:
        out = subprocess.run(  # the engine's own interpreter, a fixed program: no outside input
            [python, "-c", _LIST], capture_output=True, text=True, timeout=60, check=True
        )
        found = json.loads(out.stdout)
    pins: dict[str, str] = {}
    for name, version in found:
        if name:
            pins.setdefault(canonicalize_name(name), version)
    return dict(sorted(pins.items()))


def _name_version(dist: importlib.metadata.Distribution) -> tuple[str, str]:
    """A distribution's name and version, from its ``.dist-info`` folder's name when it has
    one (the wheel spec writes both, normalised, there): reading every METADATA file costs
    about 100 ms for the engine's 130 distributions, the folder names next to nothing."""
    folder = getattr(dist, "_path", None)
    name = getattr(folder, "name", "")
    stem = name[: -len(".dist-info")] if name.endswith(".dist-info") else ""
    if stem.count("-") == 1:
        dist_name, version = stem.split("-")
        return dist_name, version
    return dist.metadata["Name"], dist.version


def pins_text(pins: dict[str, str]) -> str:
    return "".join(f"{name}=={version}\n" for name, version in pins.items())


async def resolve(
    uv: Uv, python: str, decl: Declaration, work: Path, pins: dict[str, str], deadline: float
) -> list[tuple[str, str]]:
    """The packages ``decl`` adds to the engine's environment, as (name, version)."""
    if not decl.requirements:
        return []
    work.mkdir(parents=True, exist_ok=True)
    req = work / "requirements.in"
    req.write_text("".join(f"{r}\n" for r in decl.requirements))
    constraints = work / "engine.txt"
    constraints.write_text(pins_text(pins))
    args = ["pip", "install", "--dry-run", "--break-system-packages", "--python", python]
    args += uv.index_args() + ["-r", str(req), "--constraint", str(constraints)]
    result = await uv.run(args, deadline)
    message = result.message
    if result.returncode != 0:
        conflict = conflict_from(message, decl, pins)
        if conflict is not None:
            raise conflict
        raise DependencyFailed(
            f"the packages could not be resolved: {result.summary}",
            details={"resolver_message": message},
        )
    found = {canonicalize_name(m["name"]): m["version"] for m in _PLUS.finditer(result.stderr)}
    return sorted(found.items())


def conflict_from(
    message: str, decl: Declaration, pins: dict[str, str]
) -> DependencyConflict | None:
    """A ``DEPENDENCY_CONFLICT`` when uv's failure names an engine package at its pin."""
    flat = " ".join(message.split())
    for name, version in pins.items():
        pin = f"{name}=={version}"
        if not re.search(rf"(?<![\w.-]){re.escape(pin)}(?![\w.+-])", flat, re.I):
            continue
        script_requires, via = _asked(flat, name, pin, decl)
        through = f" (through {via})" if via else ""
        return DependencyConflict(
            f"the script needs {script_requires}{through} but the engine runs {pin}: "
            "the engine's packages cannot be replaced",
            details={
                "package": name,
                "engine_requires": pin,
                "script_requires": script_requires,
                "required_by": via,
                "resolver_message": message,
            },
        )
    return None


def _asked(flat: str, name: str, pin: str, decl: Declaration) -> tuple[str, str | None]:
    """What was asked of ``name`` and by which package (None: the declaration itself)."""
    for req in decl.requirements:
        if canonicalize_name(Requirement(req).name) == name:
            return req, None
    spec = rf"{re.escape(name)}(?P<spec>(?:[<>=!~]=?|===)[^\s,]+(?:,(?:[<>=!~]=?)[^\s,]+)*)"
    via = None
    for m in re.finditer(spec, flat, re.I):
        asked = f"{name}{m.group('spec')}"
        if asked.lower() == pin.lower():
            continue
        before = flat[: m.start()]
        who = re.search(
            r"(?:all versions of |only )?(?P<who>[A-Za-z0-9._-]+?)(?:[<>=!~]=?[^\s,]+)? depends? on $",
            before,
        )
        if who:
            via = canonicalize_name(who.group("who"))
        return asked, via
    return f"another version of {name}", via


async def make_lock(
    uv: Uv, python: str, packages: list[tuple[str, str]], work: Path, deadline: float
) -> Lock:
    """The lock of ``packages``: exact pins with the hashes of their files."""
    if not packages:
        return lock_from_text("")
    pinned = work / "pinned.in"
    pinned.write_text("".join(f"{n}=={v}\n" for n, v in packages))
    args = ["pip", "compile", "--no-deps", "--generate-hashes", "--no-header", "--no-annotate"]
    args += ["--python", python, *uv.index_args(), str(pinned)]
    result = await uv.run(args, deadline)
    if result.returncode != 0:
        raise DependencyFailed(
            f"the packages could not be locked: {result.summary}",
            details={"resolver_message": result.message},
        )
    hashes = _hashes_in(result.stdout)
    lines = []
    for name, version in packages:
        found = sorted(hashes.get(name) or _local_hashes(uv.settings.find_links, name, version))
        entry = f"{name}=={version}"
        lines.append(" \\\n".join([entry, *(f"    --hash={h}" for h in found)]) + "\n")
    return lock_from_text("".join(lines))


def _hashes_in(text: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    current = None
    for line in text.splitlines():
        stripped = line.strip().rstrip("\\").strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("--hash="):
            if current:
                found[current].add(stripped[len("--hash=") :])
            continue
        current = canonicalize_name(Requirement(stripped).name)
        found.setdefault(current, set())
    return found


def _local_hashes(find_links: tuple[str, ...], name: str, version: str) -> set[str]:
    """sha256 of every wheel and sdist of ``name``==``version`` in the find-links folders."""
    want = Version(version)
    found = set()
    for link in find_links:
        folder = Path(link[len("file://") :] if link.startswith("file://") else link)
        if "://" in link and not link.startswith("file://") or not folder.is_dir():
            continue
        for path in folder.iterdir():
            try:
                if path.name.endswith(".whl"):
                    dist, ver, _, _ = parse_wheel_filename(path.name)
                else:
                    dist, ver = parse_sdist_filename(path.name)
            except (InvalidWheelFilename, InvalidSdistFilename):
                continue
            if dist == name and ver == want:
                found.add("sha256:" + hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def lock_from_text(text: str) -> Lock:
    """The :class:`Lock` of a lock text (its packages read back from the pins)."""
    packages = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith(("--", "#")):
            req = Requirement(stripped.rstrip("\\").strip())
            version = next(iter(req.specifier)).version
            packages.append((canonicalize_name(req.name), version))
    return Lock(hashlib.sha256(text.encode()).hexdigest(), text, tuple(sorted(packages)))
