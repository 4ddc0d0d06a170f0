"""One file's commit without a git process (libgit2 through pygit2), for the start of a
script whose file changed on disk.

Why: that start must wait for the commit (issue 17: a run names the commit it runs),
and the ``git`` program needs three processes for it (add, the staged diff, commit):
13.6 ms here, where the start itself takes 7 (docs/performance.md, "Issue 19, fifth
round"). libgit2 does it in about 3 ms, in a worker thread.

What it writes is what ``git add -- <file>`` and ``git commit --only -- <file>`` would:
the file's blob (with the repository's line-ending and attribute conversions, which
libgit2 applies as git does), the file's entry in the index (so ``git status`` is clean),
and a commit of HEAD's tree with that one change (anything else staged by hand stays
staged, not committed). It declines (``Declined``: the caller runs git instead) whatever
it might do differently: a path with a ``filter`` attribute (an external filter driver,
e.g. Git LFS, which libgit2 does not run), a symbolic link, a file git would ignore, an
index libgit2 cannot read (a split index), a path that is gone, or any libgit2 error.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Committed", "Declined", "FastCommitter", "available"]

try:  # a dependency; without it every commit runs the git program
    import pygit2
except ImportError:  # pragma: no cover - installed with the gateway
    pygit2 = None  # type: ignore[assignment]


def available() -> bool:
    return pygit2 is not None


class Declined(Exception):
    """This commit is for the git program (the reason is the message)."""


@dataclass(frozen=True)
class Committed:
    revision: str | None  # None: the file is as HEAD has it (nothing committed)
    blob: str  # the file's blob id, as committed
    at: int = 0  # the commit's time (seconds)


class FastCommitter:
    """Commits of single files in one repository (used under the repository's lock,
    from one thread at a time)."""

    def __init__(self, git_dir: Path, work_tree: Path) -> None:
        self.git_dir = git_dir
        self.work_tree = work_tree
        self._repo: Any = None

    def commit(
        self, rel: str, author: tuple[str, str], committer: tuple[str, str], message: str
    ) -> Committed:
        """Commit ``rel`` (relative to the work tree) as it is on disk, or Declined."""
        if pygit2 is None:
            raise Declined("pygit2 is not installed")
        path = self.work_tree / rel
        if os.path.islink(path) or not path.is_file():
            raise Declined("not a regular file")
        try:
            return self._commit(rel, author, committer, message)
        except Declined:
            raise
        except (pygit2.GitError, OSError, ValueError, KeyError) as exc:
            self._repo = None  # opened again next time
            raise Declined(f"libgit2: {exc}") from exc

    def _commit(
        self, rel: str, author: tuple[str, str], committer: tuple[str, str], message: str
    ) -> Committed:
        repo = self._open()
        if repo.get_attr(rel, "filter") not in (None, False):
            raise Declined("a filter attribute (an external filter driver)")
        index = repo.index
        index.read(True)  # from disk: git may have changed it meanwhile
        tracked = rel in index
        if not tracked and repo.path_is_ignored(rel):
            raise Declined("an ignored file")
        index.add(rel)  # hashes the file (line endings as the attributes say)
        entry = index[rel]
        head = None if repo.head_is_unborn else repo.head.peel(pygit2.Commit)
        if head is not None:
            try:
                if head.tree[rel].id == entry.id and head.tree[rel].filemode == entry.mode:
                    index.write()
                    return Committed(None, str(entry.id))
            except KeyError:
                pass  # new in this commit
        # HEAD's tree with this one change (what else is staged stays staged)
        tree_index = pygit2.Index()
        if head is not None:
            tree_index.read_tree(head.tree)
        tree_index.add(pygit2.IndexEntry(rel, entry.id, entry.mode))
        tree = tree_index.write_tree(repo)
        now = int(time.time())
        offset = time.localtime(now).tm_gmtoff // 60
        revision = repo.create_commit(
            "HEAD",
            pygit2.Signature(author[0], author[1], now, offset),
            pygit2.Signature(committer[0], committer[1], now, offset),
            message.rstrip("\n") + "\n",
            tree,
            [] if head is None else [head.id],
        )
        index.write()
        return Committed(str(revision), str(entry.id), now)

    def _open(self) -> Any:
        if self._repo is None:
            repo = pygit2.Repository(str(self.git_dir))
            if repo.is_bare or Path(repo.workdir or "/").resolve() != self.work_tree.resolve():
                # a repository of the gateway's own whose work tree is set per command
                raise Declined("the repository's work tree is not the scripts root")
            self._repo = repo
        return self._repo
