"""``ScriptRepo``: the scripts root as a Git repository (issue 17).

Every write through the files API is a commit (:meth:`ScriptRepo.change`: the write
and its commit under one lock, so two saves never interleave); a file changed on disk
by other means is committed as such (author ``disk``) at the gateway's start
(:meth:`ScriptRepo.open`) and when a script starts from it (:meth:`ScriptRepo.latest`).

Where the repository is: the scripts root's own (``<root>/.git``, or whatever its
``.git`` points to) when the root is a repository's top folder, used as it is (its
branch, its history); a new one made with ``git init`` in the root when the root is in
no repository; and when the root is a folder *inside* another repository's work tree
(a project checkout), a repository of the gateway's own under ``home`` (the data
directory), so the gateway never commits into the enclosing project.

What is never committed: the gateway's data directory if it is inside the root,
``__pycache__``, ``.ipynb_checkpoints``, the store's temporary files (written to the
repository's ``info/exclude``, which is not itself part of the history).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..errors import BadParameter, NotFound
from .fastcommit import Declined, FastCommitter, available
from .git import AUTHOR_EMAIL, COMMITTER, Git, GitFailed, redact
from .maintenance import MAINTENANCE_DELAY, Maintenance
from .remote import Remote

__all__ = [
    "ScriptRepo",
    "CommitFailed",
    "DISK",
    "check_revision",
    "clean_author",
    "clean_message",
]

log = logging.getLogger("kernel_gateway.repo")

T = TypeVar("T")
DISK = "disk"
_REVISION = re.compile(r"[0-9a-fA-F]{4,40}")
_SHA = re.compile(r"[0-9a-f]{40}")
_EXCLUDE_MARK = "# written by the VWED gateway: never versioned"
_EXCLUDES = ("__pycache__/", "*.pyc", ".ipynb_checkpoints/", ".*.tmp-*", "/.vwed/")
MAX_MESSAGE = 4000
# a start reads its file's last commit and its text at it: both are kept, so the start
# of a file that did not change runs no git process (the text of a commit never changes;
# a history is kept for the HEAD it was read at)
CACHED_TEXTS = 64
CACHED_HISTORIES = 256


class CommitFailed(Exception):
    """The write was done but git refused its commit (e.g. another git process holds
    the index): the file is on disk, uncommitted, and is committed at the next start or
    a ``latest``. ``result``: the write's own answer."""

    def __init__(self, result: Any, error: str) -> None:
        super().__init__(error)
        self.result = result
        self.error = error


def check_revision(revision: Any, name: str = "revision") -> str:
    """``revision`` if it is 4 to 40 hex digits; else 400 ``BAD_PARAMETER``."""
    if not isinstance(revision, str) or not _REVISION.fullmatch(revision):
        raise BadParameter(name, "must be a revision: 4 to 40 hexadecimal digits")
    return revision.lower()


def clean_author(name: str) -> str:
    """An author name git accepts: no ``<``, ``>`` or control characters, at most 128."""
    kept = "".join(c for c in name if c.isprintable() and c not in "<>")
    return kept.strip()[:128] or "unknown"


def clean_message(message: str) -> str:
    return message.replace("\x00", "").strip()[:MAX_MESSAGE]


