"""Driving the ``uv`` executable (the ``uv`` package's binary) as a subprocess.

Every run gets a clean environment for uv: no user or project configuration
(``UV_NO_CONFIG``), its cache under the engine's folder (``<dir>/cache``), no Python
downloads, and none of the caller's ``UV_*``/``PIP_*`` variables, so what is resolved
depends only on :class:`DepsSettings`. Without ``index_url`` uv gets ``--no-index``: no
network unless the settings name an index (or a find-links URL). A run that passes its
deadline is killed with its process group and is a ``DEPENDENCY_FAILED``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass

from ..errors import DependencyFailed
from .model import DepsSettings

__all__ = ["Uv", "UvResult", "uv_binary"]


def uv_binary() -> str:
    """The path of the uv executable shipped by the ``uv`` package."""
    from uv import find_uv_bin

    return str(find_uv_bin())


_ENV_KEEP = frozenset(
    {
        "PATH",
        "HOME",
        "TMPDIR",
        "TEMP",
        "TMP",
        "LANG",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "all_proxy",
    }
)


@dataclass(frozen=True)
class UvResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def message(self) -> str:
        """uv's own words: stderr without its "Using Python ..." chatter."""
        lines = [
            line
            for line in self.stderr.splitlines()
            if line.strip() and not line.startswith(("Using Python", "Using CPython"))
        ]
        return "\n".join(lines).strip()

    @property
    def summary(self) -> str:
        """One line: uv's ``error:`` line and its last ``cause:`` (build output left out)."""
        lines = [line.strip() for line in self.message.splitlines() if line.strip()]
        error = next((ln[len("error:") :].strip() for ln in lines if ln.startswith("error:")), "")
        causes = [ln[len("cause:") :].strip() for ln in lines if ln.startswith("cause:")]
        parts = [p for p in (error, causes[-1] if causes else "") if p]
        text = ": ".join(parts) or (lines[-1] if lines else "uv gave no message")
        return text[:500]


class Uv:
    """Runs uv with the settings' index options; counts its runs (``runs``)."""

    def __init__(self, settings: DepsSettings, binary: str | None = None) -> None:
        self.settings = settings
        self.binary = binary or uv_binary()
        self.runs = 0  # every uv process started (the tests count them)
        self.history: list[list[str]] = []  # the arguments of each run, in order

    def env(self) -> dict[str, str]:
        # Security: uv runs build backends (third-party code) with this environment, so it
        # gets an allow-list, never the gateway's own (tokens, VWED_SECRETS_KEY, passwords,
        # database URLs, cloud credentials).
        env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP or k.startswith("LC_")}
        env.update(
            UV_NO_CONFIG="1",
            UV_CACHE_DIR=str(self.settings.dir / "cache"),
            UV_PYTHON_DOWNLOADS="never",
            UV_NO_PROGRESS="1",
            NO_COLOR="1",
            # copies, not hard links into the cache: an environment's files are its own
            UV_LINK_MODE="copy",
        )
        return env

    def index_args(self) -> list[str]:
        args: list[str] = []
        if self.settings.index_url:
            args += ["--index-url", self.settings.index_url]
        else:
            args.append("--no-index")
        for link in self.settings.find_links:
            args += ["--find-links", link]
        if not self.settings.index_url and not any("://" in f for f in self.settings.find_links):
            args.append("--offline")
        return args

    async def run(self, args: list[str], deadline: float) -> UvResult:
        """Run ``uv *args``; past ``deadline`` (``time.monotonic()``) kill it and fail."""
        self.settings.dir.mkdir(parents=True, exist_ok=True)
        self.runs += 1
        self.history.append(list(args))
        proc = await asyncio.create_subprocess_exec(
            self.binary,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env(),
            cwd=str(self.settings.dir),
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(), max(0.0, deadline - time.monotonic())
            )
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            _kill(proc)
            await proc.wait()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise DependencyFailed(
                f"resolving and installing packages timed out after {self.settings.timeout:g} s",
                details={"resolver_message": f"timed out after {self.settings.timeout:g} s"},
            ) from None
        return UvResult(
            proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")
        )


def _kill(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except ProcessLookupError:
            pass
