"""The audit hook (PEP 578) that enforces a script's :class:`~vwed_kernel.policy.Policy`
inside its kernel: outgoing connections and name lookups against ``network``,
process starts against ``subprocess``, file changes against ``write``.

Defence in depth, not a sandbox: ``policy.py`` says what a policy is and what a
hook cannot see. One hook per process, installed by :func:`install` when the
gateway's ``prepare`` brings a policy; it cannot be removed.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import Any

from .policy import ANY_PORT, NetworkTarget, Policy, PolicyError, PolicyViolation
from .sandbox import deny_exec

__all__ = ["install", "os_layers"]

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


class _Enforcer:
    """The audit hook's state: the policy and the addresses its host names resolved to."""

    def __init__(self, policy: Policy, report: Callable[[str], None] | None) -> None:
        self.policy = policy
        self.report = report
        self.local = threading.local()
        # (ip, target) pairs allowed because an allowed host name resolved to ip
        self.resolved: set[tuple[Any, NetworkTarget]] = set()
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
            # not an audit event: asked by the guard that install() puts on fork_exec
            handlers["_posixsubprocess.fork_exec"] = self._spawn
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
        return self._check_host(host, ANY_PORT)

    def _getnameinfo(self, event: str, args: tuple[Any, ...]) -> str | None:
        address = args[0] if args else None
        if not isinstance(address, tuple) or not address:
            return None
        host = address[0].decode() if isinstance(address[0], bytes) else str(address[0])
        return self._check_host(host, ANY_PORT)

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

    def _remember(self, name: str, targets: list[NetworkTarget]) -> None:
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
    return f"{host}:{port}" if port not in (None, 0, "", ANY_PORT) else host


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


# Per process by nature: an audit hook, once added, stays for the life of the process.
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
        _guard_fork_exec(enforcer)
        # the OS layer where there is one: exec refused even to ctypes (sandbox.py)
        enforcer.os_layers["seccomp"] = deny_exec() or "on"
    _INSTALLED.append(enforcer)
    sys.addaudithook(enforcer)
    return True


def os_layers() -> dict[str, str]:
    """The OS layers under this kernel's policy: ``{"seccomp": "on"}``, or the
    reason a layer is not there; empty without a policy or without one to apply."""
    return dict(_INSTALLED[0].os_layers) if _INSTALLED else {}
