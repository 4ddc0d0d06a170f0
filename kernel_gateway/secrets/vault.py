"""``Secrets``: the secrets service. Set, list and delete for the admin API, and
``secret.get`` for kernels: the scope checked by the path of the script the asking
kernel runs (a step worker: the file of the step it runs; a draft: only secrets of
every script), every read an ``engine`` record of the script, and the value given
to the log hub's redactor, so it is written ``***`` in that kernel's records."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from ..engine import ScriptTable
from ..errors import Forbidden, GatewayError, NotFound, SecretUnreadable
from ..kernels import ScriptKernel
from ..logs import LogHub
from ..store.service import StoreService
from .crypto import SecretsKey, Undecryptable
from .scope import allows, check_name, check_scope, check_value

__all__ = ["Secrets"]

log = logging.getLogger("kernel_gateway.secrets")


class Secrets:
    def __init__(
        self, db: StoreService, key: SecretsKey, logs: LogHub, scripts: ScriptTable
    ) -> None:
        self.db = db
        self.key = key
        self.logs = logs
        self.scripts = scripts
        # the file of the step a worker kernel runs now (StepService.path_of), set by the
        # gateway once the step service exists
        self.step_path: Callable[[ScriptKernel], str | None] | None = None

    # -- at start ------------------------------------------------------------------------
    async def check(self) -> list[str]:
        """The stored secrets this key cannot decrypt (said as an ERROR): the gateway
        starts anyway, scripts reading them get ``SECRET_UNREADABLE``, and setting them
        again (with this key) mends them."""
        bad = [row["name"] for row in await self.db.secrets() if not self._readable(row)]
        if bad:
            message = (
                f"{len(bad)} secret(s) cannot be decrypted with the secrets key "
                f"({self.key.source}): {', '.join(bad[:20])}"
                f"{' ...' if len(bad) > 20 else ''}. Start the gateway with the key they "
                "were set with, or set them again"
            )
            log.error("%s", message)
            self.logs.engine(None, "ERROR", message)
        return bad

    def _readable(self, row: dict[str, Any]) -> bool:
        try:
            self.key.open(row["name"], row["ciphertext"])
        except Undecryptable:
            return False
        return True

    # -- the admin API -------------------------------------------------------------------
    async def put(self, name: str, value: Any, scripts: Any, set_by: str) -> dict[str, Any]:
        check_name(name)
        plain = check_value(value)
        scope = check_scope(scripts)
        now = time.time()
        created = await self.db.put_secret(name, self.key.seal(name, plain), scope, set_by, now)
        self.logs.emit(
            None,
            "INFO",
            "engine",
            "secrets",
            f"secret {name} {'set' if created else 'changed'} by {set_by}",
        )
        return {"name": name, "scripts": scope, "set_by": set_by, "set_at": now, "created": created}

    async def list(self) -> list[dict[str, Any]]:
        return [
            {
                "name": row["name"],
                "scripts": row["scope"],
                "set_by": row["set_by"],
                "set_at": row["set_at"],
                "readable": self._readable(row),
            }
            for row in await self.db.secrets()
        ]

    async def delete(self, name: str, by: str) -> None:
        check_name(name)
        if not await self.db.delete_secret(name):
            raise NotFound(f"no secret {name!r}", "SECRET_NOT_FOUND")
        self.logs.emit(None, "INFO", "engine", "secrets", f"secret {name} deleted by {by}")

    # -- kernels -------------------------------------------------------------------------
    def _reader(self, kernel: ScriptKernel) -> tuple[str | None, str | None]:
        """(the script path the scope is checked against, the script id of its records)."""
        sid = kernel.script_id
        if sid:
            script = self.scripts.lookup(sid)
            return (script.path if script is not None else None), sid
        path = self.step_path(kernel) if self.step_path is not None else None
        return path, path

    async def kernel_get(self, kernel: ScriptKernel, payload: dict[str, Any]) -> bytes:
        """``secret.get``: ``{"name"}`` -> ``{"value"}``."""
        name = str(payload.get("name", ""))
        path, sid = self._reader(kernel)
        try:
            check_name(name)
            row = await self.db.secret(name)
            if row is None:
                raise NotFound(
                    f"no secret {name!r} (set it with PUT /script-engine/secrets/{name})",
                    "SECRET_NOT_FOUND",
                    details={"type": "SecretNotFound"},
                )
            if not allows(row["scope"], path):
                who = f"script {path}" if path else "a kernel that runs no script file (a draft)"
                raise Forbidden(
                    f"secret {name!r} is not for {who}: its scope is {', '.join(row['scope'])}",
                    "SECRET_NOT_ALLOWED",
                    details={"type": "SecretNotAllowed"},
                )
            try:
                value = self.key.open(name, row["ciphertext"])
            except Undecryptable as exc:
                raise SecretUnreadable(str(exc)) from None
        except GatewayError as exc:
            self.logs.emit(
                sid, "WARNING", "engine", "secrets", f"secret {name} refused: {exc.message}"
            )
            raise
        self.logs.redactor.given(kernel.kernel_id, sid, value)
        self.logs.emit(sid, "INFO", "engine", "secrets", f"read secret {name}")
        return json.dumps({"value": value}).encode()
