"""Values a reattached kernel was given before its gateway restarted, given to the
log redactor again (logs/redact.py): the redactor is in memory, and a restarted
gateway starts empty, so what a remote script printed of a secret it read before
the restart would otherwise reach the logs in clear.

The kernel keeps the NAMES of the secrets it read and whether it got the MQTT
settings (never a value; vwed_kernel/bridge.py, the ``registrations`` op); their
values are looked up here: secrets in the vault (their current value: one changed
since the kernel read it is not known any more), the MQTT password from the
gateway's settings."""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["GivenAgain"]

log = logging.getLogger("kernel_gateway.engine")

MAX_NAMES = 256  # secrets looked up per kernel (the kernel runs the script's code)


class GivenAgain:
    """``await given_again(kernel, given)``: ``given`` as the kernel answered it,
    ``{"secrets": [names], "mqtt": bool}``. Returns the names that could not be looked
    up (gone from the vault, unreadable)."""

    def __init__(self, secrets: Any, mqtt: Any, redactor: Any) -> None:
        self.secrets = secrets  # secrets/vault.py Secrets (None: no secrets key)
        self.mqtt = mqtt  # mqtt_config.MqttConfig (None: not wired)
        self.redactor = redactor

    async def __call__(self, kernel: Any, given: dict[str, Any]) -> list[str]:
        missing: list[str] = []
        names = given.get("secrets")
        for name in (names if isinstance(names, list) else [])[:MAX_NAMES]:
            if not isinstance(name, str) or not name:
                continue
            value = await self._value(name)
            if value is None:
                missing.append(name)
                continue
            self.redactor.given(kernel.kernel_id, kernel.script_id, value)
        password = getattr(self.mqtt, "password", None)
        if given.get("mqtt") is True and password:
            self.redactor.given(kernel.kernel_id, kernel.script_id, password)
        return missing

    async def _value(self, name: str) -> str | None:
        if self.secrets is None or getattr(self.secrets, "key", None) is None:
            return None
        try:
            row = await self.secrets.db.secret(name)
            if row is None:
                return None
            return str(self.secrets.key.open(name, row["ciphertext"]))
        except Exception as exc:  # the database away, a value that does not decrypt
            log.warning("secret %s could not be looked up for redaction: %r", name, exc)
            return None
