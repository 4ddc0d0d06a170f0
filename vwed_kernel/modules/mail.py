"""``VWED.mail``: mail sent by the gateway, with the gateway's SMTP settings."""

from __future__ import annotations

import base64
import mimetypes
import os
from typing import TYPE_CHECKING, Any

from ..errors import GatewayUnavailableError

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["MailModule", "MAX_ATTACHMENT"]

MAX_ATTACHMENT = 10 * 1024 * 1024


class MailModule:
    """``VWED.mail.send(to, subject, body)`` and ``send_with_attachment(to, subject, body,
    attachment_path)``. The SMTP server, account and sender come from the gateway's
    configuration (``--smtp-*``), never from the script. ``to`` is an address or a list."""

    def __init__(self, context: Context) -> None:
        self._context = context

    def send(
        self, to: str | list[str], subject: str, body: str, html: bool = False
    ) -> dict[str, Any]:
        """Send a mail; returns ``{"sent": true, "to": [...]}``."""
        return self._send({"to": to, "subject": subject, "body": body, "html": html})

    def send_with_attachment(
        self, to: str | list[str], subject: str, body: str, attachment_path: str, html: bool = False
    ) -> dict[str, Any]:
        """Send a mail with one file (read by this kernel) attached."""
        size = os.path.getsize(attachment_path)
        if size > MAX_ATTACHMENT:
            raise ValueError(
                f"attachment {attachment_path!r} is larger than {MAX_ATTACHMENT} bytes"
            )
        with open(attachment_path, "rb") as f:
            data = base64.b64encode(f.read()).decode()
        ctype = mimetypes.guess_type(attachment_path)[0] or "application/octet-stream"
        return self._send(
            {
                "to": to,
                "subject": subject,
                "body": body,
                "html": html,
                "attachment": {
                    "name": os.path.basename(attachment_path),
                    "content_type": ctype,
                    "data": data,
                },
            }
        )

    def _send(self, message: dict[str, Any]) -> dict[str, Any]:
        link = self._context.link
        if not link.attached:
            raise GatewayUnavailableError(
                "VWED.mail sends through the gateway's SMTP settings; no gateway is attached"
            )
        return dict(link.request("mail.send", message, timeout=60))
