"""OS-level enforcement of a policy's ``write`` list: Landlock (Linux 5.13+).

Landlock restricts the thread that applies it and every thread and process
created after, never the threads that already run. ipykernel starts several
threads (control, IOPub, heartbeat) that accept work, so the ruleset is applied
in the kernel's launcher, before ipykernel starts (``launch.py``), from the
policy the gateway puts in the kernel's environment (``VWED_KERNEL_POLICY``:
``{"write": [...], "folder": "<the script's folder>"}``). The kernel then cannot
create, write, truncate, rename or remove anything outside those paths, ``ctypes``
and child processes included. Reading, executing and metadata (chmod, chown,
utime) are not Landlock's to restrict here: the audit hook still checks those.

Besides the listed paths, what the kernel itself writes stays writable: its
ipykernel cell folder, the IPython folder (history), ``/dev/null``. A listed
path that does not exist when the kernel starts cannot be covered (Landlock
rules name open files): writing there is refused. ``VWED_KERNEL_LANDLOCK=0`` in a
kernelspec's ``env`` leaves Landlock out. No dependency: three system calls
through ctypes.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import tempfile

__all__ = ["restrict_writes", "apply_from_environment", "abi_version"]

_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446  # the same on every architecture
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

_WRITE_FILE = 1 << 1
_REMOVE_DIR, _REMOVE_FILE = 1 << 4, 1 << 5
_MAKE = sum(1 << b for b in range(6, 13))  # char, dir, reg, sock, fifo, block, sym
_REFER = 1 << 13  # ABI 2: link or rename into another folder
_TRUNCATE = 1 << 14  # ABI 3


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def abi_version() -> int:
    """The Landlock ABI of the running Linux kernel (0: none)."""
    if not sys.platform.startswith("linux"):
        return 0
    version = _libc().syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    return max(0, int(version))


def restrict_writes(paths: list[str]) -> str | None:
    """Allow writing beneath ``paths`` only, for this thread and all it starts;
    None when applied, else why not."""
    abi = abi_version()
    if abi < 1:
        return "Landlock is not available in this Linux kernel"
    handled = _WRITE_FILE | _REMOVE_DIR | _REMOVE_FILE | _MAKE
    if abi >= 2:
        handled |= _REFER
    if abi >= 3:
        handled |= _TRUNCATE
    file_rights = handled & (_WRITE_FILE | _TRUNCATE)
    libc = _libc()
    attr = _RulesetAttr(handled)
    ruleset = libc.syscall(
        _CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), 0
    )
    if ruleset < 0:
        return f"landlock_create_ruleset failed: {os.strerror(ctypes.get_errno())}"
    try:
        for path in paths:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # not there: nothing to allow beneath it
            try:
                rights = handled if os.path.isdir(path) else file_rights
                rule = _PathBeneath(rights, fd)
                if libc.syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0):
                    return f"landlock_add_rule({path!r}) failed: {os.strerror(ctypes.get_errno())}"
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
            return f"prctl(NO_NEW_PRIVS) failed: {os.strerror(ctypes.get_errno())}"
        if libc.syscall(_RESTRICT_SELF, ruleset, 0):
            return f"landlock_restrict_self failed: {os.strerror(ctypes.get_errno())}"
    finally:
        os.close(ruleset)
    return None


def _kernel_own_paths() -> list[str]:
    """What the kernel itself writes: its cell folder, the IPython folder, /dev/null."""
    cells = os.path.join(tempfile.gettempdir(), f"ipykernel_{os.getpid()}")
    os.makedirs(cells, exist_ok=True)
    from IPython.paths import get_ipython_dir

    # IPython picks a new temporary folder on each look when the home is not
    # writable (a kernel user without a home): fix the one allowed here for good
    ipython = get_ipython_dir()
    os.makedirs(ipython, exist_ok=True)
    os.environ["IPYTHONDIR"] = ipython
    return [cells, ipython, os.devnull]


def apply_from_environment() -> str | None:
    """Apply the ruleset ``VWED_KERNEL_POLICY`` asks for (called before ipykernel
    starts a thread); None when applied or not asked, else why not."""
    raw = os.environ.pop("VWED_KERNEL_POLICY", None)
    if not raw or os.environ.get("VWED_KERNEL_LANDLOCK", "1") == "0":
        return None
    from .policy import Policy, PolicyError

    try:
        data = json.loads(raw)
        policy = Policy.parse({"write": data.get("write")}, data.get("folder") or None)
    except (ValueError, PolicyError, AttributeError) as exc:
        return f"unreadable policy ({exc}); the gateway's prepare reports it"
    if policy.write is None:
        return None
    return restrict_writes([*policy.write, *_kernel_own_paths()])
