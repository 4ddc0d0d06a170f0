"""Running the ``git`` program for the scripts repository, never depending on the
user's git configuration for what matters here.

Every command gets: an explicit ``--git-dir`` and ``--work-tree`` (so an enclosing
repository, or ``GIT_DIR`` in the environment, never changes which repository is
used); ``-c`` settings for signing, hooks, colours, quoting and line endings; an
environment without any inherited ``GIT_*`` variable, with ``GIT_TERMINAL_PROMPT=0``
(a remote asking for a password fails instead of waiting) and literal pathspecs
(a file named ``*.py`` is that file, not a pattern). Paths always come after ``--``.
Output is read with ``-z`` or format strings, never from messages meant for people.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Git", "GitFailed", "GitResult", "redact"]

COMMITTER = ("VWED gateway", "gateway@vwed.invalid")
AUTHOR_EMAIL = "scripts@vwed.invalid"
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def redact(text: str) -> str:
    """``text`` with the credentials of any URL in it (``https://user:token@host``)
    replaced by ``***``: remote URLs and git's messages about them get logged."""
    return _USERINFO.sub(lambda m: m.group("scheme") + "***@", text)


class GitFailed(Exception):
    """A git command ended with an unexpected exit code (or did not end in time)."""

    def __init__(self, args: list[str], code: int | None, stderr: str) -> None:
        self.code = code
        self.stderr = redact(stderr.strip())
        what = "timed out" if code is None else f"exit {code}"
        super().__init__(f"git {redact(' '.join(args[:2]))} failed ({what}): {self.stderr}")


@dataclass
class GitResult:
    code: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode("utf-8", "replace")


class Git:
    """One repository: its git directory and work tree."""

    def __init__(self, git_dir: Path, work_tree: Path, timeout: float = 60.0) -> None:
        self.git_dir = git_dir
        self.work_tree = work_tree
        self.timeout = timeout
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update(
            GIT_TERMINAL_PROMPT="0",
            # ssh never asks on a terminal (a passphrase, an unknown host key): it fails
            GIT_SSH_COMMAND="ssh -o BatchMode=yes",
            GIT_LITERAL_PATHSPECS="1",
            GIT_OPTIONAL_LOCKS="0",
            GIT_COMMITTER_NAME=COMMITTER[0],
            GIT_COMMITTER_EMAIL=COMMITTER[1],
            LC_ALL="C",
        )
        self.env = env
        self.prefix = [
            "git",
            "-c",
            f"safe.directory={work_tree}",
            "-c",
            f"safe.directory={git_dir}",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.quotepath=false",
            "-c",
            "core.autocrlf=false",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "maintenance.auto=false",  # run later, off a commit's path: maintenance.py
            "-c",
            "color.ui=false",
            "-c",
            "log.showSignature=false",
            "-c",
            "init.defaultBranch=main",
            "-c",
            f"user.name={COMMITTER[0]}",
            "-c",
            f"user.email={COMMITTER[1]}",
            f"--git-dir={git_dir}",
            f"--work-tree={work_tree}",
        ]

    @property
    def plain(self) -> list[str]:
        """The command without ``--git-dir``/``--work-tree`` (``init``, finding a repository)."""
        return [a for a in self.prefix if not a.startswith(("--git-dir=", "--work-tree="))]

    async def run(
        self,
        *args: str,
        ok: tuple[int, ...] = (0,),
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        plain: bool = False,
    ) -> GitResult:
        """Run ``git <args>`` in the work tree; :class:`GitFailed` unless its exit code
        is in ``ok`` (or past the deadline: the process is killed). ``plain``: without
        naming the repository (git finds it from the work tree, or makes it)."""
        proc = await asyncio.create_subprocess_exec(
            *(self.plain if plain else self.prefix),
            *args,
            cwd=self.work_tree,
            env={**self.env, **(env or {})},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout or self.timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise GitFailed(list(args), None, "no answer in time") from None
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        result = GitResult(proc.returncode or 0, out, err.decode("utf-8", "replace"))
        if result.code not in ok:
            raise GitFailed(list(args), result.code, result.err)
        return result
