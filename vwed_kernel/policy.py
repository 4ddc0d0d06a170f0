"""A script's policy, enforced inside its kernel with a Python audit hook (PEP 578).

This is **defence in depth, not a sandbox.** The boundary between scripts is the
process (one kernel each, its own user if the operator runs it so). A hook sees the
events CPython audits, and code that calls C directly (``ctypes``, an extension
module, a library with its own sockets such as libzmq) is not seen. What a policy
does is stop the honest mistakes and the easy misuses: a script that should only
talk to its PLC opening a connection to the internet, a step shelling out, a
script writing outside its data folder. docs/security.md says what is covered.

A policy (the ``policy`` object of ``POST /script-engine/start``)::

    {"network": ["plc-1.local:502", "10.20.0.0/16", "*.corp.example"],
     "subprocess": false,
     "write": ["data", "/var/spool/vwed"]}

Each key is optional; a missing key does not restrict that kind of action.
``network`` lists where outgoing connections may go: a host name (``*.`` for a
domain and its hosts), an IP address or network, each with an optional
``:port``; ``unix:/path`` allows one Unix socket. ``write`` lists the folders
(and files) that may be created, written, renamed or removed; relative entries
are under the kernel's working folder. Reading is never restricted. Once a
policy is installed it cannot be loosened: audit hooks cannot be removed.

This module is the policy itself and the parsing of its JSON form;
``policy_hook.py`` is the audit hook that enforces it.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Policy", "PolicyError", "PolicyViolation", "NetworkTarget", "ANY_PORT"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
ANY_PORT = object()  # a lookup names no port: any entry for the host allows it


class PolicyError(ValueError):
    """A policy that cannot be understood (the start is refused with 400)."""


class PolicyViolation(PermissionError):
    """Raised where a script does what its policy forbids."""


@dataclass(frozen=True)
class NetworkTarget:
    """One ``network`` entry."""

    text: str
    port: int | None
    name: str | None = None  # exact host name, lower case
    suffix: str | None = None  # "*.corp.example" -> ".corp.example"
    net: IPNetwork | None = None
    unix: str | None = None

    def port_ok(self, port: Any) -> bool:
        if self.port is None or port is ANY_PORT:
            return True
        try:
            return int(port) == self.port
        except (TypeError, ValueError):
            return False


@dataclass
class Policy:
    network: list[NetworkTarget] | None = None  # None: any host
    subprocess: bool = True
    write: list[str] | None = None  # None: anywhere the process may write
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def restricts(self) -> bool:
        return self.network is not None or not self.subprocess or self.write is not None

    @classmethod
    def parse(cls, data: Any, cwd: str | None = None) -> Policy:
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise PolicyError(
                "'policy' must be an object with 'network', 'subprocess' and/or 'write'"
            )
        unknown = set(data) - {"network", "subprocess", "write"}
        if unknown:
            raise PolicyError(
                f"'policy' has unknown keys: {', '.join(sorted(unknown))} "
                "(known: network, subprocess, write)"
            )
        policy = cls(source=dict(data))
        if data.get("network") is not None:
            policy.network = [_parse_target(t) for t in _strings(data["network"], "network")]
        if data.get("subprocess") is not None:
            if not isinstance(data["subprocess"], bool):
                raise PolicyError("'policy.subprocess' must be true or false")
            policy.subprocess = data["subprocess"]
        if data.get("write") is not None:
            base = cwd or os.getcwd()
            policy.write = [
                os.path.realpath(os.path.join(base, os.path.expanduser(p)))
                for p in _strings(data["write"], "write")
            ]
        return policy


def _strings(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise PolicyError(f"'policy.{key}' must be a list of non-empty strings")
    return [v.strip() for v in value]


def _parse_target(text: str) -> NetworkTarget:
    if text.startswith("unix:"):
        return NetworkTarget(text, None, unix=os.path.realpath(text[5:]))
    host, port = text, None
    if text.startswith("["):  # [v6]:port
        end = text.find("]")
        if end < 0:
            raise PolicyError(f"network entry {text!r}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise PolicyError(f"network entry {text!r}: expected ':port' after ']'")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    number: int | None = None
    if port is not None:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise PolicyError(f"network entry {text!r}: the port must be 1-65535")
        number = int(port)
    try:
        return NetworkTarget(text, number, net=ipaddress.ip_network(host, strict=False))
    except ValueError:
        pass
    name = host.lower().rstrip(".")
    if name.startswith("*."):
        if not _valid_name(name[2:]):
            raise PolicyError(f"network entry {text!r} is not a host name, address or network")
        return NetworkTarget(text, number, suffix=name[1:])
    if not _valid_name(name):
        raise PolicyError(f"network entry {text!r} is not a host name, address or network")
    return NetworkTarget(text, number, name=name)


def _valid_name(name: str) -> bool:
    labels = name.split(".")
    return (
        bool(name)
        and len(name) <= 253
        and all(
            label and len(label) <= 63 and all(c.isalnum() or c in "-_" for c in label)
            for label in labels
        )
    )
