"""``VWED.http``: outgoing HTTP with a timeout by default (on httpx)."""

from __future__ import annotations

from typing import Any

__all__ = ["HttpModule", "HttpResponse", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = 10.0


class HttpResponse:
    """``status``, ``headers``, ``text``, ``content`` and ``json()`` of an answer."""

    def __init__(self, response: Any) -> None:
        self._response = response
        self.status: int = response.status_code
        self.status_code = self.status
        self.headers: dict[str, str] = dict(response.headers)
        self.url = str(response.url)

    @property
    def text(self) -> str:
        return str(self._response.text)

    @property
    def content(self) -> bytes:
        return bytes(self._response.content)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400

    def json(self) -> Any:
        """The body parsed as JSON (``ValueError`` if it is not)."""
        return self._response.json()

    def raise_for_status(self) -> HttpResponse:
        """Raise ``httpx.HTTPStatusError`` for a 4xx/5xx answer."""
        self._response.raise_for_status()
        return self

    def __repr__(self) -> str:
        return f"<HttpResponse {self.status} {self.url}>"


class HttpModule:
    """``VWED.http.get(url, params=None, headers=None, timeout=10)`` and ``post/put/delete/
    request``; ``aget/apost/aput/adelete/arequest`` in ``async`` handlers. Keyword
    arguments are httpx's (``json=``, ``data=``, ``params=``, ``headers=``, ``auth=``...).
    Every request has a timeout (10 s unless given)."""

    def request(self, method: str, url: str, **kwargs: Any) -> HttpResponse:
        """Send a request and return its :class:`HttpResponse`."""
        import httpx

        kwargs.setdefault("timeout", DEFAULT_TIMEOUT)
        return HttpResponse(httpx.request(method, url, **kwargs))

    async def arequest(self, method: str, url: str, **kwargs: Any) -> HttpResponse:
        """``await`` form of :meth:`request`."""
        import httpx

        timeout = kwargs.pop("timeout", DEFAULT_TIMEOUT)
        async with httpx.AsyncClient(timeout=timeout) as client:
            return HttpResponse(await client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> HttpResponse:
        """GET ``url``."""
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> HttpResponse:
        """POST to ``url`` (``json=`` or ``data=``)."""
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> HttpResponse:
        """PUT to ``url``."""
        return self.request("PUT", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> HttpResponse:
        """DELETE ``url``."""
        return self.request("DELETE", url, **kwargs)

    async def aget(self, url: str, **kwargs: Any) -> HttpResponse:
        """``await`` form of :meth:`get`."""
        return await self.arequest("GET", url, **kwargs)

    async def apost(self, url: str, **kwargs: Any) -> HttpResponse:
        """``await`` form of :meth:`post`."""
        return await self.arequest("POST", url, **kwargs)

    async def aput(self, url: str, **kwargs: Any) -> HttpResponse:
        """``await`` form of :meth:`put`."""
        return await self.arequest("PUT", url, **kwargs)

    async def adelete(self, url: str, **kwargs: Any) -> HttpResponse:
        """``await`` form of :meth:`delete`."""
        return await self.arequest("DELETE", url, **kwargs)
