"""A kernel forked by the fork server, seen as a ``subprocess.Popen``.

The kernel is the fork server's child, not the gateway's: the gateway cannot
``waitpid`` it. Its end is seen through a pidfd (Linux 5.3+: readable once the
process has ended, and never confused with a later process that got the same
pid), its exit status comes from the fork server, which reaps it. Where no pidfd
can be had, the fork server's report alone says it ended (or, with the server
gone, ``kill(pid, 0)``). ``LocalProvisioner`` drives this object exactly as it
drives its ``Popen`` (``poll``, ``wait``, ``send_signal``, ``kill``,
``terminate``), so the provisioner needs no code of its own for them.

The gateway's death watch (``kernels.ScriptKernel._watch``) waits on the pidfd with
the event loop (``until_ended``: ``loop.add_reader``) instead of polling every 0.2 s:
an idle kernel costs nothing until it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal

__all__ = ["ForkedProcess", "UNKNOWN_STATUS"]

# The status of a kernel that ended after its fork server was gone: nobody who
# could tell it to the gateway reaped it.
UNKNOWN_STATUS = 255


class ForkedProcess:
    """One forked kernel: its pid, and what ``Popen`` offers of it."""

    stdin = stdout = stderr = None  # the kernel's streams are the fork server's

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._reported = True  # its fork server will say how it ended
        self._pidfd: int | None = None
        # the loop watching the pidfd and what it resolves (until_ended)
        self._watching: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        try:
            self._pidfd = os.pidfd_open(pid)
        except (OSError, AttributeError):
            # already reaped (its report is on the way), or no pidfd here: the
            # fork server's report says when it ends
            pass

    def orphaned(self) -> None:
        """Its fork server is gone: nobody will report its end (a new server, if
        one is started, is not its parent)."""
        self._reported = False

    def ended(self, status: int) -> None:
        """The fork server reaped it with ``status``."""
        if self.returncode is None:
            self.returncode = status

    def _has_ended(self) -> bool:
        if self._pidfd is not None:
            readable, _, _ = select.select([self._pidfd], [], [], 0)
            return bool(readable)
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def poll(self) -> int | None:
        """The exit status once the kernel ended (and its fork server said how, or
        is gone), else None."""
        if self.returncode is None and not self._reported and self._has_ended():
            self.returncode = UNKNOWN_STATUS
        return self.returncode

    def wait(self) -> int | None:
        """The status; called once ``poll`` gave one (``LocalProvisioner.wait``)."""
        self.close()
        return self.returncode

    def until_ended(self) -> asyncio.Future[None] | None:
        """A future of the running loop, resolved when the kernel's process ends (its
        pidfd turns readable; its status may come a moment later, from the fork
        server); None where there is no pidfd to watch (poll then)."""
        if self._pidfd is None:
            return None
        if self._watching is not None:
            if not self._watching[1].cancelled():
                return self._watching[1]
            self._unwatch()  # someone cancelled it: a new one
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        try:
            loop.add_reader(self._pidfd, self._readable)
        except (OSError, ValueError, NotImplementedError):
            return None
        self._watching = (loop, fut)
        return fut

    def _readable(self) -> None:
        self._unwatch()

    def _unwatch(self) -> None:
        """Stop watching (before the pidfd is closed) and wake whoever waits."""
        watching, self._watching = self._watching, None
        if watching is None:
            return
        loop, fut = watching
        if self._pidfd is not None:
            with contextlib.suppress(Exception):
                loop.remove_reader(self._pidfd)
        if not fut.done():
            fut.set_result(None)

    def close(self) -> None:
        self._unwatch()
        if self._pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
            self._pidfd = None

    def send_signal(self, signum: int) -> None:
        """Signal the kernel (not its group) while it runs; nothing once it ended."""
        if self.poll() is not None:
            return
        if self._pidfd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signum)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def __del__(self) -> None:
        self.close()
