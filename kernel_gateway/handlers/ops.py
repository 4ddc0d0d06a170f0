"""``/script-engine/health`` and ``/script-engine/openapi.json``."""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..engine import ScriptEngine
from ..kernels import KernelPool
from ..steps import StepService
from .base import JSONHandler

__all__ = ["HealthHandler", "OpenAPIHandler"]


class HealthHandler(JSONHandler):
    engine: ScriptEngine
    pool: KernelPool
    steps: StepService

    def prepare(self) -> None:
        # Health is for load balancers and probes: no token needed.
        pass

    def get(self) -> None:
        running = self.engine.running()
        self.send_json({
            "status": "ok",
            "version": __version__,
            "scripts": len(running),
            "scripts_died": sum(s.status == "died" for s in running),
            "pool": {"ready": self.pool.available, "target": self.pool.size},
            "workers": self.steps.pool.status(),
        })


class OpenAPIHandler(JSONHandler):
    document: dict[str, Any]

    def get(self) -> None:
        import json

        self.finish(json.dumps(self.document))
