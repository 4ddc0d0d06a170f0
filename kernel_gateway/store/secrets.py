"""``vwed_secrets``: secrets by name, their values encrypted by the gateway before they
get here (the database never sees a plaintext value), their scope, who set them."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine

from .models import SecretRow

__all__ = ["SecretTables"]


def _row(m: Any) -> dict[str, Any]:
    row = dict(m)
    row["scope"] = json.loads(row["scope"]) if row.get("scope") else None
    return row


class SecretTables:
    """The secrets table (part of ``Database``)."""

    engine: Engine

    def put_secret(
        self, name: str, ciphertext: str, scope: list[str] | None, set_by: str, set_at: float
    ) -> bool:
        """Set a secret (replacing it); True when it is new."""
        values = {
            "ciphertext": ciphertext,
            "scope": None if scope is None else json.dumps(scope),
            "set_by": set_by[:128],
            "set_at": set_at,
        }
        with self.engine.begin() as conn:
            found = conn.execute(select(SecretRow.name).where(SecretRow.name == name)).first()
            if found is None:
                conn.execute(insert(SecretRow).values(name=name, **values))
                return True
            conn.execute(update(SecretRow).where(SecretRow.name == name).values(**values))
            return False

    def secret(self, name: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            m = conn.execute(select(SecretRow.__table__).where(SecretRow.name == name)).mappings()
            first = m.first()
        return None if first is None else _row(first)

    def secrets(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(SecretRow.__table__).order_by(SecretRow.name)).mappings()
            return [_row(m) for m in rows]

    def delete_secret(self, name: str) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(delete(SecretRow).where(SecretRow.name == name))
        return bool(result.rowcount)
