"""``/script-engine/health`` and ``/script-engine/openapi.json``."""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..engine import ScriptEngine
from ..pool import KernelPool
from ..steps import StepService
from .base import JSONHandler
from .guard import check_host

__all__ = ["HealthHandler", "OpenAPIHandler", "MetricsHandler"]


class MetricsHandler(JSONHandler):
    """``/metrics``: Prometheus text format (needs the token like every endpoint but health)."""

    metrics: Any

    def get(self) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(self.metrics.registry))


class HealthHandler(JSONHandler):
    engine: ScriptEngine
    pool: KernelPool
    steps: StepService

    def prepare(self) -> None:
        # Health is for load balancers and probes: no token needed (the Host still is).
        check_host(self.request, self.allow_hosts)

    async def get(self) -> None:
        running = self.engine.running()
        pool_warm = self.pool.size == 0 or self.pool.available > 0
        db_ok = await self.steps.db.ping() if self.steps.db is not None else True
        self.send_json(
            {
                "status": "ok",
                "ready": pool_warm and db_ok,
                "checks": {"pool_warm": pool_warm, "database": db_ok},
                "version": __version__,
                "scripts": len(running),
                "scripts_died": sum(s.status == "died" for s in running),
                "pool": {"ready": self.pool.available, "target": self.pool.size},
                "workers": self.steps.pool.status(),
                "environment_workers": self.steps.env_pools.counts()
                if self.steps.env_pools is not None
                else None,
            }
        )


class OpenAPIHandler(JSONHandler):
    document: dict[str, Any]

    def get(self) -> None:
        import json

        self.finish(json.dumps(self.document))