class ScriptRepo:
    """The scripts root as a Git repository (the ``git`` program; docs/decisions.md)."""

    def __init__(
        self,
        root: Path,
        remote: str | None = None,
        *,
        home: Path | None = None,
        exclude: tuple[Path, ...] = (),
        maintenance_delay: float = MAINTENANCE_DELAY,
    ) -> None:
        self.root = Path(root).resolve()
        self.home = home  # where our own repository goes if the root is inside another
        self.exclude = exclude  # folders never versioned when they are inside the root
        self.lock = asyncio.Lock()
        self.git = Git(self.root / ".git", self.root)
        self.maintenance = Maintenance(self.git, maintenance_delay)
        self._fast: FastCommitter | None = None  # one file's commit without git (open)
        self.remote = Remote(self, remote) if remote else None
        self.branch = "main"
        self._stats: dict[str, tuple[int, int, int]] = {}  # rel -> its stat when clean
        self._head: str | None = None
        self._head_key: tuple[int, ...] | None = None
        self._texts: OrderedDict[tuple[str, str], str] = OrderedDict()  # (full, rel) -> text
        # (rel, limit) -> (the HEAD it was read at, the history)
        self._histories: OrderedDict[tuple[str, int], tuple[str, list[dict[str, Any]]]] = (
            OrderedDict()
        )

    # -- start ------------------------------------------------------------------------
    async def open(self) -> None:
        """Find or make the repository, then commit what changed on disk since."""
        self.git = self.maintenance.git = Git(await self._git_dir(), self.root)
        self._fast = FastCommitter(self.git.git_dir, self.root) if available() else None
        self._write_excludes()
        branch = await self.git.run("symbolic-ref", "--quiet", "--short", "HEAD", ok=(0, 1))
        self.branch = branch.text.strip() or "HEAD"
        revision = None
        async with self.lock:
            try:
                await self.git.run("add", "-A", "--", ".")
                revision = await self._commit_staged(DISK, "changed on disk")
            except GitFailed as exc:  # e.g. a merge left half done by hand: serve anyway
                log.error("the files changed on disk could not be committed: %s", exc)
        head = await self.head()
        log.info(
            "scripts repository %s (branch %s) at %s%s",
            self.git.git_dir,
            self.branch,
            head[:12] if head else "no commit yet",
            ": committed the files changed on disk" if revision else "",
        )
        if self.remote is not None and head:
            self.remote.push_soon()
        self.maintenance.soon()  # also after a restart that cut a pending one short

    async def _git_dir(self) -> Path:
        """The root's own repository; or a new one (``git init``); or, when the root is
        inside another repository's work tree, ours under ``home``."""
        probe = Git(self.root / ".git", self.root)
        found = await probe.run(
            "rev-parse", "--show-toplevel", "--absolute-git-dir", ok=(0, 128), plain=True
        )
        lines = found.text.splitlines()
        if found.code == 0 and len(lines) == 2:
            top, git_dir = Path(lines[0]).resolve(), Path(lines[1])
            if top == self.root:
                return git_dir
            if self.home is not None:
                own = self.home / "scripts.git"
                if not (own / "HEAD").exists():
                    own.parent.mkdir(parents=True, exist_ok=True)
                    await probe.run("init", "-q", "--bare", str(own), plain=True)
                    log.info(
                        "the scripts root is inside the repository %s: its versions are kept "
                        "in %s, not in that repository",
                        top,
                        own,
                    )
                return own
        await probe.run("init", "-q", str(self.root), plain=True)
        log.info("made the scripts root %s a git repository", self.root)
        return self.root / ".git"

    def excluded_inside(self) -> list[str]:
        """The never-versioned paths (data dir, environments, key file, our own repository)
        that lie inside the root, relative to it."""
        inside: list[str] = []
        for path in (*self.exclude, self.git.git_dir):
            try:
                rel = Path(path).resolve().relative_to(self.root).as_posix()
            except ValueError:
                continue
            if rel != ".":
                inside.append(rel)
        return inside

    def touches_excluded(self, paths: list[str]) -> list[str]:
        """Those of ``paths`` (relative to the root) that are, or lie under, a
        never-versioned path."""
        excluded = self.excluded_inside()
        return [
            p for p in paths if any(p == e or p.startswith(e.rstrip("/") + "/") for e in excluded)
        ]

    def _write_excludes(self) -> None:
        info = self.git.git_dir / "info"
        info.mkdir(parents=True, exist_ok=True)
        path = info / "exclude"
        old = path.read_text("utf-8") if path.exists() else ""
        if _EXCLUDE_MARK in old:
            old = old[: old.index(_EXCLUDE_MARK)].rstrip("\n") + ("\n" if old.strip() else "")
        lines = list(_EXCLUDES)
        for inside in self.excluded_inside():  # the data dir, the environments, the key, ...
            lines.append(f"/{inside}/" if (self.root / inside).is_dir() else f"/{inside}")
        path.write_text(old + _EXCLUDE_MARK + "\n" + "\n".join(lines) + "\n", "utf-8")

    # -- writing ----------------------------------------------------------------------
    async def change(
        self, action: Callable[[], T], paths: Callable[[T], list[str]], author: str, message: str
    ) -> tuple[T, str | None]:
        """Run the write ``action`` and commit the ``paths`` it changed, under the lock:
        (its result, the new revision or ``None`` when the content did not change)."""
        async with self.lock:
            result = action()
            try:
                revision = await self._commit(paths(result), author, message)
            except GitFailed as exc:
                log.error("written but not committed (committed later as changed on disk): %s", exc)
                raise CommitFailed(result, str(exc)) from None
        return result, revision

    async def commit(self, paths: list[str], author: str, message: str | None) -> str | None:
        """Commit ``paths`` (files or folders, relative to the root; gone ones are
        removed): the new revision, or ``None`` if nothing changed."""
        async with self.lock:
            return await self._commit(paths, author, message)

    async def _commit(self, paths: list[str], author: str, message: str | None) -> str | None:
        await self._stage(paths)
        text = clean_message(message or "") or f"update {', '.join(paths)}"
        revision = await self._commit_staged(author, text, paths)
        for rel in paths:
            self._remember(rel)
        return revision

    async def _commit_one(self, rel: str, author: str, message: str) -> bool:
        """Commit the file ``rel`` with libgit2, in a worker thread (``fastcommit.py``:
        3 ms where git's three processes take 13): False when it declines (git's
        commit is needed). Under the lock."""
        if self._fast is None or _may_hold([rel], self.excluded_inside()):
            return False
        name, text = clean_author(author), clean_message(message) or "update"
        work = asyncio.ensure_future(
            asyncio.to_thread(self._fast.commit, rel, (name, AUTHOR_EMAIL), COMMITTER, text)
        )
        try:
            done = await asyncio.shield(work)
        except asyncio.CancelledError:
            # the thread cannot be stopped: the lock is let go once it has ended (no
            # second commit on the same repository object meanwhile)
            await asyncio.wait([work])
            raise
        except Declined as exc:
            log.debug("%s is committed by git: %s", rel, exc)
            return False
        self._remember(rel)
        if done.revision is not None:
            self._seed(done.revision, {rel: done.blob}, name, text, done.at)
            self._committed()
        return True

    def _committed(self) -> None:
        """After a commit: HEAD is read again; git's housekeeping and a push follow."""
        self._head = None
        self.maintenance.soon()
        if self.remote is not None:
            self.remote.push_soon()

    async def _stage(self, paths: list[str]) -> None:
        present = [p for p in paths if os.path.lexists(self.root / p)]
        gone = [p for p in paths if p not in present]
        if present:
            added = await self.git.run("add", "-A", "--", *present, ok=(0, 1))
            if added.code and "ignored" not in added.err:
                raise GitFailed(["add"], added.code, added.err)
        if gone:
            await self.git.run("rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", *gone)

    async def _commit_staged(
        self, author: str, message: str, added: list[str] | None = None
    ) -> str | None:
        """Commit the index: the new revision, or ``None`` when nothing is staged.
        ``added``: the paths just staged (None: anything may be, ``add -A -- .``)."""
        # Security: info/exclude loses to a .gitignore ("!/.vwed/" re-includes it), so what
        # must never be versioned (tokens, the secrets key, the database, environments) is
        # taken out of the index before every commit, whatever the ignore files say: at
        # once when what was added may hold one, and whenever one shows among the staged.
        excluded = self.excluded_inside()
        staged = await self._staged()
        if excluded and (
            added is None or _may_hold(added, excluded) or _may_hold(list(staged), excluded)
        ):
            await self.git.run("rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", *excluded)
            staged = await self._staged()
        if not staged:
            return None
        text, name, at = clean_message(message) or "update", clean_author(author), int(time.time())
        await self.git.run(
            "commit",
            "-q",
            "--no-verify",
            "--cleanup=strip",
            "-m",
            text,
            env={
                "GIT_AUTHOR_NAME": name,
                "GIT_AUTHOR_EMAIL": AUTHOR_EMAIL,
                "GIT_AUTHOR_DATE": f"@{at} {_utc_offset(at)}",  # the time a history shows
            },
        )
        self._committed()
        revision = await self.head()
        if revision:
            self._seed(revision, staged, name, text, at)
        return revision

    async def _staged(self) -> dict[str, str]:
        """The paths staged against HEAD, each with its new blob id ("" when removed)."""
        found = await self.git.run(
            "diff", "--cached", "--raw", "-z", "--no-abbrev", "--no-renames", "--no-ext-diff"
        )
        fields = found.text.split("\x00")
        staged: dict[str, str] = {}
        for head, path in zip(fields[0::2], fields[1::2], strict=False):
            parts = head.split()
            if len(parts) == 5 and path:
                staged[path] = "" if parts[4] == "D" else parts[3]
        return staged

    def _seed(
        self, revision: str, staged: dict[str, str], author: str, message: str, at: int
    ) -> None:
        """What a start reads right after committing its file, known without asking git
        again: the file's last commit (this one) and its text at it when the file on disk
        still has the content staged (its blob id, computed here, is the one committed)."""
        plain = _plain(author) and _plain(message) and not message.startswith("#")
        for rel, blob in staged.items():
            if not blob:
                continue
            if plain:
                entry = {"revision": revision, "time": at, "author": author, "message": message}
                _keep(self._histories, (rel, 1), (revision, [entry]), CACHED_HISTORIES)
            try:
                data = (self.root / rel).read_bytes()
            except OSError:
                continue
            if os.path.islink(self.root / rel) or _blob_id(data) != blob:
                continue  # changed since it was staged (or a link): read from git when asked
            _keep(self._texts, (revision, rel), data.decode("utf-8", "replace"), CACHED_TEXTS)

    # -- reading ----------------------------------------------------------------------
    async def head(self) -> str:
        """The current revision ("" before the first commit); cached until a ref moves."""
        key = self._refs_key()
        if self._head is None or key != self._head_key:
            head = self._head_from_files()
            if head is None:
                found = await self.git.run("rev-parse", "--verify", "--quiet", "HEAD", ok=(0, 1))
                head = found.text.strip()
            self._head, self._head_key = head, key
        return self._head

    def _head_from_files(self) -> str | None:
        """HEAD read from the repository's files (``HEAD``, the branch's loose ref, else
        ``packed-refs``): no git process. None when it is not that simple (a linked
        worktree, another ref storage, no commit yet, anything unexpected): then
        ``rev-parse`` answers."""
        git_dir = self.git.git_dir
        try:
            if (git_dir / "commondir").exists():
                return None
            head = (git_dir / "HEAD").read_text("utf-8").strip()
            if _SHA.fullmatch(head):
                return head
            if not head.startswith("ref: refs/heads/"):
                return None
            ref = head[5:]
            if ".." in ref.split("/"):
                return None
            loose = git_dir / ref
            if loose.is_file():
                value = loose.read_text("utf-8").strip()
                return value if _SHA.fullmatch(value) else None
            packed = git_dir / "packed-refs"
            if not packed.is_file():
                return None
            for line in packed.read_text("utf-8").splitlines():
                parts = line.split(" ")
                if len(parts) == 2 and parts[1] == ref and _SHA.fullmatch(parts[0]):
                    return parts[0]
        except (OSError, UnicodeDecodeError):
            return None
        return None

    def _refs_key(self) -> tuple[int, ...]:
        key: list[int] = []
        for name in ("HEAD", f"refs/heads/{self.branch}", "packed-refs"):
            try:
                st = os.stat(self.git.git_dir / name)
                key += [st.st_mtime_ns, st.st_size, st.st_ino]
            except OSError:
                key += [0, 0, 0]
        return tuple(key)

    def _stat(self, rel: str) -> tuple[int, int, int]:
        try:
            st = os.stat(self.root / rel)
        except OSError:
            return (0, -1, 0)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _remember(self, rel: str) -> None:
        self._stats[rel] = self._stat(rel)

    def changed(self, rel: str) -> bool:
        """Whether ``latest(rel)`` would commit first: the file (or its absence) is not
        what this repository last committed or saw of it."""
        return self._stats.get(rel) != self._stat(rel)

    async def latest(self, rel: str) -> str:
        """The revision to run ``rel`` at: HEAD, after committing ``rel``'s change on
        disk (author ``disk``) if it has one. No git process when neither the file nor
        the branch moved since the last look."""
        if self.changed(rel):
            async with self.lock:
                message = f"{rel} changed on disk"
                if not await self._commit_one(rel, DISK, message):
                    await self._commit([rel], DISK, message)
        head = await self.head()
        if not head:
            raise NotFound(f"{rel!r} is not in the scripts repository", "REVISION_NOT_FOUND")
        return head

    async def resolve(self, revision: str) -> str:
        """A short or full revision as the full 40-hex one (404 ``REVISION_NOT_FOUND``)."""
        short = check_revision(revision)
        found = await self.git.run(
            "rev-parse", "--verify", "--quiet", f"{short}^{{commit}}", ok=(0, 1, 128)
        )
        full = found.text.strip()
        if found.code or not re.fullmatch(r"[0-9a-f]{40}", full):
            raise NotFound(
                f"no revision {short!r} in the scripts repository (or it is ambiguous)",
                "REVISION_NOT_FOUND",
                details={"revision": short},
            )
        return full

    async def source_at(self, rel: str, revision: str) -> str:
        """The text of ``rel`` at ``revision`` (404 ``REVISION_NOT_FOUND`` or
        ``FILE_NOT_FOUND``)."""
        text = self._texts.get((revision, rel))
        if text is not None:
            self._texts.move_to_end((revision, rel))
            return text
        full = await self.resolve(revision)
        found = await self.git.run("cat-file", "blob", f"{full}:{rel}", ok=(0, 128))
        if found.code:
            raise NotFound(
                f"file {rel!r} is not in revision {full[:12]}",
                "FILE_NOT_FOUND",
                details={"revision": full},
            )
        text = found.out.decode("utf-8", "replace")
        _keep(self._texts, (full, rel), text, CACHED_TEXTS)
        return text

    async def history(self, rel: str, limit: int = 100) -> list[dict[str, Any]]:
        """The commits that touched ``rel``, newest first."""
        head = await self.head()
        if not head:
            return []
        kept = self._histories.get((rel, limit))
        if kept is not None and kept[0] == head:
            return [dict(entry) for entry in kept[1]]
        found = await self.git.run(
            "log", "-z", f"--max-count={int(limit)}", "--format=%H%x1f%at%x1f%an%x1f%B", "--", rel
        )
        entries = []
        for record in found.text.split("\x00"):
            if not record.strip():
                continue
            revision, at, author, message = record.split("\x1f", 3)
            entries.append(
                {
                    "revision": revision.strip(),
                    "time": int(at),
                    "author": author,
                    "message": message.strip(),
                }
            )
        _keep(self._histories, (rel, limit), (head, [dict(e) for e in entries]), CACHED_HISTORIES)
        return entries

    async def diff(self, rel: str, a: str, b: str) -> str:
        """The unified diff of ``rel`` from revision ``a`` to revision ``b``."""
        old, new = await self.resolve(a), await self.resolve(b)
        found = await self.git.run(
            "diff", "--no-color", "--no-ext-diff", "--no-textconv", old, new, "--", rel
        )
        return found.text

    async def uncommitted(self) -> set[str]:
        """Files (relative to the root) that differ from the last commit, or are new."""
        found = await self.git.run(
            "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames"
        )
        return {entry[3:] for entry in found.text.split("\x00") if len(entry) > 3}

    async def close(self) -> None:
        await self.maintenance.close()
        if self.remote is not None:
            await self.remote.close()

    def describe_remote(self) -> str | None:
        return redact(self.remote.url) if self.remote is not None else None


