"""``/script-engine/start|stop|restart|running|scripts/{id}``."""

from __future__ import annotations

from ..engine import RunningScript, ScriptEngine
from ..errors import BadRequest
from .base import JSONHandler

__all__ = [
    "StartHandler",
    "StopHandler",
    "RestartHandler",
    "ReloadHandler",
    "RunningHandler",
    "ScriptHandler",
]


def _started(script: RunningScript) -> dict[str, object]:
    summary = script.summary()
    return {
        "script_id": script.script_id,
        "script_path": script.path,
        "kernel_id": summary["kernel_id"],
        "replicas": script.replicas,
        "kernels": summary["kernels"],
        "registrations": script.registrations.describe(),
    }


class StartHandler(JSONHandler):
    engine: ScriptEngine

    async def post(self) -> None:
        body = self.json_body()
        path = body.get("script_path")
        if not isinstance(path, str) or not path:
            raise BadRequest(
                "'script_path' (a path under the scripts root) is required", "MISSING_FIELD"
            )
        script = await self.engine.start(
            path,
            body.get("replicas", 1),
            body.get("restart", "on-failure"),
            body.get("memory_limit_mb"),
            body.get("policy"),
        )
        self.send_json(_started(script))


class StopHandler(JSONHandler):
    engine: ScriptEngine

    async def post(self) -> None:
        body = self.json_body()
        script = self.engine.find(body.get("script_id"), body.get("script_path"))
        await self.engine.stop(script)
        await self.engine.forget_desired(script.path)
        self.send_json(
            {"script_id": script.script_id, "script_path": script.path, "status": "stopped"}
        )


class RestartHandler(JSONHandler):
    engine: ScriptEngine

    async def post(self) -> None:
        body = self.json_body()
        old = self.engine.find(body.get("script_id"), body.get("script_path"))
        script = await self.engine.restart(old)
        self.send_json({"previous_script_id": old.script_id, **_started(script)})


class ReloadHandler(JSONHandler):
    engine: ScriptEngine

    async def post(self) -> None:
        body = self.json_body()
        script = await self.engine.reload(
            self.engine.find(body.get("script_id"), body.get("script_path"))
        )
        self.send_json(_started(script))


class RunningHandler(JSONHandler):
    engine: ScriptEngine

    def get(self) -> None:
        scripts = [s.summary() for s in self.engine.running()]
        self.send_json({"count": len(scripts), "scripts": scripts})


class ScriptHandler(JSONHandler):
    engine: ScriptEngine

    def get(self, script_id: str) -> None:
        script = self.engine.get(script_id)
        self.send_json(
            {**script.summary(), "registrations_detail": script.registrations.describe()}
        )
