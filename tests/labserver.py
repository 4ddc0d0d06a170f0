"""A real Jupyter Server in gateway mode for the JupyterLab tests: a subprocess on a
loopback port, with its own token, the gateway's token, and the vwed_lab extension
enabled by the config file this distribution ships (copied into its config dir: an
editable install does not install data files)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from tornado.websocket import websocket_connect

from conftest import jupyter_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
EXTENSION_CONFIG = ROOT / "jupyter-config" / "jupyter_server_config.d" / "vwed_lab.json"


class JupyterServer:
    def __init__(
        self, gateway_url: str, gateway_token: str, tmp: Path, root: Path, *extra: str
    ) -> None:
        self.token = uuid.uuid4().hex
        cfg = tmp / "cfg"
        (cfg / "jupyter_server_config.d").mkdir(parents=True, exist_ok=True)
        shutil.copy(EXTENSION_CONFIG, cfg / "jupyter_server_config.d" / "vwed_lab.json")
        env = {
            **os.environ,
            "JUPYTER_RUNTIME_DIR": str(tmp / "rt"),
            "JUPYTER_DATA_DIR": str(tmp / "data"),
            "JUPYTER_CONFIG_DIR": str(cfg),
        }
        # port 0: the server takes a free port itself and writes it to its runtime file (a
        # port picked here and bound later could be taken by another xdist worker's process
        # in between). Jupyter Server's own pick is bound a moment later too (it closes its
        # probe socket first), so a server that exits with "already in use" starts again.
        runtime = tmp / "rt"
        for attempt in range(1, 4):
            self.log = tmp / f"jupyter-server-{attempt}.log"
            self._out = open(self.log, "w")  # noqa: SIM115 - closed in stop()
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "jupyter_server",
                    "--ServerApp.port=0",
                    "--ServerApp.port_retries=0",
                    "--ServerApp.ip=127.0.0.1",
                    f"--IdentityProvider.token={self.token}",
                    "--ServerApp.open_browser=False",
                    f"--GatewayClient.url={gateway_url}",
                    f"--GatewayClient.auth_token={gateway_token}",
                    f"--ServerApp.root_dir={root}",
                    "--allow-root",
                    *extra,
                ],
                env=env,
                stdout=self._out,
                stderr=subprocess.STDOUT,
            )
            self.port, self.base = 0, ""
            self.http = httpx.Client(headers={"Authorization": f"token {self.token}"}, timeout=60)

            def up() -> bool:
                if self.proc.poll() is not None:
                    return True  # stop waiting: it exited
                if not self.port:
                    self.port = jupyter_port(runtime, self.proc.pid) or 0
                    if not self.port:
                        return False
                    self.base = f"http://127.0.0.1:{self.port}"
                    self.http.base_url = httpx.URL(self.base)
                try:
                    return self.http.get("/api/status").status_code == 200
                except httpx.HTTPError:
                    return False

            try:
                wait_until(up, 60, "jupyter server")
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {self.log.read_text()[-3000:]}") from None
            if self.proc.poll() is None:
                return
            self.http.close()
            self._out.close()
            if "already in use" not in self.log.read_text():
                break
        raise AssertionError(f"jupyter server exited: {self.log.read_text()[-3000:]}")

    def sessions(self) -> dict[str, dict[str, Any]]:
        """Jupyter Server's sessions by path."""
        r = self.http.get("/api/sessions")
        assert r.status_code == 200, r.text
        return {s["path"]: s for s in r.json()}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.http.close()
        self._out.close()
        print(f"--- {self.log} (tail)\n{self.log.read_text()[-3000:]}")  # shown on failure


class Channels:
    """A kernel's WebSocket through Jupyter Server, in its own event loop."""

    def __init__(self, server: JupyterServer, kernel_id: str, session_id: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.session = session_id
        url = (
            f"ws://127.0.0.1:{server.port}/api/kernels/{kernel_id}/channels"
            f"?session_id={session_id}&token={server.token}"
        )
        self.conn = self.loop.run_until_complete(self._connect(url))

    async def _connect(self, url: str) -> Any:
        return await asyncio.wait_for(websocket_connect(url), 30)

    def execute(self, code: str, timeout: float = 30) -> str:
        return self.loop.run_until_complete(self._execute(code, timeout))

    async def _execute(self, code: str, timeout: float) -> str:
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "username": "t",
            "session": self.session,
            "version": "5.3",
            "date": "",
        }
        content = {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
        }
        message = {"header": header, "parent_header": {}, "metadata": {}, "content": content}
        await self.conn.write_message(json.dumps({**message, "channel": "shell"}))
        out, done, reply = "", False, False
        deadline = time.monotonic() + timeout
        while not (done and reply):
            left = deadline - time.monotonic()
            assert left > 0, f"no answer to {code!r} within {timeout} s (output so far {out!r})"
            raw = await asyncio.wait_for(self.conn.read_message(), left)
            assert raw is not None, "the WebSocket closed"
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "stream":
                out += msg["content"]["text"]
            elif kind == "error":
                out += f"{msg['content']['ename']}: {msg['content']['evalue']}"
            elif kind == "execute_reply":
                reply = True
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                done = True
        return out

    def close(self) -> None:
        self.loop.run_until_complete(self._close())
        self.loop.close()

    async def _close(self) -> None:
        self.conn.close()  # on its own loop: tornado writes the close frame there
        await asyncio.sleep(0)
