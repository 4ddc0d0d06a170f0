"""``/script-engine/start|stop|restart|reload|running|scripts/{id}``, and the
checks of their bodies (the engine receives checked, typed options)."""

from __future__ import annotations

import math
from typing import Any

from ..cpuquota import MAX_CORES
from ..engine import MAX_REPLICAS, RESTART_POLICIES, RunningScript, ScriptEngine, StartOptions
from ..errors import BadRequest
from ..quotas import parse_rate_limit
from ..repo import check_revision
from .base import JSONHandler

__all__ = [
    "StartHandler",
    "StopHandler",
    "RestartHandler",
    "ReloadHandler",
    "RunningHandler",
    "ScriptHandler",
]


def start_options(body: dict[str, Any]) -> StartOptions:
    """The options of a start body, checked (400 ``BAD_REQUEST`` / ``BAD_POLICY``)."""
    replicas = body.get("replicas", 1)
    if (
        isinstance(replicas, bool)
        or not isinstance(replicas, int)
        or not 1 <= replicas <= MAX_REPLICAS
    ):
        raise BadRequest(f"'replicas' must be an integer from 1 to {MAX_REPLICAS}", "BAD_REQUEST")
    restart = body.get("restart", "on-failure")
    if restart not in RESTART_POLICIES:
        raise BadRequest(f"'restart' must be one of {', '.join(RESTART_POLICIES)}", "BAD_REQUEST")
    memory = body.get("memory_limit_mb")
    if memory is not None and (
        isinstance(memory, bool) or not isinstance(memory, int) or memory < 0
    ):
        raise BadRequest("'memory_limit_mb' must be a whole number of MiB (0: none)", "BAD_REQUEST")
    policy = body.get("policy")
    if policy is not None and not isinstance(policy, dict):
        raise BadRequest(
            "'policy' must be an object with 'network', 'subprocess' and/or "
            "'write' (docs/security.md)",
            "BAD_POLICY",
        )
    kernel_name = body.get("kernel_name")
    if kernel_name is not None and (not isinstance(kernel_name, str) or not kernel_name):
        raise BadRequest("'kernel_name' must be the name of a kernelspec", "BAD_REQUEST")
    rate_limit = body.get("rate_limit")
    if rate_limit is not None:
        limit = parse_rate_limit(rate_limit)  # 400 BAD_RATE_LIMIT
        rate_limit = limit.to_json() if limit else {"calls_per_minute": 0}
    return StartOptions(
        replicas,
        restart,
        memory,
        policy,
        kernel_name,
        rate_limit=rate_limit,
        cpu_quota=cpu_quota_of(body.get("cpu_quota")),
    )


def cpu_quota_of(value: Any) -> float | None:
    """``cpu_quota`` of a start body: cores per kernel (0: none), checked (400
    ``BAD_CPU_QUOTA``); None when not given."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= MAX_CORES
    ):
        raise BadRequest(
            f"'cpu_quota' must be a number of cores from 0 (none) to {MAX_CORES:g}, like 0.5",
            "BAD_CPU_QUOTA",
        )
    if 0 < value < 0.01:
        raise BadRequest("'cpu_quota' must be at least 0.01 core (or 0: none)", "BAD_CPU_QUOTA")
    return float(value)


def revision_of(body: dict[str, Any]) -> str | None:
    """The ``revision`` of a start/restart/reload body: a commit of the scripts
    repository, short (4 hex digits or more) or full (40); None: the latest. Its form
    is checked here (400 ``BAD_PARAMETER``, like the files API's ``revision``); one
    the repository does not have is 404 ``REVISION_NOT_FOUND`` before a kernel is taken."""
    revision = body.get("revision")
    return None if revision is None else check_revision(revision)


def script_ref(body: dict[str, Any]) -> tuple[str | None, Any]:
    """``script_id`` or ``script_path`` of a stop/restart/reload body (a path is
    checked where it is resolved: ``ScriptStore.resolve``)."""
    script_id, script_path = body.get("script_id"), body.get("script_path")
    if script_id is not None:
        if not isinstance(script_id, str):
            raise BadRequest("'script_id' must be a string", "BAD_REQUEST")
        return script_id, None
    if script_path is None:
        raise BadRequest("give 'script_id' or 'script_path'", "MISSING_FIELD")
    return None, script_path


def _started(script: RunningScript) -> dict[str, object]:
    kernels = script.kernels_json(usage=False)
    return {
        "script_id": script.script_id,
        "script_path": script.path,
        "kernel_id": kernels[0]["kernel_id"] if kernels else None,
        "replicas": script.replicas,
        "revision": script.revision,
        "rate_limit": script.rate_limit.to_json() if script.rate_limit else None,
        "cpu_quota": script.cpu_quota_state(),
        "kernels": kernels,
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
        options, revision = start_options(body), revision_of(body)
        script = await self.engine.start(path, options, revision=revision)
        self.send_json(_started(script))


class StopHandler(JSONHandler):
    engine: ScriptEngine

    async def post(self) -> None:
        body = self.json_body()
        script = self.engine.find(*script_ref(body))
        await self.engine.stop(script)
        await self.engine.forget_desired(script.path)
        self.send_json(
            {"script_id": script.script_id, "script_path": script.path, "status": "stopped"}
        )


class RestartHandler(JSONHandler):
    engine: ScriptEngine

    async def post(self) -> None:
        body = self.json_body()
        old = self.engine.find(*script_ref(body))
        script = await self.engine.restart(old, revision_of(body))
        self.send_json({"previous_script_id": old.script_id, **_started(script)})


class ReloadHandler(JSONHandler):
    engine: ScriptEngine

    async def post(self) -> None:
        body = self.json_body()
        revision = revision_of(body)
        script = await self.engine.reload(self.engine.find(*script_ref(body)), revision)
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
