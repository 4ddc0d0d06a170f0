"""The script file store: every path from outside is confined to the scripts root.

Security: a path is refused (``PATH_INVALID``) when it is absolute, contains a
NUL byte, a backslash, a ``..``, ``.`` or ``.git`` segment, a percent-encoded character
(encoded traversal reaching us after one decoding), or when, after resolving
symlinks, it leaves the root. Only ``.py`` and ``.ipynb`` files are read or
written, up to ``max_file_size`` bytes.

Every file read or written has an ``etag`` (:func:`etag_of` its bytes); a write given
``if_match`` refuses (409 ``FILE_CHANGED``) when the file changed or went since.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from .convert import SKIP_TAG, VWED_KERNELSPEC, notebook_to_script, script_to_notebook
from .errors import BadRequest, Conflict, NotFound, PathInvalid, PayloadTooLarge

__all__ = ["ScriptStore", "ScriptSource", "SCRIPT_SUFFIXES", "SKIP_TAG", "etag_of"]

SCRIPT_SUFFIXES = (".py", ".ipynb")
# Longest name and path the file system takes: longer ones are a 400, not an OSError.
NAME_MAX = 255
PATH_MAX = 4096
TEMPLATE = Path(__file__).with_name("templates") / "new_script.py"
_SKIP = frozenset({"__pycache__", ".ipynb_checkpoints"})


@dataclass
class ScriptSource:
    """The code of a script, ready to run: one or more cells."""

    path: str  # relative to the root, with '/'
    file: str  # absolute path
    cells: list[str]
    mtime: float
    size: int
    # of a notebook: each cell's place in the notebook's ``cells`` (for findings)
    indexes: list[int] = field(default_factory=list)
    # the repository's revision this code is (None: read from disk, not a commit)
    revision: str | None = None


def _cells(rel: str, suffix: str, text: str) -> tuple[list[str], list[int]]:
    """A script's cells: the whole text of a ``.py``; a notebook's code cells that are
    not empty and not tagged ``skip``, with their places in the notebook."""
    if suffix != ".ipynb":
        return [text], []
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as exc:
        raise BadRequest(f"notebook {rel!r} cannot be read: {exc}", "NOTEBOOK_INVALID") from exc
    indexes = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
        and c.source.strip()
        and SKIP_TAG not in (c.get("metadata", {}).get("tags") or [])
    ]
    return [nb.cells[i].source for i in indexes], indexes


def etag_of(data: bytes) -> str:
    """The strong etag of a file's bytes (unquoted): sha256 hex, first 16 characters."""
    return hashlib.sha256(data).hexdigest()[:16]


