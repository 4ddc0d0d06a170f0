"""``--kernel-user``: kernels run as a dedicated unprivileged user.

Security: this is the OS boundary between a script and the gateway. A kernel
that runs as another user cannot read the gateway's data directory (0700: the
tokens, the SQLite file) nor signal or trace the gateway, whatever the script
does (``ctypes`` included), which the audit-hook policy cannot promise. The
gateway must run as root to start a process as another user; the user must
exist, must not be root, and must be able to read the scripts root and run the
kernel's interpreter. All kernels share that one user: the boundary is between
the gateway and its kernels, not between two kernels.
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass

__all__ = ["KernelUser", "KernelUserError", "resolve_kernel_user", "unreachable"]


class KernelUserError(ValueError):
    """``--kernel-user`` cannot be used as asked."""


@dataclass(frozen=True)
class KernelUser:
    name: str
    uid: int
    gid: int
    home: str
    groups: frozenset[int]

    def popen_kwargs(self) -> dict[str, object]:
        """What ``subprocess.Popen`` needs to start the kernel as this user (no
        supplementary groups of the gateway are kept)."""
        return {"user": self.uid, "group": self.gid, "extra_groups": sorted(self.groups)}

    def env(self) -> dict[str, str]:
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name}


def resolve_kernel_user(name: str) -> KernelUser:
    """The user named ``name``, checked: the gateway runs as root, the user exists
    and is not root."""
    if os.geteuid() != 0:
        raise KernelUserError(
            f"kernel_user {name!r} needs the gateway to run as root (it runs as uid "
            f"{os.geteuid()}); without it, run the gateway itself as an unprivileged user"
        )
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise KernelUserError(
            f"kernel_user {name!r} does not exist (create it, e.g. 'useradd --system {name}')"
        ) from None
    if entry.pw_uid == 0:
        raise KernelUserError(f"kernel_user {name!r} is root: name an unprivileged user")
    groups = {entry.pw_gid, *os.getgrouplist(name, entry.pw_gid)}
    return KernelUser(name, entry.pw_uid, entry.pw_gid, entry.pw_dir, frozenset(groups))


def _allows(st: os.stat_result, user: KernelUser, bits: int) -> bool:
    """Whether the mode bits of ``st`` give ``user`` every permission in ``bits``
    (r=4, w=2, x=1); ACLs are not read."""
    if st.st_uid == user.uid:
        mode = (st.st_mode >> 6) & 7
    elif st.st_gid in user.groups:
        mode = (st.st_mode >> 3) & 7
    else:
        mode = st.st_mode & 7
    return mode & bits == bits


def unreachable(path: str, user: KernelUser, bits: int) -> str | None:
    """The first component of ``path`` that ``user`` cannot reach (no search
    permission on a folder on the way) or use as ``bits`` asks; None if it can."""
    real = os.path.realpath(path)
    parts = real.split(os.sep)
    for i in range(1, len(parts)):
        folder = os.sep.join(parts[:i]) or os.sep
        try:
            st = os.stat(folder)
        except OSError:
            return folder
        if stat.S_ISDIR(st.st_mode) and not _allows(st, user, 1):
            return folder
    try:
        st = os.stat(real)
    except OSError:
        return real
    return None if _allows(st, user, bits) else real
