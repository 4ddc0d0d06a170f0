"""Names and scopes of secrets: what a PUT may say, and which scripts may read one."""

from __future__ import annotations

import posixpath
import re
from typing import Any

from ..errors import BadRequest, PayloadTooLarge

__all__ = ["check_name", "check_value", "check_scope", "allows", "MAX_VALUE"]

NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
MAX_VALUE = 64 * 1024  # bytes of UTF-8
MAX_ENTRIES = 256
MAX_ENTRY = 512


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise BadRequest(
            f"secret name {name[:140]!r} is not valid: 1 to 128 of A-Z a-z 0-9 _ . -",
            "BAD_SECRET_NAME",
        )
    return name


def check_value(value: Any) -> str:
    if not isinstance(value, str):
        raise BadRequest(
            "'value' must be a string", "MISSING_FIELD" if value is None else "BAD_REQUEST"
        )
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON): not text
        raise BadRequest("'value' must be valid Unicode text", "BAD_REQUEST") from None
    if size > MAX_VALUE:
        raise PayloadTooLarge(f"a secret's value is at most {MAX_VALUE} bytes", "SECRET_TOO_LARGE")
    return value


def check_scope(scripts: Any) -> list[str] | None:
    """``None`` (every script) or a list of script paths and folders (ending ``/``),
    relative to the scripts root, without ``..``."""
    if scripts is None:
        return None
    if not isinstance(scripts, list) or not all(isinstance(s, str) for s in scripts):
        raise BadRequest(
            "'scripts' must be a list of script paths or folders, or null", "BAD_REQUEST"
        )
    if not scripts:
        raise BadRequest(
            "'scripts' is empty: give script paths or folders ('warehouse/'), or null for all",
            "BAD_REQUEST",
        )
    if len(scripts) > MAX_ENTRIES:
        raise BadRequest(f"'scripts' has more than {MAX_ENTRIES} entries", "BAD_REQUEST")
    out: list[str] = []
    for entry in scripts:
        folder = entry.endswith("/")
        bare = entry.rstrip("/")
        if (
            not bare
            or len(entry) > MAX_ENTRY
            or "\\" in entry
            or "\x00" in entry
            or bare.startswith("/")
            or posixpath.normpath(bare) != bare
            or bare == ".."
            or bare.startswith("../")
        ):
            raise BadRequest(
                f"'scripts' entry {entry[:140]!r} is not a script path or folder relative to "
                "the scripts root (like 'robot/battery.py' or 'warehouse/')",
                "BAD_REQUEST",
            )
        item = bare + "/" if folder else bare
        if item not in out:
            out.append(item)
    return out


def allows(scope: list[str] | None, path: str | None) -> bool:
    """May the script at ``path`` read a secret of ``scope``? ``path`` None: a kernel
    that is not a script's (a draft): only secrets of every script."""
    if scope is None:
        return True
    if path is None:
        return False
    return any(path == s or (s.endswith("/") and path.startswith(s)) for s in scope)
