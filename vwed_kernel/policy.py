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
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Policy", "PolicyError", "PolicyViolation", "install", "os_layers"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_SPAWN_EVENTS = frozenset(
    {
        "subprocess.Popen",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "os.startfile",
        "pty.spawn",
    }
)
# event -> the positions of its arguments that are paths being changed
_PATH_EVENTS: dict[str, tuple[int, ...]] = {
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.mkdir": (0,),
    "os.rename": (0, 1),
    "os.replace": (0, 1),
    "os.symlink": (1,),
    "os.link": (0, 1),
    "os.truncate": (0,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.utime": (0,),
    "os.chflags": (0,),
    "os.lchflags": (0,),
    "os.lchmod": (0,),
    "os.mkfifo": (0,),
    "os.mknod": (0,),
    "shutil.rmtree": (0,),
    "os.setxattr": (0,),
    "os.removexattr": (0,),
}
# event -> for each path it changes, (its position, the position of its ``dir_fd``
# argument or None): a relative path is under that folder. ``os.link`` and
# ``os.rename`` have one ``dir_fd`` per path; each path is checked against its own.
_DIR_FD: dict[str, tuple[tuple[int, int | None], ...]] = {
    "os.remove": ((0, 1),),
    "os.rmdir": ((0, 1),),
    "os.mkdir": ((0, 2),),
    "os.rename": ((0, 2), (1, 3)),
    "os.replace": ((0, 2), (1, 3)),
    "os.symlink": ((1, 2),),
    # a hard link to a file outside the writable paths would let the file be written
    # through the link: its source must be writable too
    "os.link": ((0, 2), (1, 3)),
    "os.chmod": ((0, 2),),
    "os.chown": ((0, 3),),
    "os.utime": ((0, 4),),
    "shutil.rmtree": ((0, 1),),
}
# Name lookups the ``network`` list covers besides getaddrinfo (event -> position of the host)
_LOOKUP_EVENTS = {"socket.gethostbyname": 0, "socket.gethostbyaddr": 0}
_ANY_PORT = object()  # a lookup names no port: any entry for the host allows it


class PolicyError(ValueError):
    """A policy that cannot be understood (the start is refused with 400)."""


class PolicyViolation(PermissionError):
    """Raised where a script does what its policy forbids."""


@dataclass(frozen=True)
class _Target:
    """One ``network`` entry."""

    text: str
    port: int | None
    name: str | None = None  # exact host name, lower case
    suffix: str | None = None  # "*.corp.example" -> ".corp.example"
    net: IPNetwork | None = None
    unix: str | None = None

    def port_ok(self, port: Any) -> bool:
        if self.port is None or port is _ANY_PORT:
            return True
        try:
            return int(port) == self.port
        except (TypeError, ValueError):
            return False


@dataclass
class Policy:
    network: list[_Target] | None = None  # None: any host
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


def _parse_target(text: str) -> _Target:
    if text.startswith("unix:"):
        return _Target(text, None, unix=os.path.realpath(text[5:]))
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
        return _Target(text, number, net=ipaddress.ip_network(host, strict=False))
    except ValueError:
        pass
    name = host.lower().rstrip(".")
    if name.startswith("*."):
        if not _valid_name(name[2:]):
            raise PolicyError(f"network entry {text!r} is not a host name, address or network")
        return _Target(text, number, suffix=name[1:])
    if not _valid_name(name):
        raise PolicyError(f"network entry {text!r} is not a host name, address or network")
    return _Target(text, number, name=name)


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


class _Enforcer:
    """The audit hook's state: the policy and the addresses its host names resolved to."""

    def __init__(self, policy: Policy, report: Callable[[str], None] | None) -> None:
        self.policy = policy
        self.report = report
        self.local = threading.local()
        # (ip, target) pairs allowed because an allowed host name resolved to ip
        self.resolved: set[tuple[Any, _Target]] = set()
        self.lock = threading.Lock()
        self.os_layers: dict[str, str] = {}
        handlers: dict[str, Callable[[str, tuple[Any, ...]], str | None]] = {}
        if policy.network is not None:
            handlers["socket.getaddrinfo"] = self._getaddrinfo
            handlers["socket.connect"] = self._connect
            handlers["socket.sendto"] = self._connect
            handlers["socket.sendmsg"] = self._connect
            for event in _LOOKUP_EVENTS:
                handlers[event] = self._lookup
            handlers["socket.getnameinfo"] = self._getnameinfo
        if not policy.subprocess:
            for event in _SPAWN_EVENTS:
                handlers[event] = self._spawn
            # a second copy of _posixsubprocess would come without the guard on fork_exec
            handlers["import"] = self._import
        if policy.write is not None:
            handlers["open"] = self._open
            handlers["sqlite3.connect"] = self._sqlite
            for event in _PATH_EVENTS:
                handlers[event] = self._path_event
        self.handlers = handlers

    # the hook -----------------------------------------------------------------------
    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        handler = self.handlers.get(event)
        if handler is None or getattr(self.local, "busy", False):
            return
        self.local.busy = True  # what the checks do themselves is not checked
        try:
            denied = handler(event, args)
        finally:
            self.local.busy = False
        if denied:
            message = f"the policy of this script forbids {denied}"
            if self.report is not None:
                self.local.busy = True
                try:
                    self.report(message)
                except Exception:  # noqa: S110 - a failed report must not hide the refusal
                    pass
                finally:
                    self.local.busy = False
            raise PolicyViolation(message)

    # subprocess ---------------------------------------------------------------------
    def _spawn(self, event: str, args: tuple[Any, ...]) -> str | None:
        what = args[0] if args and event not in ("os.fork", "os.forkpty") else ""
        return f"starting a process ({event}{f': {what!r}' if what else ''})"

    def _import(self, event: str, args: tuple[Any, ...]) -> str | None:
        if args and args[0] == "_posixsubprocess" and len(args) > 1 and args[1] is not None:
            return "loading _posixsubprocess again (it starts processes)"
        return None

    # files --------------------------------------------------------------------------
    def _writable(self, path: Any, dir_fd: Any = None) -> bool:
        if isinstance(path, int):
            # an open descriptor (fchmod, fchown, ftruncate, ...): the file it names
            # counts, whatever mode it was opened in (a read-only descriptor of a
            # file outside the writable paths must not change it)
            try:
                path = os.readlink(f"/proc/self/fd/{path}")
            except OSError:
                return False
            if not path.startswith("/"):
                return True  # a pipe, socket or anonymous file: no path to protect
        try:
            path = os.fsdecode(os.fspath(path))
        except TypeError:
            return True
        if path == os.devnull:
            return True
        if isinstance(dir_fd, int) and dir_fd >= 0 and not os.path.isabs(path):
            try:
                path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
            except OSError:
                return False
        real = os.path.realpath(path)
        return any(
            real == root or real.startswith(root.rstrip(os.sep) + os.sep)
            for root in self.policy.write or ()
        )

    def _open(self, event: str, args: tuple[Any, ...]) -> str | None:
        path, mode, flags = (tuple(args) + (None, None, 0))[:3]
        if isinstance(mode, str):
            writes = any(c in mode for c in "wax+")
        else:
            writes = bool((flags or 0) & _WRITE_FLAGS)
        if isinstance(path, int):
            return None  # opening a descriptor again: it can only write if it already could
        if writes and not self._writable(path):
            return f"writing {os.fsdecode(path)!r} (not under a writable path)"
        return None

    def _sqlite(self, event: str, args: tuple[Any, ...]) -> str | None:
        database = args[0] if args else ":memory:"
        if isinstance(database, str | bytes | os.PathLike):
            text = os.fsdecode(database)
            if text == ":memory:" or text.startswith("file::memory:") or text == "":
                return None
            if text.startswith("file:"):
                text = text[5:].split("?", 1)[0]
            if not self._writable(text):
                return f"opening the database {text!r} (not under a writable path)"
        return None

    def _path_event(self, event: str, args: tuple[Any, ...]) -> str | None:
        pairs = _DIR_FD.get(event) or tuple((i, None) for i in _PATH_EVENTS[event])
        for index, fd_at in pairs:
            dir_fd = args[fd_at] if fd_at is not None and len(args) > fd_at else None
            if index < len(args) and not self._writable(args[index], dir_fd):
                return f"{event} of {_shown(args[index])} (not under a writable path)"
        return None

    # network ------------------------------------------------------------------------
    def _getaddrinfo(self, event: str, args: tuple[Any, ...]) -> str | None:
        host, port = (tuple(args) + (None, None))[:2]
        if host is None:
            return None  # the local host, for bind
        host = host.decode() if isinstance(host, bytes) else str(host)
        return self._check_host(host, port)

    def _lookup(self, event: str, args: tuple[Any, ...]) -> str | None:
        host = args[_LOOKUP_EVENTS[event]] if args else None
        if host is None:
            return None
        host = host.decode() if isinstance(host, bytes) else str(host)
        return self._check_host(host, _ANY_PORT)

    def _getnameinfo(self, event: str, args: tuple[Any, ...]) -> str | None:
        address = args[0] if args else None
        if not isinstance(address, tuple) or not address:
            return None
        host = address[0].decode() if isinstance(address[0], bytes) else str(address[0])
        return self._check_host(host, _ANY_PORT)

    def _connect(self, event: str, args: tuple[Any, ...]) -> str | None:
        if len(args) < 2 or args[1] is None:
            return None  # sendmsg on a connected socket
        sock, address = args[0], args[1]
        family = getattr(sock, "family", None)
        if family == getattr(socket, "AF_UNIX", None):
            path = (
                os.path.realpath(os.fsdecode(address)) if isinstance(address, str | bytes) else ""
            )
            if any(t.unix == path for t in self.policy.network or ()):
                return None
            return f"connecting to the Unix socket {address!r}"
        if family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
            return f"a connection on socket family {family!r}"
        host, port = address[0], address[1]
        host = host.decode() if isinstance(host, bytes) else str(host)
        return self._check_host(host, port)

    def _check_host(self, host: str, port: Any) -> str | None:
        targets = self.policy.network or []
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            ip = None
        if ip is not None:
            if any(t.net is not None and ip in t.net and t.port_ok(port) for t in targets):
                return None
            with self.lock:
                if any(i == ip and t.port_ok(port) for i, t in self.resolved):
                    return None
            return f"connecting to {_where(host, port)} (not in its network list)"
        name = host.lower().rstrip(".")
        matched = [
            t
            for t in targets
            if t.port_ok(port)
            and (
                t.name == name
                or (t.suffix is not None and (name.endswith(t.suffix) or name == t.suffix[1:]))
            )
        ]
        if not matched:
            return f"connecting to {_where(host, port)} (not in its network list)"
        self._remember(name, matched)
        return None

    def _remember(self, name: str, targets: list[_Target]) -> None:
        """The addresses an allowed name resolves to are allowed for the same targets
        (the connect that follows a lookup only names the address)."""
        try:
            infos = socket.getaddrinfo(name, None)
        except OSError:
            return
        with self.lock:
            for info in infos:
                ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
                for t in targets:
                    self.resolved.add((ip, t))


def _where(host: str, port: Any) -> str:
    return f"{host}:{port}" if port not in (None, 0, "", _ANY_PORT) else host


def _shown(path: Any) -> str:
    return f"descriptor {path}" if isinstance(path, int) else repr(os.fsdecode(path))


def _guard_fork_exec(enforcer: _Enforcer) -> None:
    """``_posixsubprocess.fork_exec`` starts a process without an audit event
    (``multiprocessing``'s spawn and forkserver, ``multiprocessing.util.spawnv_passfds``
    and ``subprocess`` all go through it): the module's function is replaced by one
    that asks the policy first."""
    try:
        import _posixsubprocess
    except ImportError:  # not a POSIX system
        return
    original = _posixsubprocess.fork_exec

    def fork_exec(*args: Any) -> Any:
        enforcer("_posixsubprocess.fork_exec", args[:2])
        return original(*args)

    _posixsubprocess.fork_exec = fork_exec


_INSTALLED: list[_Enforcer] = []


def install(policy: Policy, report: Callable[[str], None] | None = None) -> bool:
    """Install the audit hook for ``policy`` (once per process); False if it restricts nothing."""
    if not policy.restricts:
        return False
    if _INSTALLED:
        raise PolicyError("this kernel already has a policy; a policy cannot be changed or removed")
    if policy.write is not None:
        # The kernel's own files: ipykernel names cells in a folder of its own under the
        # temporary directory (tempfile finds that directory by writing a probe file,
        # so it is found now, before the hook).
        policy.write.append(
            os.path.realpath(os.path.join(tempfile.gettempdir(), f"ipykernel_{os.getpid()}"))
        )
    enforcer = _Enforcer(policy, report)
    if not policy.subprocess:
        enforcer.handlers["_posixsubprocess.fork_exec"] = enforcer._spawn
        _guard_fork_exec(enforcer)
        # the OS layer where there is one: exec refused even to ctypes (sandbox.py)
        from .sandbox import deny_exec

        enforcer.os_layers["seccomp"] = deny_exec() or "on"
    _INSTALLED.append(enforcer)
    sys.addaudithook(enforcer)
    return True


def os_layers() -> dict[str, str]:
    """The OS layers under this kernel's policy: ``{"seccomp": "on"}``, or the
    reason a layer is not there; empty without a policy or without one to apply."""
    return dict(_INSTALLED[0].os_layers) if _INSTALLED else {}
