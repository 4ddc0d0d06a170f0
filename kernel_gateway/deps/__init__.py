"""A script's own Python packages (issue 16): declared, resolved once with uv, installed once.

- :func:`read_declaration`: a script's PEP 723 block, else the ``requirements.txt`` beside it;
- :class:`Environments`: ``ensure()`` a declaration into an :class:`Environment` (a lock
  installed into a folder a kernel adds after its own paths, so the engine's packages win),
  ``ensure_lock()`` for a restore, ``find()``, ``touch()``, ``listing()``, ``gc()``.

docs/dependencies.md is the user's page; docs/decisions.md says why uv and how it is driven.
"""

from .declaration import Declaration, read_declaration
from .environments import Environments
from .model import DepsSettings, Environment, Lock

__all__ = [
    "Declaration",
    "read_declaration",
    "DepsSettings",
    "Lock",
    "Environment",
    "Environments",
]
