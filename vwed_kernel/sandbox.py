"""OS-level enforcement of ``"subprocess": false``: a seccomp filter (Linux).

The audit hook (``policy_hook.py``) sees only what CPython audits; ``ctypes`` calling
libc's ``system()`` or ``execve()`` is not seen. A seccomp filter is seen by the
kernel of the operating system: once loaded, ``execve`` and ``execveat`` fail
with ``EPERM`` in every thread of the kernel process (``TSYNC``) and in any
process it forks, and it cannot be removed. Nothing else is filtered: a fork
without exec (the same Python, with the same hook and filter) still works.

Optional: it needs a libseccomp binding, Debian's ``python3-seccomp`` (module
``seccomp``) or PyPI's ``pyseccomp`` (the same API over ctypes; the ``sandbox``
extra installs it), and a Linux kernel with seccomp. Without one, the hook alone
applies; docs/security.md says what each layer closes.
"""

from __future__ import annotations

import errno
import os
import sys
from types import ModuleType

__all__ = ["deny_exec", "seccomp_binding"]


def seccomp_binding() -> ModuleType | None:
    """The libseccomp binding available to this Python, if any."""
    if not sys.platform.startswith("linux"):
        return None
    for name in ("seccomp", "pyseccomp"):
        try:
            return __import__(name)
        except (ImportError, OSError):  # OSError: the binding without libseccomp.so
            continue
    return None


def deny_exec() -> str | None:
    """Load the filter; None when it is in place, else why it is not.

    ``VWED_KERNEL_SECCOMP=0`` in a kernelspec's ``env`` leaves it out (to measure
    the hook alone, or for a kernel where the filter gets in the way)."""
    if os.environ.get("VWED_KERNEL_SECCOMP", "1") == "0":
        return "off (VWED_KERNEL_SECCOMP=0 in the kernelspec)"
    seccomp = seccomp_binding()
    if seccomp is None:
        return "no libseccomp binding (install the 'sandbox' extra or python3-seccomp)"
    try:
        rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
        # every thread of the kernel, not only the one the policy arrives on
        rules.set_attr(seccomp.Attr.CTL_TSYNC, 1)
        for call in ("execve", "execveat"):
            rules.add_rule(seccomp.ERRNO(errno.EPERM), call)
        rules.load()
    except Exception as exc:  # an old kernel, seccomp off in a container, ...
        return f"seccomp filter not loaded: {exc!r}"
    return None
