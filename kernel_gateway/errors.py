"""One exception tree for the gateway. Each HTTP-facing error carries a status
code and a machine code; the message is what the client sees, ``log_message``
(optional) is what the server log gets.

::

    GatewayError                          500 INTERNAL_ERROR
    ├── BadRequest                        400 BAD_REQUEST (INVALID_JSON, MISSING_FIELD, ...)
    │   ├── PathInvalid                   400 PATH_INVALID
    │   └── BadParameter                  400 BAD_PARAMETER (a query parameter, named)
    ├── Unauthorized                      401 UNAUTHORIZED
    ├── Forbidden                         403 FORBIDDEN (the caller token on an admin endpoint),
    │                                         ORIGIN_NOT_ALLOWED, HOST_NOT_ALLOWED
    │                                         SECRET_NOT_ALLOWED (to a kernel: outside its scope)
    ├── NotFound                          404 NOT_FOUND (SCRIPT_NOT_FOUND, NOT_RUNNING,
    │                                          ROUTE_NOT_FOUND, FUNCTION_NOT_FOUND, ...)
    ├── MethodNotAllowed                  405 METHOD_NOT_ALLOWED
    ├── Conflict                          409 ALREADY_RUNNING, REGISTRATION_CONFLICT, EXISTS,
    │                                         FILE_CHANGED (If-Match: the file changed since)
    │                                         DEPENDENCIES_NOT_READY (packages not installed yet)
    ├── PayloadTooLarge                   413 FILE_TOO_LARGE, SECRET_TOO_LARGE
    ├── UnsupportedMediaType              415 UNSUPPORTED_MEDIA_TYPE
    ├── RateLimited                       429 RATE_LIMITED (a script's calls per minute; Retry-After)
    ├── ScriptError                       422 BOOT_MISSING, BOOT_FAILED, BAD_ARGUMENTS,
    │                                         SYNTAX_ERROR (a start/restart/reload: details.findings)
    ├── DependencyError                   422 a script's declared packages (kernel_gateway/deps/)
    │   ├── DependencyInvalid             422 DEPENDENCY_INVALID (the declaration: TOML, a line)
    │   ├── DependencyConflict            422 DEPENDENCY_CONFLICT (needs another version of an
    │   │                                     engine package: details.package, engine_requires,
    │   │                                     script_requires, resolver_message)
    │   └── DependencyFailed              422 DEPENDENCY_FAILED (no such package, a build failed,
    │                                         the timeout: details.resolver_message)
    ├── HandlerError                      500 HANDLER_ERROR, RESULT_NOT_SERIALIZABLE
    ├── SecretUnreadable                  500 SECRET_UNREADABLE (the key does not decrypt it)
    ├── KernelDied                        502 KERNEL_DIED
    ├── MailFailed                        502 MAIL_FAILED (the SMTP server refused or is away)
    ├── PlatformError                     502 PLATFORM_ERROR (the VWED server refused or is away)
    ├── RemoteFailed                      502 REMOTE_FAILED (--scripts-remote cannot be read)
    ├── ServiceUnavailable                503 SCRIPT_STOPPING, KERNEL_UNAVAILABLE
    │   └── StoreTimeout                  503 STORE_TIMEOUT (the database did not answer in time)
    └── CallTimeout                       504 CALL_TIMEOUT
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "GatewayError",
    "KernelStartError",
    "BadRequest",
    "PathInvalid",
    "BadParameter",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "MethodNotAllowed",
    "Conflict",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "RateLimited",
    "ScriptError",
    "DependencyError",
    "DependencyInvalid",
    "DependencyConflict",
    "DependencyFailed",
    "HandlerError",
    "SecretUnreadable",
    "KernelDied",
    "MailFailed",
    "PlatformError",
    "RemoteFailed",
    "ServiceUnavailable",
    "StoreTimeout",
    "CallTimeout",
]


class GatewayError(Exception):
    """Base of the gateway's errors; subclasses fix ``status`` and a default ``code``."""

    status = 500
    code = "INTERNAL_ERROR"

    def __init__(
        self,
        message: str,
        code: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        log_message: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or {}
        self.log_message = log_message
        self.headers = headers or {}

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"success": False, "error": self.message, "code": self.code}
        body.update(self.details)
        return body


