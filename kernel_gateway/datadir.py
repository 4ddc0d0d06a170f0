"""The gateway's data directory: private to the gateway's user (it holds the tokens
and the SQLite database), and the tokens it keeps there."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["stored_token", "secure_data_dir"]


def stored_token(path: Path) -> str:
    """The token kept in ``path`` (mode 0600), made at first start."""
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token
    token = secrets.token_hex(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)
    return token


def secure_data_dir(data_dir: Path, sqlite_file: Path | None, traversable: bool = False) -> None:
    """The data directory 0700 and its files 0600 (tokens, SQLite database): they
    hold secrets, and a kernel (or any other user) has no business reading them.
    ``traversable`` (kernels run as another user, ``--kernel-user``): 0711, so that
    user may reach the scripts' environments inside (``environments/``, 0755) without
    being able to list the folder; its files stay 0600.
    The SQLite file is made 0600 before SQLite opens it, because SQLite gives its
    journal and WAL files the mode of the database file."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o711 if traversable else 0o700)
    if sqlite_file is not None and sqlite_file.parent == data_dir.resolve():
        os.close(os.open(sqlite_file, os.O_WRONLY | os.O_CREAT, 0o600))
    for entry in data_dir.iterdir():
        if entry.is_file() and not entry.is_symlink() and entry.stat().st_mode & 0o077:
            os.chmod(entry, 0o600)
