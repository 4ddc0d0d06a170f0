"""Busy polling after a quick call was sent (``--busy-poll-us``; issue 19, latency
at concurrency 1).

On a virtual machine a process woken on an idle core costs tens of microseconds: the
sender's ``send()`` that wakes it and the sleeper's way back out of ``epoll_wait``. A
routed call crosses processes four times (client, gateway, kernel, gateway, client)
where a handler inside the HTTP server crosses twice. So for a short while after a
call went to a kernel whose answers come that quickly, the gateway's event loop does
not go to sleep when it has nothing to do: its selector polls (``epoll`` with a zero
timeout) until the budget from that send is spent, and returns as soon as any socket
is ready. The answer is read without a wake-up, and so is a caller's next request
when it comes within the window (a task flow calling step after step), as Linux's own
socket busy polling (``SO_BUSY_POLL``) does for network cards. Nothing waits behind
it: any ready socket, timer or signal ends the poll.

A kernel whose answers take longer than the budget is not polled for (``FastClient``
keeps a moving average of its answer times), nor one called once in a while (its last
answer more than ten budgets ago: asleep and cold, and a socket's wake-up may queue it on
the core the poll holds; the poll also yields that core between its checks). The cost: CPU time of a core that had
nothing to do, at most the budget per call. 0 turns it off; so does a process allowed on
one core only (the poll would hold it from the kernel it waits for), or whose cgroup has a
CPU quota of less than two cores (a container's ``--cpus``: it would spend the quota).
"""

from __future__ import annotations

import asyncio
import os
import selectors
import sys
import time
import weakref
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["BusyPoller", "loop_factory", "off_reason", "poller_of", "run"]

T = TypeVar("T")

_now = time.perf_counter
_yield = getattr(os, "sched_yield", lambda: None)
# the poller of each event loop made by ``loop_factory`` (FastClient finds it here)
_POLLERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BusyPoller] = (
    weakref.WeakKeyDictionary()
)


class BusyPoller(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """The platform's default selector, polling without sleeping for ``budget`` seconds
    after each quick call was sent (``sent``)."""

    def __init__(self, budget: float) -> None:
        super().__init__()
        self.budget = budget
        self.until = 0.0  # poll without sleeping until then (perf_counter; 0: sleep)
        # what the polling cost and caught (the gateway's metrics, vwed_busy_poll_*)
        self.seconds = 0.0  # spent polling (wall clock; the loop's thread was busy for it)
        self.ready = 0  # polls that ended with something to do
        self.spent = 0  # polls that ended with the budget spent (the loop then slept)

    def sent(self) -> None:
        """A call went to a kernel whose answers come within the budget."""
        self.until = _now() + self.budget

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        until = self.until
        if until and timeout != 0:
            start = now = _now()
            if now >= until:
                self.until = 0.0  # the budget ran out while the loop was busy
            else:
                end = until if timeout is None else min(until, start + timeout)
                while now < end:
                    ready = super().select(0)
                    if ready:
                        self.ready += 1
                        self.seconds += _now() - start
                        return ready  # type: ignore[no-any-return]
                    # a process woken by our send may have been queued on this core (a
                    # socket's wake-up tells the scheduler the sender sleeps next): it runs
                    _yield()
                    now = _now()
                self.seconds += now - start
                if now < until:  # a timer is due first: the poll goes on after it
                    return []
                self.until = 0.0  # spent: sleep until something comes
                self.spent += 1
                if timeout is not None:
                    timeout = max(0.0, timeout - (now - start))
        return super().select(timeout)  # type: ignore[no-any-return]


def run(main: Coroutine[Any, Any, T], budget_us: int) -> T:
    """``asyncio.run(main)`` on a loop that polls (``loop_factory``), or on the default
    loop where that is None."""
    factory = loop_factory(budget_us)
    if factory is None:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=factory) as runner:  # type: ignore[attr-defined]
        return runner.run(main)  # type: ignore[no-any-return]


def off_reason(budget_us: int) -> str | None:
    """Why a gateway with this budget does not poll (None: it does)."""
    if budget_us <= 0:
        return "--busy-poll-us 0"
    if sys.platform == "win32":
        return "Windows (the event loop is not selector-based)"
    if sys.version_info < (3, 11):
        return "Python 3.10 (no asyncio.Runner)"
    if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) < 2:
        return "one core (the poll would hold it from the kernel it waits for)"
    cores = _cgroup_cores()
    if cores is not None and cores < 2:
        # a container's --cpus: the poll would spend the quota its kernels need
        return f"a CPU quota of {cores:g} core(s) on this process's cgroup"
    return None


def _cgroup_cores() -> float | None:
    """The cgroup's CPU limit in cores (None: none, or it cannot be read: whatever the
    files hold, the gateway starts)."""
    from .cpuquota import own_cpu_limit

    try:
        mountinfo = Path("/proc/self/mountinfo").read_text(errors="surrogateescape")
        cgroups = Path("/proc/self/cgroup").read_text(errors="surrogateescape")
        return own_cpu_limit(mountinfo, cgroups)
    except Exception:
        return None


def loop_factory(budget_us: int) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A factory of event loops that poll after quick calls, or None for the default
    loop (``off_reason``: a budget of 0; Windows, where the default loop is not
    selector-based; Python 3.10, which has no ``asyncio.Runner`` to run it with; a
    process allowed on one core only, or under a CPU quota of less than two)."""
    if off_reason(budget_us) is not None:
        return None

    def new_loop() -> asyncio.AbstractEventLoop:
        poller = BusyPoller(budget_us / 1e6)
        loop = asyncio.SelectorEventLoop(poller)
        _POLLERS[loop] = poller
        return loop

    return new_loop


def poller_of(loop: asyncio.AbstractEventLoop) -> BusyPoller | None:
    """The poller of ``loop`` (None: a loop that does not poll)."""
    return _POLLERS.get(loop)
