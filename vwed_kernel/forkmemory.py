"""How the fork server lays out its memory before forking, so that a kernel forked
from it writes to as few of the shared pages as it can (docs/performance.md,
"Fork server (issue 19)").

A forked kernel's private memory is almost all copy-on-write: CPython 3.11 writes
to every object it touches (its reference count), and each write copies the whole
4 KiB page the object sits on. Objects a kernel's start touches one by one all
over the heap cost a page each; the same objects side by side cost a few pages.
What the fork server does here, once, before its first fork (``prepare``):

- ``warm``: an IPython kernel is built and dropped (no sockets, no threads), so
  that the code its construction runs is quickened here (CPython 3.11 rewrites a
  function's bytecode the first times it runs) and the caches it fills are filled;
  whatever it changed of the process (singletons, builtins, ``sys``, atexit, the
  environment) is put back.
- ``pack_module_strings``: every module gets a new copy of its name (the
  ``sys.modules`` key) and of its ``__file__``, allocated one after the other. A
  kernel's start keeps a reference to each of them (IPython's snapshot of
  ``sys.modules``' keys; ipykernel's list of the modules' files), which wrote to
  a page per string.
- ``snapshot_modules``: the files of the modules loaded by now, for ipykernel's
  list of "kernel modules" (``kernel_modules_view``): ipykernel builds it by
  walking every module object (``sys.modules.copy()``), which wrote to every
  page that holds a module.
- ``fill_pools``: the free blocks of the small-object allocator's pools are taken
  (objects kept for ever, never touched again), so that a kernel's new objects
  go to pools of its own instead of to free blocks among the server's objects.

``kernel_modules_view`` is the kernel's side: in a forked kernel, the construction
of the IPython kernel reads the snapshot (and the modules imported since) instead
of walking ``sys.modules``. Elsewhere (a plain launch) it changes nothing.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

__all__ = ["prepare", "kernel_modules_view", "warm", "pack_module_strings", "fill_pools"]


class _File:
    """What ipykernel reads of a module for its list of kernel modules."""

    __slots__ = ("__file__",)

    def __init__(self, path: str) -> None:
        self.__file__ = path


# Set in the fork server (``snapshot_modules``): for each module loaded then (by
# its name), a ``_File`` of its file, allocated side by side; None for a module
# without a file.
_SNAPSHOT: dict[str, _File | None] | None = None
_FILLER: list[object] = []  # what fill_pools took: kept, never read


def prepare() -> None:
    """All of the above, in the fork server, after its imports and before it
    freezes its objects and forks."""
    import gc

    warm()
    pack_module_strings()
    snapshot_modules()
    gc.collect()  # the garbage's blocks are free blocks too
    fill_pools()
    # warm() and fill_pools() used tempfile, which caches the temporary folder it found
    # here: each kernel finds its own (its TMPDIR, its user's rights after setuid)
    tempfile.tempdir = None


def pack_module_strings() -> None:
    """New copies of the modules' names (as ``sys.modules`` keys) and files, side by side."""
    for name in list(sys.modules):
        module = sys.modules.pop(name)
        sys.modules[_copy(name)] = module
    for module in list(sys.modules.values()):
        attrs = getattr(module, "__dict__", None)
        path = attrs.get("__file__") if isinstance(attrs, dict) else None
        if type(path) is str:
            attrs["__file__"] = _copy(path)  # type: ignore[index]


def _copy(text: str) -> str:
    return (text + ".")[:-1]  # a new string object (str(text) would be the same one)


def snapshot_modules() -> None:
    global _SNAPSHOT
    _SNAPSHOT = {name: _file_of(module) for name, module in list(sys.modules.items())}


def _file_of(module: Any) -> _File | None:
    # what ipykernel.ipkernel.IPythonKernel.__init__ keeps of a module
    if hasattr(module, "__file__") and module.__file__:
        return _File(module.__file__)
    return None


def _kernel_modules() -> dict[int, Any]:
    """What ``sys.modules.copy()`` would give ipykernel, as far as it reads it: the
    snapshot's files of the modules still loaded, and the modules loaded since
    (``__main__`` is runpy's by now, not the fork server's)."""
    assert _SNAPSHOT is not None
    entries: list[Any] = [
        f
        for name, f in _SNAPSHOT.items()
        if f is not None and name != "__main__" and name in sys.modules
    ]
    entries += [
        sys.modules[name]
        for name in list(sys.modules)
        if name not in _SNAPSHOT or name == "__main__"
    ]
    return dict(enumerate(entries))


@contextlib.contextmanager
def kernel_modules_view() -> Iterator[None]:
    """While the IPython kernel is built (``IPythonKernel.__init__``): its module's
    ``sys`` is a view of ``sys`` whose ``modules.copy()`` is ``_kernel_modules()``,
    which touches none of the module objects the fork server imported (ipykernel
    keeps the files of the modules loaded when the kernel starts, for its
    debugger's "just my code"). Outside a forked kernel nothing changes."""
    module = sys.modules.get("ipykernel.ipkernel")
    if _SNAPSHOT is None or module is None or getattr(module, "sys", None) is not sys:
        yield
        return
    module.sys = _SysView(_ModulesView(_kernel_modules()))  # type: ignore[attr-defined]
    try:
        yield
    finally:
        module.sys = sys  # type: ignore[attr-defined]


