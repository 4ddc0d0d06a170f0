"""A small client of the gateway's HTTP API over httpx.

Where it connects: ``--url``, else ``VWED_URL``, else ``http://127.0.0.1:8765`` (the gateway's
default address). The token: ``VWED_TOKEN``, else the file ``<data-dir>/token`` the gateway
writes at first start, where data-dir is ``--data-dir``, else ``VWED_DATA_DIR``, else
``./.vwed`` (so ``vwed`` run beside the gateway needs no setup). The token is sent in the
``Authorization`` header (``?token=`` on the WebSocket only) and is never printed or logged.

Every failure is one of three exceptions: :class:`ApiError` (the gateway answered an error:
status, machine code, message), :class:`Unreachable` (no answer) and :class:`NoToken`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

__all__ = [
    "DEFAULT_URL",
    "ApiError",
    "Client",
    "NoToken",
    "Unreachable",
    "UsageError",
    "connect",
    "find_token",
]

DEFAULT_URL = "http://127.0.0.1:8765"
DEFAULT_DATA_DIR = ".vwed"


class UsageError(Exception):
    """The command line was wrong (exit code 2)."""


class NoToken(Exception):
    """No token in ``VWED_TOKEN`` nor in ``<data-dir>/token`` (exit code 3)."""


class Unreachable(Exception):
    """The gateway did not answer: refused, unknown host, timed out (exit code 3)."""


@dataclass
class ApiError(Exception):
    """The gateway answered an error: ``{"success": false, "error", "code", ...}``."""

    status: int
    code: str
    message: str
    body: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code} ({self.status}): {self.message}"


def find_token(data_dir: str | None = None) -> str:
    """``VWED_TOKEN``, else the first line of ``<data-dir>/token``."""
    token = os.environ.get("VWED_TOKEN", "").strip()
    if token:
        return token
    folder = Path(data_dir or os.environ.get("VWED_DATA_DIR") or DEFAULT_DATA_DIR)
    path = folder / "token"
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise NoToken(
            f"no token: set VWED_TOKEN, or run beside the gateway ({path} does not exist; "
            "--data-dir or VWED_DATA_DIR name another data directory)"
        ) from None
    except OSError as exc:
        raise NoToken(f"no token: {path} cannot be read ({exc.strerror})") from None
    if not token:
        raise NoToken(f"no token: {path} is empty")
    return token


def _error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        message = str(body.get("error") or body.get("message") or response.reason_phrase)
        return ApiError(response.status_code, body["code"], message, body)
    text = response.text.strip()[:200] or response.reason_phrase
    return ApiError(response.status_code, f"HTTP_{response.status_code}", text)


class Client:
    """The gateway's API, one method per endpoint the command line uses; each returns the
    answer's JSON or raises :class:`ApiError` / :class:`Unreachable`."""

    def __init__(self, url: str, token: str, timeout: float = 300.0) -> None:
        try:
            parts = urlsplit(url if "://" in url else f"http://{url}")
            parts.port  # noqa: B018 - a port that is not a number raises here
        except ValueError:
            parts = None  # type: ignore[assignment]
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(f"--url / VWED_URL must be an http(s) URL, not {url!r}")
        self.url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self.token = token
        self.timeout = timeout
        try:
            self._http = httpx.Client(
                base_url=self.url,
                headers={"Authorization": f"token {token}"},
                timeout=httpx.Timeout(timeout, connect=10.0),
            )
        except (ValueError, httpx.InvalidURL):
            raise UsageError(f"--url / VWED_URL must be an http(s) URL, not {url!r}") from None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        try:
            response = self._http.request(method, path, json=json, params=params, headers=headers)
        except httpx.TimeoutException:
            raise Unreachable(
                f"the gateway at {self.url} did not answer within {self.timeout:g} s"
            ) from None
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach the gateway at {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise _error(response)
        try:
            data = response.json()
        except ValueError:
            raise ApiError(
                response.status_code, "NOT_JSON", "the gateway's answer is not JSON"
            ) from None
        if not isinstance(data, dict):  # every answer of the gateway is an object
            raise ApiError(
                response.status_code,
                "NOT_JSON",
                "the answer is not a JSON object: is this a gateway?",
            )
        return data

    # -- the endpoints ---------------------------------------------------------------
    def whoami(self) -> dict[str, Any]:
        return dict(self.request("GET", "/script-engine/whoami"))

    def running(self) -> dict[str, Any]:
        return dict(self.request("GET", "/script-engine/running"))

    def start(
        self,
        path: str,
        replicas: int | None = None,
        restart: str | None = None,
        revision: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"script_path": path}
        if replicas is not None:
            body["replicas"] = replicas
        if restart is not None:
            body["restart"] = restart
        if revision is not None:
            body["revision"] = revision
        return dict(self.request("POST", "/script-engine/start", json=body))

    def lifecycle(
        self, action: str, ref: dict[str, str], revision: str | None = None
    ) -> dict[str, Any]:
        """``stop``, ``restart`` or ``reload`` of ``{"script_path"}`` or ``{"script_id"}``
        (restart and reload: at ``revision``, default the latest)."""
        body: dict[str, Any] = dict(ref)
        if revision is not None:
            body["revision"] = revision
        return dict(self.request("POST", f"/script-engine/{action}", json=body))

    def history(self, path: str, limit: int | None = None) -> dict[str, Any]:
        """The commits that touched a script file, newest first."""
        params = {"limit": limit} if limit is not None else None
        url = f"/script-engine/files/{quote(path, safe='/')}/history"
        return dict(self.request("GET", url, params=params))

    def logs(self, **query: Any) -> dict[str, Any]:
        params = {k: v for k, v in query.items() if v is not None}
        return dict(self.request("GET", "/script-engine/logs", params=params))

    def call(self, function: str, args: Any) -> dict[str, Any]:
        name = quote(function, safe="")
        body = {} if args is None else {"args": args}
        return dict(self.request("POST", f"/script-engine/functions/{name}/call", json=body))

    def check(self, path: str) -> dict[str, Any]:
        return dict(self.request("POST", "/script-engine/check", json={"script_path": path}))

    def prefetch(self, paths: list[str]) -> dict[str, Any]:
        body = {"script_paths": paths}
        return dict(self.request("POST", "/script-engine/environments/prefetch", json=body))

    def environments(self) -> dict[str, Any]:
        return dict(self.request("GET", "/script-engine/environments"))

    def dependencies(self, path: str) -> dict[str, Any]:
        params = {"script_path": path}
        return dict(self.request("GET", "/script-engine/dependencies", params=params))

    def secrets(self) -> dict[str, Any]:
        return dict(self.request("GET", "/script-engine/secrets"))

    def set_secret(
        self, name: str, value: str, scripts: list[str] | None, author: str = ""
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"value": value}
        if scripts is not None:
            body["scripts"] = scripts
        return dict(
            self.request(
                "PUT",
                f"/script-engine/secrets/{quote(name, safe='')}",
                json=body,
                headers=_author_header(author),
            )
        )

    def delete_secret(self, name: str, author: str = "") -> dict[str, Any]:
        path = f"/script-engine/secrets/{quote(name, safe='')}"
        return dict(self.request("DELETE", path, headers=_author_header(author)))

    def ws_url(self, path: str, params: dict[str, Any]) -> str:
        """The WebSocket URL of ``path`` with ``params`` and the token (a secret: never
        print it)."""
        base = "wss" + self.url[5:] if self.url.startswith("https") else "ws" + self.url[4:]
        query = {k: v for k, v in params.items() if v is not None}
        query["token"] = self.token
        return f"{base}{path}?" + "&".join(
            f"{k}={quote(str(v), safe='')}" for k, v in query.items()
        )


def _author_header(author: str) -> dict[str, str]:
    """``X-VWED-Author`` (ASCII printable only: a header is not the place for the rest)."""
    name = "".join(c for c in author if " " <= c <= "~").strip()
    return {"X-VWED-Author": name} if name else {}


def connect(url: str | None, data_dir: str | None, timeout: float = 300.0) -> Client:
    """A client of the gateway at ``url`` (else ``VWED_URL``, else the default)."""
    chosen = url or os.environ.get("VWED_URL") or DEFAULT_URL
    return Client(chosen, find_token(data_dir), timeout)
