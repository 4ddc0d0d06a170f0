"""The OpenAPI document matches the application."""

from __future__ import annotations

import json
import re
from pathlib import Path

from kernel_gateway.app import ROUTES
from kernel_gateway.openapi import build_openapi


def _as_regex(openapi_path: str) -> str:
    return re.sub(r"\{[^}]+\}", "X", openapi_path)


def test_every_route_is_documented(client):
    served = client.get("/script-engine/openapi.json").json()
    assert served == build_openapi()
    documented = [_as_regex(p) for p in served["paths"]]
    for pattern, handler, _ in ROUTES:
        assert any(re.fullmatch(pattern, p) for p in documented), (
            f"{pattern} is not in openapi.json"
        )
        methods = {
            m.lower()
            for m in handler.SUPPORTED_METHODS
            if hasattr(handler, m.lower())
            and getattr(handler, m.lower()).__qualname__.split(".")[0] != "RequestHandler"
        }
        # the documented path this route serves: one it matches that no route before it
        # in the table (Tornado's order) would take
        earlier = [r[0] for r in ROUTES[: [r[0] for r in ROUTES].index(pattern)]]
        path = next(
            p
            for p in served["paths"]
            if re.fullmatch(pattern, _as_regex(p))
            and not any(re.fullmatch(e, _as_regex(p)) for e in earlier)
        )
        assert methods <= set(served["paths"][path]), (pattern, methods)


def test_docs_copy_is_current():
    docs = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"
    assert json.loads(docs.read_text()) == build_openapi(), (
        "regenerate: python -m kernel_gateway.openapi > docs/openapi.json"
    )
