"""What a script declares it needs: a PEP 723 block, else a ``requirements.txt`` beside it.

A ``.py`` script (or a notebook's first code cell) may carry the inline metadata of PEP 723::

    # /// script
    # dependencies = ["numpy>=2"]
    # requires-python = ">=3.10"
    # ///

Only ``dependencies`` matters; ``requires-python``, when present, must admit the running
Python. Without a block, a ``requirements.txt`` in the script's own folder applies: comments,
blank lines and plain PEP 508 requirements only (``-r``, ``-e``, options and URLs are
refused, so a declaration can never point uv at a file or a server of its choice). Every
requirement is parsed with :class:`packaging.requirements.Requirement` and normalised
(canonical name, sorted), so two declarations that say the same thing share one key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from ..errors import DependencyInvalid
from ..scripts import ScriptSource

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["Declaration", "read_declaration", "parse_pep723", "parse_requirements_txt"]

# The reference regular expression of PEP 723.
PEP723 = re.compile(r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")
REQUIREMENTS_TXT = "requirements.txt"
MAX_REQUIREMENTS_BYTES = 64 * 1024
PYTHON = "{}.{}".format(*sys.version_info[:2])


@dataclass(frozen=True)
class Declaration:
    """The packages a script asks for, normalised (canonical names, sorted)."""

    requirements: tuple[str, ...]
    origin: str  # "pep723" | "requirements.txt" | "notebook"
    file: str | None = None  # the requirements.txt, relative to the scripts root

    @property
    def key(self) -> str:
        """sha256 hex of the normalised requirements and the Python version (X.Y)."""
        text = json.dumps({"python": PYTHON, "requirements": list(self.requirements)})
        return hashlib.sha256(text.encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {"requirements": list(self.requirements), "origin": self.origin, "file": self.file}


def normalise(requirement: str, where: str) -> str:
    """The canonical text of one PEP 508 requirement, or DEPENDENCY_INVALID naming ``where``."""
    try:
        req = Requirement(requirement)
    except InvalidRequirement as exc:
        raise DependencyInvalid(
            f"{where}: {requirement!r} is not a valid requirement: {exc}",
            details={"line": requirement},
        ) from None
    if req.url:
        raise DependencyInvalid(
            f"{where}: {requirement!r}: URL requirements are not accepted, name a package "
            "and a version",
            details={"line": requirement},
        )
    req.name = canonicalize_name(req.name)
    return str(req)


def _requirements(items: list[str], where: str) -> tuple[str, ...]:
    return tuple(sorted({normalise(item, where) for item in items}))


def parse_pep723(text: str, where: str = "script") -> tuple[str, ...] | None:
    """The normalised ``dependencies`` of the ``script`` block in ``text``; None: no block."""
    blocks = [m for m in PEP723.finditer(text) if m.group("type") == "script"]
    if not blocks:
        return None
    if len(blocks) > 1:
        raise DependencyInvalid(f"{where}: more than one '# /// script' block")
    content = "".join(
        line[2:] if line.startswith("# ") else line[1:]
        for line in blocks[0].group("content").splitlines(keepends=True)
    )
    try:
        meta = tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        first = text.count("\n", 0, blocks[0].start()) + 2  # the block's first TOML line
        at = re.search(r"line (\d+)", str(exc))
        number = first + int(at.group(1)) - 1 if at else first
        raise DependencyInvalid(
            f"{where} line {number}: the '# /// script' block is not valid TOML: {exc}",
            details={"line_number": number},
        ) from None
    _check_python(meta.get("requires-python"), where)
    deps = meta.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise DependencyInvalid(f"{where}: 'dependencies' must be a list of strings")
    return _requirements(deps, where)


def _check_python(spec: Any, where: str) -> None:
    if spec is None:
        return
    if not isinstance(spec, str):
        raise DependencyInvalid(f"{where}: 'requires-python' must be a string")
    try:
        specifier = SpecifierSet(spec)
    except InvalidSpecifier:
        raise DependencyInvalid(f"{where}: requires-python {spec!r} is not valid") from None
    running = "{}.{}.{}".format(*sys.version_info[:3])
    if not specifier.contains(running, prereleases=True):
        raise DependencyInvalid(
            f"{where}: requires-python {spec!r} but the engine runs Python {running}",
            details={"requires_python": spec, "python": running},
        )


def parse_requirements_txt(text: str, where: str = REQUIREMENTS_TXT) -> tuple[str, ...]:
    """Plain PEP 508 lines, comments and blank lines; anything else is DEPENDENCY_INVALID."""
    items = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        here = f"{where} line {number}"
        if line.startswith("-") or line.endswith("\\"):
            raise DependencyInvalid(
                f"{here}: {line!r}: options (-r, -e, --index-url, ...) are not accepted, "
                "only plain requirements",
                details={"line": line, "line_number": number},
            )
        if "://" in line or line.startswith((".", "/")):
            raise DependencyInvalid(
                f"{here}: {line!r}: URLs and paths are not accepted, name a package and a version",
                details={"line": line, "line_number": number},
            )
        try:
            items.append(normalise(line, here))
        except DependencyInvalid as exc:
            exc.details["line_number"] = number
            raise
    return tuple(sorted(set(items)))


def read_declaration(source: ScriptSource, root: Path) -> Declaration | None:
    """The declaration of ``source`` (a script under ``root``), or None when it has none."""
    notebook = source.file.endswith(".ipynb")
    if notebook:
        first = source.cells[0] if source.cells else ""
        found = parse_pep723(first, f"{source.path} (first code cell)")
    else:
        found = parse_pep723("\n".join(source.cells), source.path)
    if found is not None:
        return Declaration(found, "notebook" if notebook else "pep723", None)
    return _beside(source, Path(root))


def _beside(source: ScriptSource, root: Path) -> Declaration | None:
    real_root = Path(os.path.realpath(root))
    folder = Path(os.path.realpath(Path(source.file).parent))
    candidate = folder / REQUIREMENTS_TXT
    if not candidate.exists():
        return None
    real = Path(os.path.realpath(candidate))
    if real_root not in real.parents or not real.is_file():
        raise DependencyInvalid(
            f"the {REQUIREMENTS_TXT} beside {source.path} leads outside the scripts root"
        )
    rel = real.relative_to(real_root).as_posix()
    data = real.read_bytes()[: MAX_REQUIREMENTS_BYTES + 1]
    if len(data) > MAX_REQUIREMENTS_BYTES:
        raise DependencyInvalid(f"{rel} is longer than {MAX_REQUIREMENTS_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DependencyInvalid(f"{rel} is not UTF-8 text") from None
    return Declaration(parse_requirements_txt(text, rel), REQUIREMENTS_TXT, rel)
