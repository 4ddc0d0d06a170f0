"""The operator's web console: ``/`` (the page) and ``/console/<file>`` (its static files).

The files hold no data (every datum comes from the JSON API with the token the operator
types), so they need no token. Served from the package's ``console/`` folder only: a
path is resolved (symlinks included) and must stay inside it, else 404. Every answer is
``Cache-Control: no-cache`` (the browser revalidates with the ETag: an upgraded gateway
shows its new page at once) and carries the page's Content-Security-Policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tornado import web

from ..errors import NotFound
from .base import log_exception, request_summary, write_json_error
from .guard import check_host

__all__ = ["CONSOLE_DIR", "CONTENT_SECURITY_POLICY", "ConsoleFileHandler", "ConsoleIndexHandler"]

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
# No inline script anywhere; CodeMirror sets style attributes, hence 'unsafe-inline' for styles.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


class ConsoleFileHandler(web.StaticFileHandler):
    """GET/HEAD ``/console/<file>``: a file of the console folder, confined to it."""

    allow_hosts: tuple[str, ...] | None = ()

    def initialize(  # type: ignore[override]
        self,
        token: Any = None,
        allow_origins: tuple[str, ...] = (),
        allow_hosts: tuple[str, ...] | None = (),
    ) -> None:
        self.allow_hosts = allow_hosts
        super().initialize(path=str(CONSOLE_DIR))

    def prepare(self) -> None:
        check_host(self.request, self.allow_hosts)

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("X-Frame-Options", "DENY")

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")

    def get_cache_time(self, path: str, modified: Any, mime_type: str) -> int:
        return 0  # revalidate every time (ETag): no stale page after an upgrade

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        # Tornado confines the path (as written, then with its symlinks resolved) and
        # refuses what is not a regular file; all of these are one answer here, 404,
        # so a caller cannot tell a missing file from one outside the folder.
        try:
            return super().validate_absolute_path(root, absolute_path)
        except web.HTTPError as exc:
            if exc.status_code in (403, 404):
                raise self._missing() from None
            raise

    def _missing(self) -> NotFound:
        return NotFound(f"no console file {self.path!r}", "FILE_NOT_FOUND")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Cache-Control", "no-store")
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.status_code in (403, 404):
            exc = self._missing()  # refused by Tornado before validate_absolute_path
        write_json_error(self, status_code, exc)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        log_exception(self, typ, value, tb)

    def _request_summary(self) -> str:
        return request_summary(self)


class ConsoleIndexHandler(ConsoleFileHandler):
    """GET/HEAD ``/``: the console's page (``console/index.html``)."""

    async def get(self, path: str = "", include_body: bool = True) -> None:
        await super().get("index.html", include_body)

    async def head(self, path: str = "") -> None:  # type: ignore[override]
        await super().get("index.html", include_body=False)
