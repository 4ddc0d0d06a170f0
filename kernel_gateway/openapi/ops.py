"""OpenAPI paths for operations: health, Prometheus metrics, and this document."""

from __future__ import annotations

from typing import Any

from .schema import ok

__all__ = ["ops_paths"]


def ops_paths() -> dict[str, Any]:
    """/script-engine/health (no token needed), /metrics and /script-engine/openapi.json."""
    return {
        "/script-engine/health": {
            "get": {
                "summary": "Liveness and readiness (pool warm, database reachable); no token needed",
                "responses": {"200": ok("healthy")},
                "security": [],
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics: calls by script, kind and outcome with latency histograms, "
                "kernels alive, scripts by status, restarts, log records stored/dropped, queue depths",
                "responses": {"200": {"description": "text/plain; version=0.0.4"}},
            }
        },
        "/script-engine/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI document"}},
            }
        },
    }