class BadRequest(GatewayError):
    status = 400
    code = "BAD_REQUEST"


class PathInvalid(BadRequest):
    code = "PATH_INVALID"


class BadParameter(BadRequest):
    """A query parameter that is unknown or has a bad value; the body names it
    (``"parameter"``)."""

    code = "BAD_PARAMETER"

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"parameter {name!r}: {problem}", details={"parameter": name})


class Unauthorized(GatewayError):
    status = 401
    code = "UNAUTHORIZED"


class Forbidden(GatewayError):
    status = 403
    code = "FORBIDDEN"


class NotFound(GatewayError):
    status = 404
    code = "NOT_FOUND"


class MethodNotAllowed(GatewayError):
    status = 405
    code = "METHOD_NOT_ALLOWED"


class Conflict(GatewayError):
    status = 409
    code = "CONFLICT"


class PayloadTooLarge(GatewayError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(GatewayError):
    status = 415
    code = "UNSUPPORTED_MEDIA_TYPE"


class RateLimited(GatewayError):
    """A call past its script's calls per minute (``quotas.py``); ``Retry-After`` says
    when a call will pass."""

    status = 429
    code = "RATE_LIMITED"


class ScriptError(GatewayError):
    status = 422
    code = "BOOT_FAILED"


class DependencyError(GatewayError):
    """A script's declared packages cannot be provided (``kernel_gateway/deps/``)."""

    status = 422
    code = "DEPENDENCY_FAILED"


class DependencyInvalid(DependencyError):
    """The declaration itself is wrong: its TOML, a requirement line, ``requires-python``."""

    code = "DEPENDENCY_INVALID"


class DependencyConflict(DependencyError):
    """The declaration needs another version of a package of the engine's environment;
    ``details``: ``package``, ``engine_requires``, ``script_requires``, ``resolver_message``."""

    code = "DEPENDENCY_CONFLICT"


class DependencyFailed(DependencyError):
    """Resolution or installation failed (no such package, a build failed, the timeout);
    ``details.resolver_message`` is uv's own message."""

    code = "DEPENDENCY_FAILED"


class HandlerError(GatewayError):
    status = 500
    code = "HANDLER_ERROR"


class SecretUnreadable(GatewayError):
    """A stored secret does not decrypt with the gateway's key (``kernel_gateway/secrets/``)."""

    status = 500
    code = "SECRET_UNREADABLE"


class KernelDied(GatewayError):
    status = 502
    code = "KERNEL_DIED"


class MailFailed(GatewayError):
    """Sending a ``VWED.mail`` message failed at the SMTP server (``mail.py``)."""

    status = 502
    code = "MAIL_FAILED"


class PlatformError(GatewayError):
    """The VWED server behind ``--platform-url`` did not answer, or refused a call
    (``platform/remote.py``)."""

    status = 502
    code = "PLATFORM_ERROR"


class RemoteFailed(GatewayError):
    """The scripts repository's remote (``--scripts-remote``) could not be fetched."""

    status = 502
    code = "REMOTE_FAILED"


class ServiceUnavailable(GatewayError):
    status = 503
    code = "KERNEL_UNAVAILABLE"


class StoreTimeout(ServiceUnavailable):
    """The database did not answer within its deadline (``--db-timeout``): stalled,
    unreachable behind a proxy, or locked. The operation may still complete later."""

    code = "STORE_TIMEOUT"


class CallTimeout(GatewayError):
    status = 504
    code = "CALL_TIMEOUT"


class KernelStartError(ServiceUnavailable):
    """A kernel did not start, or did not become ready."""

    code = "KERNEL_START_FAILED"