class _ModulesView:
    """``sys.modules`` whose ``copy()`` is the given entries."""

    def __init__(self, entries: dict[int, Any]) -> None:
        self._entries = entries

    def copy(self) -> dict[int, Any]:
        return dict(self._entries)

    def __getattr__(self, name: str) -> Any:
        return getattr(sys.modules, name)

    def __getitem__(self, name: str) -> Any:
        return sys.modules[name]

    def __contains__(self, name: object) -> bool:
        return name in sys.modules

    def __iter__(self) -> Iterator[str]:
        return iter(sys.modules)

    def __len__(self) -> int:
        return len(sys.modules)


class _SysView:
    """``sys`` with another ``modules`` (anything else is read from and written to ``sys``)."""

    def __init__(self, modules: _ModulesView) -> None:
        object.__setattr__(self, "modules", modules)

    def __getattr__(self, name: str) -> Any:
        return getattr(sys, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(sys, name, value)


def fill_pools() -> None:
    """Take the small-object allocator's free blocks and its free pools in this
    process (the fork server), with objects kept for ever: a kernel's new objects
    would go there first, each to a page it shares with the server (a free pool's
    pages may have been used before). Costs the server about 1 MiB, once."""
    free, unused_pools = _pymalloc_free()
    blocks: list[object] = []
    for size, count in free.items():
        blocks.extend(_block(size) for _ in range(count))
    blocks.extend(object() for _ in range(unused_pools * _POOL_BLOCKS_16))
    _FILLER.append(blocks)


_POOL_BLOCKS_16 = (16384 - 48) // 16  # 16-byte blocks in a 16 KiB pool (CPython 3.11)


def _block(size: int) -> object:
    """A new object that takes one block of ``size`` bytes."""
    if size <= 16:
        return object()
    if size <= 32:
        return float(size)  # 24 bytes: not a cached object
    return bytes(size - 33)  # a bytes object of n bytes takes 33 + n


def _pymalloc_free() -> tuple[dict[int, int], int]:
    """Free blocks per block size, and unused pools, as ``sys._debugmallocstats``
    prints them (to the C stderr); nothing where it is missing or says otherwise."""
    stats = getattr(sys, "_debugmallocstats", None)
    if stats is None:
        return {}, 0
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        try:
            sys.stderr.flush()
            os.dup2(out.fileno(), 2)
            stats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")
    free = {
        int(m.group(1)): int(m.group(2))
        for m in re.finditer(r"^\s*\d+\s+(\d+)\s+\d+\s+\d+\s+(\d+)\s*$", text, re.M)
        if int(m.group(2)) > 0
    }
    pools = re.search(r"^(\d+) unused pools \* 16384 bytes", text, re.M)
    return free, int(pools.group(1)) if pools else 0


def warm() -> None:
    """Build and drop an ``IPythonKernel`` with its shell (no sockets, no threads,
    no history, a profile folder of its own), and put back what that changed of
    the process."""
    import atexit
    import builtins
    import shutil
    import warnings
    import weakref

    import comm
    from ipykernel.ipkernel import IPythonKernel
    from ipykernel.zmqshell import ZMQInteractiveShell
    from IPython.core.profiledir import ProfileDir
    from jupyter_client.session import Session
    from traitlets.config import Config

    saved_env = dict(os.environ)
    saved_path = list(sys.path)
    saved_main = sys.modules.get("__main__")
    saved_sys = {name: getattr(sys, name, _MISSING) for name in _SYS_ATTRIBUTES}
    saved_builtins = dict(builtins.__dict__)
    saved_filters = list(warnings.filters)
    saved_comm = comm._comm_manager  # type: ignore[attr-defined]
    folder = tempfile.mkdtemp(prefix="vwed-forkserver-")
    exits: list[Any] = []
    register = atexit.register

    def recorded(func: Any, *args: Any, **kwargs: Any) -> Any:
        exits.append(func)
        return register(func, *args, **kwargs)

    atexit.register = recorded  # type: ignore[assignment]
    os.environ["IPYTHONDIR"] = folder  # not the kernel user's ~/.ipython
    try:
        config = Config()
        config.HistoryManager.enabled = False
        profile = ProfileDir.create_profile_dir(os.path.join(folder, "profile_default"))
        kernel = IPythonKernel(session=Session(), config=config, profile_dir=profile)
        shell: Any = kernel.shell
        shell.history_manager.db.close()
    finally:
        atexit.register = register
        for func in exits:
            if getattr(func, "__self__", None) is not weakref.finalize:
                atexit.unregister(func)  # (weakref's own stays: it is registered once)
        ZMQInteractiveShell.clear_instance()
        IPythonKernel.clear_instance()
        comm._comm_manager = saved_comm  # type: ignore[attr-defined]
        os.environ.clear()
        os.environ.update(saved_env)
        sys.path[:] = saved_path
        if saved_main is not None:
            sys.modules["__main__"] = saved_main
        for name, value in saved_sys.items():
            if value is _MISSING:
                if hasattr(sys, name):
                    delattr(sys, name)
            else:
                setattr(sys, name, value)
        for name in set(builtins.__dict__) - set(saved_builtins):
            del builtins.__dict__[name]
        builtins.__dict__.update(saved_builtins)
        warnings.filters[:] = saved_filters  # type: ignore[index]
        warnings._filters_mutated()  # type: ignore[attr-defined]
        shutil.rmtree(folder, ignore_errors=True)


_MISSING = object()
# what IPython's shell sets on ``sys`` (prompts, hooks, streams)
_SYS_ATTRIBUTES = (
    "stdin",
    "stdout",
    "stderr",
    "excepthook",
    "displayhook",
    "ps1",
    "ps2",
    "ps3",
)