class ScriptStore:
    def __init__(self, root: str | os.PathLike[str], max_file_size: int = 1024 * 1024) -> None:
        self.root = Path(root).resolve()
        self.max_file_size = max_file_size

    # -- paths -----------------------------------------------------------------------
    def resolve(self, rel: Any, *, allow_root: bool = False) -> Path:
        """The absolute path for ``rel``, confined to the root (after symlinks)."""
        if not isinstance(rel, str):
            raise PathInvalid("path must be a string")
        if "\x00" in rel or "\\" in rel or "%" in rel:
            raise PathInvalid(f"path {rel!r} contains a forbidden character")
        if rel.startswith("/") or (len(rel) > 1 and rel[1] == ":"):
            raise PathInvalid(f"path {rel!r} must be relative to the scripts root")
        parts = [p for p in rel.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise PathInvalid(f"path {rel!r} must not contain '.' or '..' segments")
        if ".git" in parts:  # the scripts repository's own files (docs/versions.md)
            raise PathInvalid(f"path {rel!r} is inside the repository's .git folder")
        if not parts and not allow_root:
            raise PathInvalid("path must not be empty")
        if any(len(p.encode("utf-8", "surrogatepass")) > NAME_MAX for p in parts):
            raise PathInvalid(f"a name in {rel[:80]!r}... is longer than {NAME_MAX} bytes")
        candidate = self.root.joinpath(*parts)
        if len(str(candidate).encode("utf-8", "surrogatepass")) >= PATH_MAX:
            raise PathInvalid(f"path {rel[:80]!r}... is longer than the platform allows")
        real = Path(os.path.realpath(candidate))
        if real != self.root and self.root not in real.parents:
            raise PathInvalid(f"path {rel!r} leaves the scripts root")
        self._no_loop(rel, parts)
        return real

    def _no_loop(self, rel: str, parts: list[str]) -> None:
        """Refuse a path through a symlink to the root or to a folder above the link: it
        would make the tree a loop, and every file reachable under endless aliases."""
        here = self.root
        for part in parts:
            here = here / part
            if here.is_symlink():
                target = Path(os.path.realpath(here))
                if target == self.root or target in here.parents:
                    raise PathInvalid(f"path {rel!r} goes through a link to a folder above it")

    def _unresolved(self, rel: str) -> Path:
        """``rel`` under the root, checked by :meth:`resolve`, but not through a final
        symlink: what delete and rename act on is the link, never its target."""
        self.resolve(rel)
        return self.root.joinpath(*[p for p in rel.split("/") if p])

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def script_rel(self, rel: str) -> str:
        """``rel`` as the scripts repository knows it (symlinks resolved), for a script
        file (``.py``, ``.ipynb``; another name is a 400), whether it exists or not."""
        path = self.resolve(rel)
        self._check_suffix(path)
        return self.relative(path)

    def versioned(self, rel: str) -> list[str]:
        """The paths, as the scripts repository knows them, that a write to ``rel``
        touches: the name itself (its folder's symlinks resolved) and, when it is a
        symlink, the file it points to."""
        real = self.resolve(rel)
        lexical = self.root.joinpath(*[p for p in rel.split("/") if p])
        link = Path(os.path.realpath(lexical.parent)) / lexical.name
        paths = [self.relative(link)] if self.root in link.parents else []
        if real != link and real != self.root:
            paths.append(self.relative(real))
        return paths

    @staticmethod
    def _check_suffix(path: Path) -> None:
        if path.suffix not in SCRIPT_SUFFIXES:
            raise BadRequest(
                f"only {' and '.join(SCRIPT_SUFFIXES)} files are allowed, not {path.name!r}",
                "FILE_TYPE_NOT_ALLOWED",
            )

    # -- reading ---------------------------------------------------------------------
    def tree(self, rel: str = "") -> dict[str, Any]:
        base = self.resolve(rel, allow_root=True)
        if not base.is_dir():
            raise NotFound(f"directory {rel!r} does not exist", "PATH_NOT_FOUND")
        return self._node(base)

    def _node(self, path: Path) -> dict[str, Any]:
        rel = "" if path == self.root else self.relative(path)
        if path.is_dir():
            children = []
            for child in sorted(path.iterdir(), key=lambda p: (not p.is_dir(), p.name)):
                if child.name.startswith(".") or child.name in _SKIP:
                    continue
                real = Path(os.path.realpath(child))
                if real != self.root and self.root not in real.parents:
                    continue  # a symlink out of the root is not shown
                if child.is_symlink() and child.is_dir() and (real == path or real in path.parents):
                    continue  # a link to a folder above it: a loop, not shown
                if child.is_dir() or child.suffix in SCRIPT_SUFFIXES:
                    children.append(self._node(child))
            return {
                "name": path.name if rel else "",
                "path": rel,
                "type": "directory",
                "children": children,
            }
        st = path.stat()
        return {
            "name": path.name,
            "path": rel,
            "type": "file",
            "size": st.st_size,
            "mtime": st.st_mtime,
        }

    def read(self, rel: str) -> dict[str, Any]:
        path = self.resolve(rel)
        if path.is_dir():
            return self.tree(rel)
        self._check_suffix(path)
        if not path.is_file():
            raise NotFound(f"file {rel!r} does not exist", "FILE_NOT_FOUND")
        st = path.stat()
        if st.st_size > self.max_file_size:
            raise PayloadTooLarge(
                f"file {rel!r} is larger than {self.max_file_size} bytes", "FILE_TOO_LARGE"
            )
        data = path.read_bytes()
        return {
            "path": self.relative(path),
            "type": "file",
            "content": data.decode("utf-8"),
            "size": len(data),
            "mtime": st.st_mtime,
            "etag": etag_of(data),
        }

    def stat(self, rel: str) -> ScriptSource:
        """Like :meth:`load` without reading the file (``cells`` is empty): enough to
        know which version of the file is on disk."""
        path = self.resolve(rel)
        self._check_suffix(path)
        try:
            st = path.stat()
        except FileNotFoundError:
            st = None
        if st is None or not path.is_file():
            raise NotFound(
                f"script {rel!r} does not exist", "SCRIPT_NOT_FOUND", details={"script_path": rel}
            )
        return ScriptSource(self.relative(path), str(path), [], st.st_mtime, st.st_size)

    def load(self, rel: str) -> ScriptSource:
        """The code of a script to run (404 ``SCRIPT_NOT_FOUND`` if it is not there)."""
        path = self.resolve(rel)
        self._check_suffix(path)
        if not path.is_file():
            raise NotFound(
                f"script {rel!r} does not exist", "SCRIPT_NOT_FOUND", details={"script_path": rel}
            )
        st = path.stat()
        if st.st_size > self.max_file_size:
            raise PayloadTooLarge(
                f"script {rel!r} is larger than {self.max_file_size} bytes", "FILE_TOO_LARGE"
            )
        text = path.read_text("utf-8")
        cells, indexes = _cells(rel, path.suffix, text)
        return ScriptSource(self.relative(path), str(path), cells, st.st_mtime, st.st_size, indexes)

    def source_from_text(self, rel: str, text: str, revision: str | None) -> ScriptSource:
        """The code of ``rel`` as ``text`` (its content at ``revision``), parsed like
        :meth:`load`. ``mtime``/``size`` are the file's on disk when it is there (what
        tells whether the file changed since), else 0 and the text's size."""
        path = self.resolve(rel)
        self._check_suffix(path)
        cells, indexes = _cells(rel, path.suffix, text)
        try:
            st = path.stat()
            mtime, size = st.st_mtime, st.st_size
        except OSError:
            mtime, size = 0.0, len(text.encode("utf-8"))
        return ScriptSource(
            self.relative(path), str(path), cells, mtime, size, indexes, revision=revision
        )

    # -- writing ---------------------------------------------------------------------
    def write(self, rel: str, content: Any, if_match: str | None = None) -> dict[str, Any]:
        """Create or overwrite a file (atomically: write a temp file, then rename).

        ``if_match``: the etag the writer read; 409 ``FILE_CHANGED`` (``details.etag``:
        the current one, ``null`` if the file is gone) unless the file still has it
        (``*``: unless it exists)."""
        if not isinstance(content, str):
            raise BadRequest("'content' must be a string", "MISSING_FIELD")
        path = self.resolve(rel)
        self._check_suffix(path)
        data = content.encode("utf-8")
        if len(data) > self.max_file_size:
            raise PayloadTooLarge(
                f"content is larger than {self.max_file_size} bytes", "FILE_TOO_LARGE"
            )
        if path.suffix == ".ipynb":
            try:
                nbformat.reads(content, as_version=4)
            except Exception as exc:
                raise BadRequest(
                    f"content is not a valid notebook: {exc}", "NOTEBOOK_INVALID"
                ) from exc
        if path.is_dir():
            raise Conflict(f"{rel!r} is a directory", "IS_A_DIRECTORY")
        if if_match is not None:
            self._check_etag(rel, path, if_match)
        created = not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return {
            "path": self.relative(path),
            "size": len(data),
            "created": created,
            "etag": etag_of(data),
        }

    @staticmethod
    def _check_etag(rel: str, path: Path, if_match: str) -> None:
        try:
            current: str | None = etag_of(path.read_bytes())
        except FileNotFoundError:
            current = None
        if current is None or (if_match != "*" and if_match != current):
            gone = " was deleted" if current is None else " changed"
            raise Conflict(
                f"file {rel!r}{gone} since it was read (etag {if_match}); "
                "read it again before writing",
                "FILE_CHANGED",
                details={"etag": current},
            )

    def create(self, rel: str, kind: str = "file", template: bool = True) -> dict[str, Any]:
        """Create a directory, or a new file (from the template unless told otherwise)."""
        path = self.resolve(rel)
        if path.exists():
            raise Conflict(f"{rel!r} already exists", "EXISTS")
        if kind == "directory":
            path.mkdir(parents=True)
            return {"path": self.relative(path), "type": "directory"}
        if kind != "file":
            raise BadRequest("'type' must be 'file' or 'directory'", "BAD_REQUEST")
        self._check_suffix(path)
        text = TEMPLATE.read_text("utf-8").replace("{{name}}", path.stem) if template else ""
        if path.suffix == ".ipynb":
            nb = nbformat.v4.new_notebook()
            nb.cells = [nbformat.v4.new_code_cell(text)] if text else []
            nb.metadata["kernelspec"] = dict(VWED_KERNELSPEC)
            text = nbformat.writes(nb)
        return self.write(rel, text)

    def export(self, rel: str, overwrite: bool = False) -> dict[str, Any]:
        """A notebook as a ``.py`` script, or a ``.py`` script as a notebook, beside it
        (``convert.py``)."""
        src = self.resolve(rel)
        self._check_suffix(src)
        if not src.is_file():
            raise NotFound(f"file {rel!r} does not exist", "FILE_NOT_FOUND")
        dst = src.with_suffix(".py" if src.suffix == ".ipynb" else ".ipynb")
        if dst.exists() and not overwrite:
            raise Conflict(f"{self.relative(dst)!r} already exists (pass overwrite=true)", "EXISTS")
        text = src.read_text("utf-8")
        out = notebook_to_script(text) if src.suffix == ".ipynb" else script_to_notebook(text)
        result = self.write(self.relative(dst), out)
        return {**result, "from": self.relative(src)}

    def rename(self, rel: str, new_rel: Any) -> dict[str, Any]:
        src = self.resolve(rel)
        dst = self.resolve(new_rel)
        if not src.exists():
            raise NotFound(f"{rel!r} does not exist", "PATH_NOT_FOUND")
        if src.is_file():
            self._check_suffix(dst)
        if dst.exists():
            raise Conflict(f"{new_rel!r} already exists", "EXISTS")
        if src.is_dir() and (dst == src or src in dst.parents):
            raise BadRequest("cannot move a directory into itself", "BAD_REQUEST")
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        return {"path": self.relative(dst), "old_path": rel}

    def delete(self, rel: str, recursive: bool = False) -> dict[str, Any]:
        """Delete a file or a folder; a symlink is removed itself, never followed (and
        ``shutil.rmtree`` does not follow the links inside a folder)."""
        link = self._unresolved(rel)
        if link.is_symlink():
            link.unlink()
            return {"path": rel, "deleted": True}
        path = self.resolve(rel)
        if not path.exists():
            raise NotFound(f"{rel!r} does not exist", "PATH_NOT_FOUND")
        if path.is_dir():
            if any(path.iterdir()) and not recursive:
                raise Conflict(
                    f"directory {rel!r} is not empty (pass recursive=true)", "DIRECTORY_NOT_EMPTY"
                )
            shutil.rmtree(path) if recursive else path.rmdir()
        else:
            self._check_suffix(path)
            path.unlink()
        return {"path": rel, "deleted": True}
