"""The values of the dependency engine: its settings, a lock, an installed environment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DepsSettings", "Lock", "Environment"]


@dataclass(frozen=True)
class DepsSettings:
    """Where locks and environments live, where packages come from, the limits."""

    dir: Path  # e.g. <data-dir>/environments
    index_url: str | None = None  # None: no index (no network) unless find_links are URLs
    find_links: tuple[str, ...] = ()  # folders (or URLs) of wheels and sdists
    timeout: float = 300.0  # seconds one ensure() may spend in uv (resolve and install)
    gc_days: float = 30.0  # environments unused this long are removed by gc()


@dataclass(frozen=True)
class Lock:
    """A resolved declaration: the exact packages an environment adds to the engine's."""

    hash: str  # sha256 hex of ``text``
    text: str  # requirements with exact versions and hashes
    packages: tuple[tuple[str, str], ...]  # (name, version), sorted; never an engine package


@dataclass(frozen=True)
class Environment:
    """An installed lock: a folder whose ``site`` a kernel adds after its own paths."""

    lock: Lock
    path: Path
    site: str
