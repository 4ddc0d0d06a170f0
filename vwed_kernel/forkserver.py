"""The fork server: one process that has imported the kernel's runtime and forks
each new kernel from it (``python -m vwed_kernel.forkserver --fd N``).

Why: a kernel started with ``python -m vwed_kernel`` spends its first half second
and most of its private memory importing IPython, ipykernel, pyzmq, tornado,
debugpy and the VWED runtime. Here that is done once; a fork shares those pages
copy-on-write, so a kernel's private memory is what it allocates itself.

What makes the fork safe: before the first fork this process has started no
thread, created no ZeroMQ context, event loop or socket (``_check_quiet``), and
frozen its objects out of the garbage collector's reach (``gc.freeze``, so a
child's collections do not write to the shared pages). The child then does what
``subprocess.Popen`` with ``start_new_session`` and ``user`` would have done
before ``exec`` (its own session and process group, the environment, the working
folder, the user), and runs the module the kernelspec's argv names
(``-m vwed_kernel -f <connection file>``) as ``__main__``: it reads its
connection file and opens its own sockets.

The protocol, on the socket the gateway passes as fd N (one JSON object a line):
``{"op": "ready", "pid"}`` once, then for each ``{"op": "spawn", "id", "argv",
"env", "cwd", "user"}`` a ``{"op": "spawned", "id", "pid"}`` or ``{"op":
"failed", "id", "error"}``, and ``{"op": "exit", "pid", "status"}`` when a
child ends (``status`` as ``Popen.returncode``: the exit code, or minus the
signal). End of file on the socket (the gateway gone) ends the server; its
kernels notice their parent is gone (ipykernel's parent poller,
``JPY_PARENT_PID`` is this process) and exit, as kernels of a gateway do.

Security: this process runs as the gateway's user (root when ``--kernel-user``
is set) with the kernels' allow-listed environment; it runs no script code and
reads no connection file (their keys never pass through it). A child drops to
the kernel user before anything else, and is made dumpable again (a process
that changed its user without ``exec`` is not), as a kernel exec'd as that user is.
What the kernels of one server share that fresh interpreters would not: the
string hash seed (a script that learns it could craft colliding keys for another
kernel it sends data to; only a slowdown) and the address layout of the imported
libraries (ASLR is per server, not per kernel). ``--no-fork-server`` if that matters.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import threading
from typing import Any

__all__ = ["main", "PRELOAD"]

# What a started VWED kernel has imported (its debugger included), so that a
# child imports next to nothing of its own.
PRELOAD = (
    "vwed_kernel.launch",
    "vwed_kernel.kernelapp",
    "vwed_kernel.kernel",
    "vwed_kernel.landlock",
    "vwed_kernel.usage",
    "vwed_kernel.fastpath",
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "ipykernel.debugger",
    "ipykernel.comm",
    "IPython.core.completer",
    "IPython.core.completerlib",
    "IPython.core.debugger",
    "IPython.core.logger",
    "IPython.core.oinspect",
    "IPython.extensions.storemagic",
    "IPython.utils.wildcard",
    "IPython.core.history",
    "IPython.extensions",
    "jupyter_client.session",
    "tornado.gen",
    "tornado.locks",
    "tornado.queues",
    "tornado.platform.asyncio",
    "zmq.asyncio",
    "zmq.eventloop.zmqstream",
    "psutil",
    "sqlite3",
    "pdb",
    "pydoc",
    "runpy",
    "faulthandler",
    "resource",
    "http.client",
    "xmlrpc.client",
    "encodings.idna",
)
_PR_SET_DUMPABLE = 4


def _preload() -> list[str]:
    """Import ``PRELOAD``; returns what could not be imported (the kernel imports
    it itself, later)."""
    missing = []
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:
            missing.append(name)
    return missing


def _check_quiet(keep: set[int]) -> None:
    """Refuse to serve if the imports started a thread or left a descriptor open
    besides ``keep`` and the standard streams: a fork would copy a half state."""
    if threading.active_count() != 1:
        raise SystemExit(f"forkserver: {threading.active_count()} threads after the imports")
    extra = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                extra.append(f"{fd}={os.readlink(f'/proc/self/fd/{fd}')}")
            except OSError:
                continue  # the listing's own descriptor, closed by now
    if extra:
        raise SystemExit(f"forkserver: descriptors open after the imports: {extra}")


class Server:
    """The loop: spawn requests in, children out, exits reported."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.children: set[int] = set()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # the wakeup fd does the work
        self.selector = selectors.DefaultSelector()

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def serve(self) -> None:
        self.selector.register(self.sock, selectors.EVENT_READ, "sock")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.send({"op": "ready", "pid": os.getpid()})
        while True:
            for key, _ in self.selector.select():
                if key.data == "wake":
                    while True:
                        try:
                            if not os.read(self.wake_r, 512):
                                break
                        except BlockingIOError:
                            break
                    self.reap()
                elif not self.read():
                    return
            self.reap()  # a SIGCHLD during a spawn's reply is not lost

    def read(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            request = json.loads(line)
            if request.get("op") == "spawn":
                self.spawn(request)
        return True

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.send({"op": "exit", "pid": pid, "status": _returncode(status)})

    def spawn(self, request: dict[str, Any]) -> None:
        argv = request["argv"]
        if len(argv) < 3 or argv[1] != "-m":
            self.send({"op": "failed", "id": request["id"], "error": "argv is not '-m module'"})
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the kernel
            code = 1
            try:
                self.become_kernel(request)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                import atexit

                # what the interpreter would do at exit (IPython saves its history)
                atexit._run_exitfuncs()
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children.add(pid)
        self.send({"op": "spawned", "id": request["id"], "pid": pid})

    def become_kernel(self, request: dict[str, Any]) -> None:
        """In the child: undo the server, become what ``Popen`` would have started."""
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.selector.close()
        self.sock.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        os.setsid()  # own session and process group: the gateway signals the group
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.chdir(request["cwd"])  # before the user changes, as Popen does
        user = request.get("user")
        if user is not None:
            os.setgroups(user["groups"])
            os.setgid(user["gid"])
            os.setuid(user["uid"])
            ctypes.CDLL(None).prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
        env = dict(request["env"])
        env["JPY_PARENT_PID"] = str(os.getppid())  # this server: kernels end with it
        os.environ.clear()
        os.environ.update(env)
        from . import usage

        usage.after_fork()  # its /proc/self files were the server's
        gc.unfreeze()
        argv = request["argv"]
        module = argv[2]
        sys.argv = [module, *argv[3:]]
        sys.path[0] = os.getcwd()  # what ``python -m`` puts first
        import runpy

        runpy.run_module(module, run_name="__main__", alter_sys=True)


def _returncode(status: int) -> int:
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vwed_kernel.forkserver")
    parser.add_argument("--fd", type=int, required=True, help="the gateway's socket")
    args = parser.parse_args(argv)
    sock = socket.socket(fileno=args.fd)
    # ipykernel reads it when imported (the parent poller's pid): the children's parent
    os.environ["JPY_PARENT_PID"] = str(os.getpid())
    missing = _preload()
    if missing:
        print(f"forkserver: not preloaded: {', '.join(missing)}", file=sys.stderr)
    _scan_plugins()
    from . import forkmemory

    forkmemory.prepare()  # fewer shared pages written by each kernel (forkmemory.py)
    _check_quiet({args.fd, *_usage_fds()})
    gc.freeze()  # the children's collections leave these objects (and their pages) alone
    Server(sock).serve()


def _scan_plugins() -> None:
    """Read the module plugins' entry points (metadata only: no plugin code runs here)
    once for all kernels: a child rescans only the folders of its path that changed
    or that it adds (vwed_kernel/plugins.py)."""
    try:
        from . import plugins

        plugins.scan()
    except Exception as exc:  # noqa: BLE001 - each kernel scans for itself then
        print(f"forkserver: module plugins not scanned: {exc}", file=sys.stderr)


def _usage_fds() -> set[int]:
    from . import usage

    return usage.descriptors()


if __name__ == "__main__":
    main()
