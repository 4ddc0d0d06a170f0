"""``VWED.deploy(path)`` from a draft (a notebook on the gateway's VWED kernel): save
the code as a script under the scripts root and start it, or reload it when it runs
already (zero downtime; the old version keeps serving if the new boot fails).

- ``deploy("warehouse/new.py", source)``: writes ``source`` there, then starts it;
- ``deploy("warehouse/new.ipynb")``: exports the saved notebook beside it
  (``warehouse/new.py``: code cells in order, ``skip``-tagged cells left out, the
  files API's ``export``), then starts that;
- ``deploy("warehouse/new.py")``: starts the file as it is.

A deploy's write is a commit of the scripts repository (author ``draft (admin)``,
message ``deploy <path>`` unless the payload has a ``message``).

Only a draft's kernel can ask (``draft.deploy``, served by ``drafts.py``): it was
started with the admin token, which may write files and start scripts anyway.

A script that declares packages (issue 16) whose environment is not installed yet is
not started: the answer (409 ``DEPENDENCIES_NOT_READY``) lists the packages, because
installing them runs their code; ``deploy(..., install=True)`` installs them and starts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .engine import MAX_REPLICAS, ScriptEngine, StartOptions
from .errors import BadRequest, Conflict
from .repo import CommitFailed, ScriptRepo
from .scripts import ScriptStore

__all__ = ["Deployer", "DEPLOY_AUTHOR"]

# a draft's kernel holds the admin token: its saves are the admin's, from a draft
DEPLOY_AUTHOR = "draft (admin)"


class Deployer:
    def __init__(self, engine: ScriptEngine, store: ScriptStore, repo: ScriptRepo) -> None:
        self.engine = engine
        self.store = store
        self.repo = repo

    async def deploy(self, payload: dict[str, Any]) -> dict[str, Any]:
        path, source = payload.get("path"), payload.get("source")
        if not isinstance(path, str) or not path:
            raise BadRequest("'path' (a file under the scripts root) is required", "MISSING_FIELD")
        message = payload.get("message")
        message = message if isinstance(message, str) and message.strip() else f"deploy {path}"
        if path.endswith(".ipynb"):
            if source is not None:
                raise BadRequest(
                    "a notebook is deployed from its saved file: pass no source", "BAD_REQUEST"
                )
            saved = await self._save(
                lambda: self.store.export(path, overwrite=True),
                lambda done: [str(done["path"])],
                message,
            )
        elif source is not None:
            saved = await self._save(
                lambda: self.store.write(path, source),
                lambda _: self.store.versioned(path),
                message,
            )
        else:
            saved = {"path": self.store.relative(self.store.resolve(path))}
        replicas = payload.get("replicas", 1)
        if (
            isinstance(replicas, bool)
            or not isinstance(replicas, int)
            or not 1 <= replicas <= MAX_REPLICAS
        ):
            raise BadRequest(
                f"'replicas' must be an integer from 1 to {MAX_REPLICAS}", "BAD_REQUEST"
            )
        rel = str(saved["path"])
        if payload.get("install") is not True:
            self._installed_or_refuse(rel)
        current = self.engine.scripts.at(rel)
        if current is not None and current.status == "running":
            script = await self.engine.reload(current)
            action = "reloaded"
        else:
            script = await self.engine.start(rel, StartOptions(replicas=replicas))
            action = "started"
        return {
            "action": action,
            "script_id": script.script_id,
            "script_path": script.path,
            "registrations": script.registrations.counts(),
        }

    async def _save(
        self,
        write: Callable[[], dict[str, Any]],
        paths: Callable[[dict[str, Any]], list[str]],
        message: str,
    ) -> dict[str, Any]:
        """The write and its commit; a commit git refused leaves the file written (and
        committed later as changed on disk): the deploy goes on."""
        try:
            saved, _ = await self.repo.change(write, paths, DEPLOY_AUTHOR, message)
        except CommitFailed as exc:
            return dict(exc.result)
        return saved

    def _installed_or_refuse(self, rel: str) -> None:
        """409 ``DEPENDENCIES_NOT_READY`` naming the packages when ``rel`` declares packages
        whose environment is not installed (the author says ``install=True`` to go on)."""
        packages = self.engine.packages
        decl = packages.declaration(self.store.load(rel))
        if decl is None or not decl.requirements or packages.ready(decl) is not None:
            return
        wanted = ", ".join(decl.requirements)
        raise Conflict(
            f"{rel} declares packages that are not installed yet: {wanted}. Installing them "
            "runs their code; deploy again with install=True to install them and start it",
            "DEPENDENCIES_NOT_READY",
            details={"script_path": rel, "requirements": list(decl.requirements)},
        )