def _may_hold(paths: list[str], excluded: list[str]) -> bool:
    """Whether one of ``paths`` (relative to the root) is, holds or lies under one of
    the ``excluded`` paths."""
    for path in paths:
        p = path.strip("/")
        if p in ("", "."):
            return True
        for e in excluded:
            e = e.strip("/")
            if p == e or e.startswith(p + "/") or p.startswith(e + "/"):
                return True
    return False


def _plain(text: str) -> bool:
    """One line git keeps as it is (as an author name, or a message after
    ``--cleanup=strip``): no surrounding spaces or punctuation git trims."""
    return bool(text) and "\n" not in text and text == text.strip().strip(".,:;<>\"\\'")


def _blob_id(data: bytes) -> str:
    """The id git gives ``data`` as a blob (SHA-1 of its header and content)."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data, usedforsecurity=False).hexdigest()


def _utc_offset(at: int) -> str:
    """``+HHMM`` of the local time zone at ``at`` (what git writes by itself)."""
    offset = time.localtime(at).tm_gmtoff // 60
    sign = "-" if offset < 0 else "+"
    return f"{sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}"


K = TypeVar("K")
V = TypeVar("V")


def _keep(cache: OrderedDict[K, V], key: K, value: V, limit: int) -> None:
    """Put ``key`` in a least-recently-used ``cache`` of at most ``limit`` entries."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)
