"""Encoding of call results and route requests for the wire (docs/protocol.md).

Results are serialized to JSON bytes exactly once, here in the kernel, and sent
as a comm buffer; the gateway copies those bytes into its HTTP answer without
parsing them again.
"""

from __future__ import annotations

import json
from typing import Any

from .response import Response

__all__ = [
    "ResultNotSerializable",
    "encode_value",
    "encode_response_body",
    "encode_result",
    "decode_request",
]


class ResultNotSerializable(TypeError):
    """A handler returned something that is not JSON-serializable."""


def encode_value(value: Any) -> bytes:
    try:
        return json.dumps(
            value, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise ResultNotSerializable(
            f"result of type {type(value).__name__} is not JSON-serializable: {exc}"
        ) from None


def encode_response_body(response: Response) -> tuple[bytes, str, str | None]:
    """``(bytes, body_type, content_type)`` of a :class:`Response` for the wire."""
    body = response.body
    if body is None:
        return b"", "none", response.content_type
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body), "bytes", response.content_type or "application/octet-stream"
    if isinstance(body, str):
        return body.encode(), "text", response.content_type or "text/plain; charset=utf-8"
    return encode_value(body), "json", response.content_type or "application/json"


def encode_result(kind: str, value: Any) -> tuple[dict[str, Any], list[bytes]]:
    """Fields of the ``result`` message and its buffers for a handler's return value."""
    if kind == "api" and isinstance(value, Response):
        body, body_type, content_type = encode_response_body(value)
        fields = {
            "response": {
                "status": value.status,
                "headers": value.headers,
                "content_type": content_type,
                "body_type": body_type,
            }
        }
        return fields, [body]
    return {"encoding": "json"}, [encode_value(value)]


def decode_request(request: dict[str, Any], buffers: list[Any]) -> dict[str, Any]:
    """Build the request dict a route handler receives from the wire form."""
    raw = bytes(buffers[0]) if buffers else b""
    req = dict(request)
    req.setdefault("path_params", {})
    req.setdefault("query_params", {})
    req.setdefault("headers", {})
    req["json"] = None
    req["body"] = None
    if raw:
        ctype = str(req.get("content_type") or "").lower()
        try:
            text: str | bytes = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw
        req["body"] = text
        if "json" in ctype or (not ctype and isinstance(text, str) and text[:1] in "{["):
            try:
                req["json"] = json.loads(raw)
            except (ValueError, RecursionError):  # not JSON, or nested too deeply
                pass
    return req
