"""The audit trail of a Jupyter client attached to a script's kernel through
``/api/kernels/{id}/channels``: attach, every ``execute_request`` it sends, and
detach become ``engine`` records of that script (``GET /script-engine/logs``).

A notebook or console attached to a running script changes production state (even
with ``silent: True``, which hides the execution from the kernel's own history), so
who attached (the token's role, never the token), to which kernel of which script,
and what code ran (its SHA-256 and first line) must be on record. Scratch kernels
(``POST /api/kernels``) belong to no script and are not recorded.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from tornado import web

from ..logs import LogHub
from .base import Tokens

__all__ = ["AttachAudit", "token_role", "FIRST_LINE_CHARS"]

FIRST_LINE_CHARS = 120


def token_role(handler: web.RequestHandler, token: Any) -> str:
    """Which credential admitted ``handler``'s request: ``admin``, ``caller`` or
    ``token`` (a single plain token), or ``none`` when authentication is off.

    Called after the token check passed; compares in constant time and returns only
    a role name, so no record can carry the token itself.
    """
    if isinstance(token, Tokens):
        if not token.enabled:
            return "none"
        candidates = [("admin", token.admin), ("caller", token.caller)]
    elif token:
        candidates = [("token", str(token))]
    else:
        return "none"
    header = handler.request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    given = (
        value.strip() if scheme.lower() in ("token", "bearer") else ""
    ) or handler.get_query_argument("token", "")
    for role, expected in candidates:
        if expected and hmac.compare_digest(given.encode(), expected.encode()):
            return role
    return "unknown"


def describe_code(code: str) -> tuple[str, str, int]:
    """(sha256 hex of the UTF-8 code, its first non-blank line cut to
    ``FIRST_LINE_CHARS``, its number of lines)."""
    digest = hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()
    lines = code.splitlines()
    first = next((line.strip() for line in lines if line.strip()), "")
    if len(first) > FIRST_LINE_CHARS:
        first = first[: FIRST_LINE_CHARS - 1] + "…"
    return digest, first, len(lines)


class AttachAudit:
    """Records one WebSocket session on a script's kernel. Attach and every
    execution are WARNING (outside changes to a running script); detach is INFO."""

    def __init__(
        self,
        hub: LogHub,
        script_id: str,
        script_path: str,
        kernel_id: str,
        replica: int,
        role: str,
        remote_ip: str,
    ) -> None:
        self.hub = hub
        self.script_id = script_id
        self.script_path = script_path
        self.kernel_id = kernel_id
        self.replica = replica
        self.role = role
        self.remote_ip = remote_ip
        self.executions = 0
        self.is_attached = False

    def attached(self) -> None:
        self.is_attached = True
        self.hub.engine(
            self.script_id,
            "WARNING",
            f"Jupyter client attached to kernel {self.kernel_id} of script "
            f"{self.script_path} (replica {self.replica}; token role: {self.role}; "
            f"from {self.remote_ip or 'unknown address'})",
        )

    def request(self, msg: Any) -> None:
        """A message the client sent on the shell channel; executions are recorded."""
        if not isinstance(msg, dict):
            return
        header = msg.get("header")
        kind = header.get("msg_type") if isinstance(header, dict) else msg.get("msg_type")
        if kind != "execute_request":
            return
        content = msg.get("content")
        content = content if isinstance(content, dict) else {}
        code = content.get("code")
        digest, first, nlines = describe_code(code if isinstance(code, str) else str(code))
        self.executions += 1
        self.hub.engine(
            self.script_id,
            "WARNING",
            f"attached Jupyter client (token role: {self.role}) executed code on kernel "
            f"{self.kernel_id} of script {self.script_path}: sha256 {digest}, "
            f"{nlines} line(s), silent={bool(content.get('silent'))}, first line: {first!r}",
        )

    def detached(self) -> None:
        if not self.is_attached:
            return
        self.is_attached = False
        self.hub.engine(
            self.script_id,
            "INFO",
            f"Jupyter client detached from kernel {self.kernel_id} of script "
            f"{self.script_path} (token role: {self.role}; {self.executions} "
            "execute request(s) while attached)",
        )
