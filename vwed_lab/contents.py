"""JupyterLab's file browser over the gateway's files API, for a gateway on another
machine (on the same machine ``--ServerApp.root_dir=<scripts root>`` is enough):

    jupyter lab --gateway-url=... --GatewayClient.auth_token=$TOKEN \\
        --ServerApp.contents_manager_class=vwed_lab.contents.GatewayContentsManager

The scripts root is the file browser's root: folders, ``.py`` files (opened in the
editor) and notebooks, read with ``GET /script-engine/files/{path}``, saved with
``PUT``, created, renamed and deleted through the same API (the gateway allows only
``.py`` and ``.ipynb`` files: another name gets its readable refusal). Checkpoints are
not kept ("Revert to checkpoint" has none).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import nbformat
from jupyter_server.gateway.gateway_client import GatewayClient
from jupyter_server.services.contents.checkpoints import AsyncCheckpoints
from jupyter_server.services.contents.manager import AsyncContentsManager
from tornado import web
from tornado.escape import url_escape
from tornado.httpclient import AsyncHTTPClient

__all__ = ["GatewayContentsManager", "NoCheckpoints"]

EPOCH = datetime.fromtimestamp(0, timezone.utc)


class NoCheckpoints(AsyncCheckpoints):
    """Checkpoints are not kept for files of the gateway."""

    async def create_checkpoint(self, contents_mgr: Any, path: str) -> dict[str, Any]:
        return {"id": "checkpoint", "last_modified": datetime.now(timezone.utc)}

    async def restore_checkpoint(self, contents_mgr: Any, checkpoint_id: str, path: str) -> None:
        raise web.HTTPError(400, "the gateway's files have no checkpoints")

    async def rename_checkpoint(self, checkpoint_id: str, old_path: str, new_path: str) -> None:
        return None

    async def delete_checkpoint(self, checkpoint_id: str, path: str) -> None:
        return None

    async def list_checkpoints(self, path: str) -> list[dict[str, Any]]:
        return []

    async def rename_all_checkpoints(self, old_path: str, new_path: str) -> None:
        return None

    async def delete_all_checkpoints(self, path: str) -> None:
        return None


def _when(mtime: Any) -> datetime:
    return datetime.fromtimestamp(float(mtime), timezone.utc) if mtime else EPOCH


class GatewayContentsManager(AsyncContentsManager):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checkpoints_class = NoCheckpoints
        self.base = str(GatewayClient.instance().url or "").rstrip("/") + "/script-engine/files"

    # -- the files API --------------------------------------------------------------
    def _url(self, path: str) -> str:
        path = path.strip("/")
        if not path:
            return self.base
        return self.base + "/" + "/".join(url_escape(p, plus=False) for p in path.split("/"))

    async def _call(self, method: str, path: str, body: Any = None, query: str = "") -> Any:
        # every write is a commit of the gateway's scripts repository: named as JupyterLab's
        kwargs: dict[str, Any] = {"method": method, "headers": {"X-VWED-Author": "JupyterLab"}}
        if body is not None:
            kwargs["body"] = json.dumps(body)
            kwargs["headers"]["Content-Type"] = "application/json"
        kwargs = GatewayClient.instance().load_connection_args(**kwargs)
        response = await AsyncHTTPClient().fetch(
            self._url(path) + query, raise_error=False, **kwargs
        )
        if response.code == 599:  # no answer
            raise web.HTTPError(503, f"the gateway {self.base} does not answer: {response.error}")
        try:
            answer = json.loads(response.body or b"{}")
        except ValueError:
            answer = {}
        if response.code >= 400:
            # the gateway's own message and code, e.g. FILE_TYPE_NOT_ALLOWED
            message = f"{answer.get('error') or response.reason} ({answer.get('code', '')})"
            raise web.HTTPError(response.code, message.replace("%", "%%"))
        return answer

    async def _read(self, path: str) -> dict[str, Any]:
        answer = await self._call("GET", path)
        return answer["tree"] if "tree" in answer else answer

    # -- models ---------------------------------------------------------------------
    def _model(self, node: dict[str, Any], content: bool, format: str | None) -> dict[str, Any]:
        path = str(node.get("path", "")).strip("/")
        when = _when(node.get("mtime"))
        model: dict[str, Any] = {
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "last_modified": when,
            "created": when,
            "content": None,
            "format": None,
            "mimetype": None,
            "size": node.get("size"),
            "writable": True,
            "hash": None,
            "hash_algorithm": None,
        }
        if node.get("type") == "directory":
            model["type"] = "directory"
            if content:
                model["content"] = [self._model(c, False, None) for c in node["children"]]
                model["format"] = "json"
            return model
        if path.endswith(".ipynb"):
            model["type"] = "notebook"
            if content:
                nb = nbformat.reads(node["content"], as_version=4)
                self.mark_trusted_cells(nb, path)
                model["content"], model["format"] = nb, "json"
                self.validate_notebook_model(model)
            return model
        model["type"] = "file"
        model["mimetype"] = "text/x-python" if path.endswith(".py") else "text/plain"
        if content:
            model["content"], model["format"] = node["content"], "text"
        return model

    # -- the ContentsManager API ----------------------------------------------------
    async def get(
        self,
        path: str,
        content: bool = True,
        type: str | None = None,
        format: str | None = None,
        require_hash: bool = False,
    ) -> dict[str, Any]:
        node = await self._read(path)
        if type == "directory" and node.get("type") != "directory":
            raise web.HTTPError(400, f"{path} is not a directory", reason="bad type")
        return self._model(node, content, format)

    async def save(self, model: dict[str, Any], path: str = "") -> dict[str, Any]:
        path = path.strip("/")
        kind = model.get("type")
        if kind == "directory":
            await self._call("POST", path, {"type": "directory"})
        elif kind == "notebook":
            nb = nbformat.from_dict(model["content"])
            self.check_and_sign(nb, path)
            await self._call("PUT", path, {"content": nbformat.writes(nb)})
        elif kind == "file":
            if model.get("format") == "base64":
                raise web.HTTPError(400, "the gateway keeps text files only (.py, .ipynb)")
            await self._call("PUT", path, {"content": model.get("content") or ""})
        else:
            raise web.HTTPError(400, f"unknown type {kind!r}")
        return await self.get(path, content=False)

    async def delete_file(self, path: str) -> None:
        await self._call("DELETE", path)

    async def rename_file(self, old_path: str, new_path: str) -> None:
        await self._call("PATCH", old_path, {"new_path": new_path.strip("/")})

    async def _exists(self, path: str, kind: str | None) -> bool:
        try:
            node = await self._read(path)
        except web.HTTPError as exc:
            if exc.status_code in (400, 404):
                return False
            raise
        return kind is None or (node.get("type") == "directory") == (kind == "directory")

    async def file_exists(self, path: str = "") -> bool:
        return bool(path.strip("/")) and await self._exists(path, "file")

    async def dir_exists(self, path: str) -> bool:
        return await self._exists(path, "directory")

    async def exists(self, path: str) -> bool:
        return await self._exists(path, None)

    async def is_hidden(self, path: str) -> bool:
        return any(part.startswith(".") for part in path.split("/"))
