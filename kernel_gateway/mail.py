"""Mail for ``VWED.mail``: sent by the gateway with the SMTP settings of its
configuration (``--smtp-*``), so no script holds mail credentials."""

from __future__ import annotations

import base64
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any

from .errors import BadRequest, MailFailed, ServiceUnavailable

__all__ = ["Mailer"]


class Mailer:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        user: str = "",
        password: str = "",
        sender: str = "vwed@localhost",
        tls: str = "none",
        timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.sender = sender
        self.tls = tls
        self.timeout = timeout

    def send(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one message (blocking: run it in a worker thread)."""
        if not self.host:
            raise ServiceUnavailable(
                "mail is not configured on this gateway (--smtp-host)", "MAIL_NOT_CONFIGURED"
            )
        to = message.get("to")
        recipients = [to] if isinstance(to, str) else list(to or [])
        if not recipients or not all(isinstance(r, str) and "@" in r for r in recipients):
            raise BadRequest("'to' must be an address or a list of addresses", "BAD_REQUEST")
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = ", ".join(recipients)
        mail["Subject"] = str(message.get("subject", ""))
        body = str(message.get("body", ""))
        if message.get("html"):
            mail.set_content("This message is HTML.")
            mail.add_alternative(body, subtype="html")
        else:
            mail.set_content(body)
        attachment = message.get("attachment")
        if attachment:
            maintype, _, subtype = str(
                attachment.get("content_type", "application/octet-stream")
            ).partition("/")
            mail.add_attachment(
                base64.b64decode(attachment["data"]),
                maintype=maintype,
                subtype=subtype or "octet-stream",
                filename=str(attachment["name"]),
            )
        try:
            if self.tls == "ssl":
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
                )
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with client:
                if self.tls == "starttls":
                    client.starttls(context=ssl.create_default_context())
                if self.user:
                    client.login(self.user, self.password)
                refused = client.send_message(mail)
        except (OSError, smtplib.SMTPException) as exc:
            raise MailFailed(f"sending mail through {self.host}:{self.port} failed: {exc}") from exc
        return {"sent": True, "to": recipients, "refused": sorted(refused)}
