"""The exceptions scripts can see from ``VWED``.

::

    VWEDError                      base of everything VWED raises on purpose
    ├── RegistrationError          bad path, method or name given to a register call
    ├── NotRegisteredError         no such route or function (locally or in the gateway)
    ├── GatewayUnavailableError    the call needs a gateway and none is attached
    ├── RemoteCallError            a call through the gateway failed (carries type, code)
    │   ├── SecretNotFound         ``VWED.secrets.get``: no secret of that name
    │   └── SecretNotAllowed       ``VWED.secrets.get``: the secret's scope leaves this script out
    └── MqttError                  ``VWED.mqtt``: no broker configured, unreachable, refused (code)
"""

from __future__ import annotations

__all__ = [
    "VWEDError",
    "RegistrationError",
    "NotRegisteredError",
    "GatewayUnavailableError",
    "RemoteCallError",
    "SecretNotFound",
    "SecretNotAllowed",
    "MqttError",
]


class VWEDError(Exception):
    """Base class of the errors raised by ``VWED``."""


class RegistrationError(VWEDError, ValueError):
    """A route, function or listener could not be registered (bad input)."""


class NotRegisteredError(VWEDError, LookupError):
    """The route or function asked for is not registered."""


class GatewayUnavailableError(VWEDError, RuntimeError):
    """The operation needs the gateway, and this kernel is not attached to one."""


class RemoteCallError(VWEDError):
    """A call through the gateway failed.

    ``code`` is the gateway's machine code (``CALL_TIMEOUT``, ``HANDLER_ERROR``,
    ...), ``remote_type`` the exception type raised on the other side, if any.
    """

    def __init__(self, message: str, code: str = "", remote_type: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.remote_type = remote_type


class SecretNotFound(RemoteCallError, LookupError):
    """No secret of that name is set (``PUT /script-engine/secrets/{name}`` sets one)."""


class SecretNotAllowed(RemoteCallError, PermissionError):
    """The secret exists, but its scope does not include this script."""


class MqttError(VWEDError, RuntimeError):
    """``VWED.mqtt`` could not do what was asked of the broker.

    ``code`` says why: ``MQTT_NOT_CONFIGURED`` (the gateway has no ``--mqtt-url``, or no
    gateway is attached), ``MQTT_UNREACHABLE`` (no connection to the broker could be
    made), ``MQTT_REFUSED`` (the broker refused the connection or a subscription: bad
    credentials, not authorized), ``MQTT_NOT_CONNECTED`` (the connection is down and
    being re-established: a QoS 0 message cannot wait for it), ``MQTT_TIMEOUT`` (the
    broker did not acknowledge in time).
    """

    def __init__(self, message: str, code: str = "MQTT_ERROR") -> None:
        super().__init__(message)
        self.code = code
