"""The secrets' encryption at rest: AES-256-GCM (``cryptography``), the secret's name as
associated data, so a ciphertext copied to another name does not decrypt.

A stored value is ``v1:<base64url(nonce 12 bytes + ciphertext and tag)>``. The key is
32 random bytes written as base64url: ``VWED_SECRETS_KEY``, else the file of
``--secrets-key-file`` (default ``<data-dir>/secrets.key``), made 0600 at first start.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["SecretsKey", "SecretsKeyError", "Undecryptable", "ENV_KEY", "new_key_text"]

log = logging.getLogger("kernel_gateway.secrets")

ENV_KEY = "VWED_SECRETS_KEY"
VERSION = "v1:"


class SecretsKeyError(ValueError):
    """The key cannot be used (bad text, unreadable file)."""


class Undecryptable(ValueError):
    """A stored value does not decrypt with this key (set with another key, or altered)."""


def new_key_text() -> str:
    """A new key, as written in a key file or ``VWED_SECRETS_KEY``."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def _parse(text: str, where: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text.strip().encode())
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise SecretsKeyError(
            f"the secrets key in {where} must be 32 bytes written in base64url (44 characters; "
            f'make one with: python -c "import base64,os; '
            f'print(base64.urlsafe_b64encode(os.urandom(32)).decode())")'
        )
    return raw


class SecretsKey:
    """The gateway's key, and sealing and opening values with it."""

    def __init__(self, raw: bytes, source: str) -> None:
        self._aead = AESGCM(raw)
        self.source = source  # where it came from (said in messages, never the key)

    @classmethod
    def load(cls, key_file: Path, env: dict[str, str] | None = None) -> SecretsKey:
        """``VWED_SECRETS_KEY`` if set, else ``key_file`` (created 0600 if missing)."""
        env = dict(os.environ) if env is None else env
        if env.get(ENV_KEY):
            return cls(_parse(env[ENV_KEY], ENV_KEY), ENV_KEY)
        try:
            if not key_file.exists():
                key_file.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(new_key_text() + "\n")
                log.info("a new secrets key was written to %s (keep a copy of it)", key_file)
            elif key_file.stat().st_mode & 0o077:
                log.warning("the secrets key file %s is readable by others: chmod 600 it", key_file)
            text = key_file.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretsKeyError(
                f"the secrets key file {key_file} cannot be read: {exc}"
            ) from None
        return cls(_parse(text, str(key_file)), str(key_file))

    def seal(self, name: str, value: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, value.encode("utf-8"), name.encode("utf-8"))
        return VERSION + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, name: str, stored: str) -> str:
        if not stored.startswith(VERSION):
            raise Undecryptable(f"secret {name!r} is stored in an unknown format")
        try:
            blob = base64.urlsafe_b64decode(stored[len(VERSION) :].encode())
            plain = self._aead.decrypt(blob[:12], blob[12:], name.encode("utf-8"))
        except (InvalidTag, binascii.Error, ValueError):
            raise Undecryptable(
                f"secret {name!r} cannot be decrypted with the gateway's key ({self.source}): "
                "it was set with another key, or altered; set it again, or start the gateway "
                "with the key it was set with"
            ) from None
        return plain.decode("utf-8")
