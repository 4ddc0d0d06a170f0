"""The scripts root as a Git repository (issue 17): :class:`ScriptRepo` (history,
content at a revision, diff, commits of every write) and its remote (push, pull)."""

from .git import GitFailed, redact
from .repo import DISK, CommitFailed, ScriptRepo, check_revision, clean_author, clean_message

__all__ = [
    "DISK",
    "CommitFailed",
    "GitFailed",
    "ScriptRepo",
    "check_revision",
    "clean_author",
    "clean_message",
    "redact",
]
