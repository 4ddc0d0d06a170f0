"""``GET /script-engine/modules`` (admin): the ``VWED`` modules a kernel gets,
built-ins and plugins, with their distribution and version and whether each
loads, and the gateway's service plugins (kernel_gateway/modules_catalog.py).
``?script_path=P``: with that script's own package environment (its plugins)."""

from __future__ import annotations

from ..engine import ScriptEngine
from ..errors import BadParameter
from ..modules_catalog import ModuleCatalog
from .base import JSONHandler

__all__ = ["ModulesHandler"]


class ModulesHandler(JSONHandler):
    modules: ModuleCatalog
    engine: ScriptEngine

    async def get(self) -> None:
        unknown = set(self.request.query_arguments) - {"script_path"}
        if unknown:
            raise BadParameter(sorted(unknown)[0], "unknown parameter (only 'script_path')")
        site: list[str] = []
        path = self.get_query_argument("script_path", None)
        if path is not None:
            if not path:
                raise BadParameter("script_path", "give the script's path under the scripts root")
            source = self.engine.files.load(path)  # 404 SCRIPT_NOT_FOUND; confined
            packages = self.engine.packages
            decl = packages.declaration(source)  # 422 DEPENDENCY_INVALID
            env = packages.ready(decl)
            if decl is not None and env is None:
                raise BadParameter(
                    "script_path",
                    f"the packages of {source.path} are not installed yet "
                    "(POST /script-engine/environments/prefetch)",
                )
            if env is not None:
                site = [env.site]
        listing = await self.modules.listing(site)
        if path is not None:
            listing["script_path"] = path
        self.send_json(listing)
