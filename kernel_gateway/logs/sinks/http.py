"""``http(s)://host/path``: a webhook that receives each batch as a JSON array of records.

A batch is POSTed (``Content-Type: application/json``); any 2xx answer delivers it. A
connection error, a timeout, a 429 or a 5xx is retried with exponential backoff; any
other answer (a 4xx: the receiver refuses it) drops the batch at once (counted).

Options: ``timeout`` (seconds per request, default 5), ``retries`` (default 5),
``backoff`` (seconds before the first retry, doubled each time up to 30; default 0.5),
``token_env`` (the name of an environment variable of the gateway holding a bearer
token: ``Authorization: Bearer ...``; a token is never written in the URL itself),
``ca`` (a PEM file of the certificate authorities an https receiver is checked against,
instead of the usual ones).
Query parameters that are none of these are the receiver's: they are sent along.
Credentials in the URL (``https://user:password@host/``) are sent as basic auth;
prefer ``token_env``: a URL is seen in the process list.
"""

from __future__ import annotations

import json
import os
import ssl
from typing import Any
from urllib.parse import urlencode

import httpx

from .base import LogSink, SinkError

__all__ = ["HttpSink", "RetryableAnswer"]


class RetryableAnswer(Exception):
    """The receiver answered 429 or 5xx: the batch is sent again."""


class HttpSink(LogSink):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.timeout = self.option("timeout", 5.0, minimum=0.001)
        self.retries = self.option("retries", 5, minimum=0)
        self.backoff = self.option("backoff", 0.5, minimum=0.0)
        token_env = self.option("token_env", "")
        self.ca = self.option("ca", "")
        if self.ca and not os.path.isfile(self.ca):
            raise SinkError(f"log sink {self.name}: ca {self.ca!r} is not a file")
        if not self.parts.hostname:
            raise SinkError(f"log sink {self.name}: the URL has no host")
        self._headers = {"Content-Type": "application/json", "User-Agent": "vwed-gateway"}
        if token_env:
            token = os.environ.get(token_env, "")
            if not token:
                raise SinkError(
                    f"log sink {self.name}: token_env names {token_env!r}, which is not set"
                )
            self._headers["Authorization"] = f"Bearer {token}"
        # the URL posted to: the query parameters that are not options go along
        self._target = self.parts._replace(
            query=urlencode(list(self._options.items())), fragment=""
        ).geturl()
        self._options.clear()
        self._client: httpx.Client | None = None

    def open(self) -> None:
        verify: ssl.SSLContext | bool = True
        if self.ca:
            try:
                verify = ssl.create_default_context(cafile=self.ca)
            except (OSError, ssl.SSLError) as exc:
                raise SinkError(f"log sink {self.name}: ca {self.ca!r}: {exc}") from None
        self._client = httpx.Client(timeout=self.timeout, follow_redirects=False, verify=verify)

    def send(self, records: list[dict[str, Any]]) -> None:
        body = json.dumps(records, ensure_ascii=False, default=str).encode()
        self.retrying(
            lambda: self._post(body),
            self.retries,
            self.backoff,
            retry_on=(httpx.TransportError, RetryableAnswer),
        )

    def _post(self, body: bytes) -> None:
        assert self._client is not None
        answer = self._client.post(self._target, content=body, headers=self._headers)
        if answer.status_code == 429 or answer.status_code >= 500:
            raise RetryableAnswer(f"the receiver answered {answer.status_code}")
        if not 200 <= answer.status_code < 300:
            raise SinkError(f"the receiver refused the batch: {answer.status_code}")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
