"""Busy polling after a quick call (``--busy-poll-us``, kernel_gateway/busypoll.py): the
selector on real sockets, and a real gateway whose event loop polls after calls to a
quick kernel and not after calls to a slow one."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from conftest import GatewayThread, start_script, token_gateway, unique
from kernel_gateway import busypoll
from kernel_gateway.config import ConfigError, parse_settings

ADMIN = "poll-admin-token"
CALLER = "poll-caller-token"

SCRIPT = """
import time

def boot():
    VWED.api.register_route("/{n}/quick", "GET", lambda: {{"ok": True}})
    VWED.api.register_route("/{n}/slow", "GET", slow)

def slow():
    time.sleep(0.1)
    return {{"slept": True}}
"""


Polled = tuple[busypoll.BusyPoller, socket.socket, socket.socket]


@pytest.fixture
def polled() -> Iterator[Callable[[float], Polled]]:
    """Makes a poller with a budget (seconds), watching the read end ``a`` of a socket
    pair whose other end is ``b``."""
    made: list[Polled] = []

    def make(budget: float) -> Polled:
        a, b = socket.socketpair()
        a.setblocking(False)
        poller = busypoll.BusyPoller(budget)
        poller.register(a, busypoll.selectors.EVENT_READ)
        made.append((poller, a, b))
        return made[-1]

    yield make
    for poller, a, b in made:
        poller.close()
        a.close()
        b.close()


@pytest.mark.timeout(30)
def test_a_poll_returns_what_is_ready(polled: Callable[[float], Polled]) -> None:
    poller, a, b = polled(5.0)  # (the byte is there already: no time is spent)
    assert poller.select(0) == []  # nothing sent: a plain select
    assert (poller.ready, poller.spent, poller.seconds) == (0, 0, 0.0)
    poller.sent()
    b.send(b"x")
    events = poller.select(None)  # polls, finds the byte at once
    assert [key.fileobj for key, _ in events] == [a]
    assert (poller.ready, poller.spent) == (1, 0)
    assert poller.seconds > 0
    assert poller.until > 0  # the window stays open for what comes next


@pytest.mark.timeout(30)
def test_a_spent_poll_sleeps_until_something_comes(polled: Callable[[float], Polled]) -> None:
    poller, a, b = polled(0.2)

    def write_after_the_budget() -> None:
        deadline = time.monotonic() + 20
        while poller.spent == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        b.send(b"x")

    writer = threading.Thread(target=write_after_the_budget)
    try:
        writer.start()
        poller.sent()
        events = poller.select(None)  # polls 0.2 s, then sleeps until the byte comes
        assert [key.fileobj for key, _ in events] == [a]
        assert (poller.ready, poller.spent, poller.until) == (0, 1, 0.0)
    finally:
        writer.join(30)


@pytest.mark.timeout(30)
def test_a_timer_due_first_ends_the_poll_not_the_window(polled: Callable[[float], Polled]) -> None:
    poller, _, _ = polled(30.0)
    poller.sent()
    until = poller.until
    started = time.monotonic()
    assert poller.select(0.01) == []  # the event loop's next timer: due first
    assert time.monotonic() - started < 10  # not the budget's 30 s
    assert poller.until == until and poller.spent == 0
    assert poller.select(0) == []  # a zero timeout never polls


def test_the_budget_is_checked() -> None:
    with pytest.raises(ConfigError, match="busy_poll_us"):
        parse_settings(["--busy-poll-us", "20000"]).validated()
    assert busypoll.loop_factory(0) is None


# where the gateway's loop cannot poll (Python 3.10, one core, Windows), nothing to test
POLLS = pytest.mark.skipif(
    busypoll.loop_factory(300) is None, reason="no busy polling here (Python 3.10 or one core)"
)


@POLLS
@pytest.mark.timeout(30)
def test_vwed_gateway_runs_on_a_polling_loop() -> None:
    async def polls() -> float | None:
        poller = busypoll.poller_of(asyncio.get_running_loop())
        return None if poller is None else poller.budget

    assert busypoll.run(polls(), 300) == pytest.approx(0.0003)
    assert busypoll.run(polls(), 0) is None


def _polls(gw: GatewayThread) -> tuple[int, float]:
    text = httpx.get(
        f"{gw.url}/metrics", headers={"Authorization": f"token {ADMIN}"}, timeout=30
    ).text
    counts = re.findall(r'^vwed_busy_polls_total\{outcome="\w+"\} (\S+)$', text, re.M)
    seconds = re.search(r"^vwed_busy_poll_seconds_total (\S+)$", text, re.M)
    assert len(counts) == 2 and seconds is not None, text
    return int(sum(float(c) for c in counts)), float(seconds.group(1))


@POLLS
@pytest.mark.timeout(180)
def test_the_gateway_polls_after_quick_calls_only(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # a budget of 5 ms: the quick route answers within it even on a loaded machine, the
    # slow one (0.1 s) never does
    for gw, root in token_gateway(tmp_path_factory, "poll", ADMIN, CALLER, busy_poll_us=5000):
        n = unique("po")
        start_script(gw, root, n, SCRIPT.format(n=n), ADMIN)
        auth = {"Authorization": f"token {CALLER}"}
        with httpx.Client(base_url=gw.url, headers=auth, timeout=30) as client:

            def call(route: str, n: str = n) -> None:
                r = client.get(f"/script-api/{n}/{route}")
                assert r.status_code == 200, r.text

            before, seconds = _polls(gw)
            for _ in range(5):
                call("quick")
            after, more_seconds = _polls(gw)
            assert after > before and more_seconds > seconds
            # a kernel whose answers take longer than the budget: its first slow answer
            # moves the average past it, and the calls after that are not polled for
            call("slow")
            start, _ = _polls(gw)
            for _ in range(3):
                call("slow")
            assert _polls(gw)[0] == start


@pytest.mark.timeout(180)
def test_off_the_loop_does_not_poll(tmp_path_factory: pytest.TempPathFactory) -> None:
    for gw, root in token_gateway(tmp_path_factory, "nopoll", ADMIN, CALLER, busy_poll_us=0):
        assert busypoll.poller_of(gw.loop) is None
        n = unique("np")
        start_script(gw, root, n, SCRIPT.format(n=n), ADMIN)
        r = httpx.get(
            f"{gw.url}/script-api/{n}/quick",
            headers={"Authorization": f"token {CALLER}"},
            timeout=30,
        )
        assert r.status_code == 200 and r.json() == {"ok": True}
        metrics = httpx.get(
            f"{gw.url}/metrics", headers={"Authorization": f"token {ADMIN}"}, timeout=30
        ).text
        assert "vwed_busy_poll" not in metrics
