"""The scripts' package environments (issue 16, admin only):
``GET /script-engine/environments`` (each environment, with the running scripts
using it), ``POST /script-engine/environments/prefetch`` (resolve and install ahead
of a start, e.g. before a line goes offline) and ``GET /script-engine/dependencies``
(what a script declares and whether it is installed: shown before a start)."""

from __future__ import annotations

from typing import Any

from ..engine import ScriptEngine
from ..engine.model import environment_json
from ..errors import BadParameter, BadRequest, GatewayError
from .base import JSONHandler

__all__ = ["EnvironmentsHandler", "PrefetchHandler", "DependenciesHandler", "MAX_PREFETCH"]

MAX_PREFETCH = 100  # script paths in one prefetch


class PrefetchFailed(GatewayError):
    """Some script of a prefetch could not be prepared: 422 with every path's result."""

    status = 422


class EnvironmentsHandler(JSONHandler):
    engine: ScriptEngine

    def get(self) -> None:
        envs = self.engine.packages.listing(self.engine.environment_users())
        self.send_json({"count": len(envs), "environments": envs})


class PrefetchHandler(JSONHandler):
    """Body ``{"script_paths": [...]}``; each path on its own (one failing does not
    stop the others), in order. 200 when all are ready, else 422 with the results."""

    engine: ScriptEngine

    async def post(self) -> None:
        paths = self.json_body().get("script_paths")
        if (
            not isinstance(paths, list)
            or not paths
            or len(paths) > MAX_PREFETCH
            or not all(isinstance(p, str) and p for p in paths)
        ):
            raise BadRequest(
                f"'script_paths' must be a list of 1 to {MAX_PREFETCH} paths under the scripts root",
                "BAD_REQUEST",
            )
        results = [await self._one(path) for path in paths]
        failed = [r for r in results if not r["ok"]]
        if failed:
            raise PrefetchFailed(
                f"{len(failed)} of {len(results)} script(s) could not be prepared; "
                f"first: {failed[0]['script_path']}: {failed[0]['error']}",
                str(failed[0]["code"]),
                details={"results": results},
            )
        self.send_json({"results": results})

    async def _one(self, path: str) -> dict[str, Any]:
        packages = self.engine.packages
        try:
            source = self.engine.files.load(path)
            decl = packages.declaration(source)
            env = None if decl is None else packages.ready(decl)
            if decl is not None and env is None:
                env = await packages.ensure(decl, None)
        except GatewayError as exc:
            return {
                "script_path": path,
                "ok": False,
                "error": exc.message,
                "code": exc.code,
                "details": exc.details,
            }
        return {
            "script_path": source.path,
            "ok": True,
            "declaration": None if decl is None else decl.to_json(),
            "environment": environment_json(env),
        }


class DependenciesHandler(JSONHandler):
    """``?script_path=P``: the script's declaration (None: it adds no package),
    whether its environment is ready, and its packages when they are known."""

    engine: ScriptEngine

    def get(self) -> None:
        path = self.get_query_argument("script_path", None)
        if not path:
            raise BadParameter("script_path", "give the script's path under the scripts root")
        source = self.engine.files.load(path)  # 404 SCRIPT_NOT_FOUND; confined
        packages = self.engine.packages
        decl = packages.declaration(source)  # 422 DEPENDENCY_INVALID
        env = packages.ready(decl)
        self.send_json(
            {
                "script_path": source.path,
                "declaration": None if decl is None else decl.to_json(),
                "ready": decl is None or env is not None,
                "environment": environment_json(env),
            }
        )
