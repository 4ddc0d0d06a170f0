"""Logs: the live stream over WebSocket (replay of the tail, filters per subscriber,
a slow subscriber cut off while a fast one keeps up)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from test_logs import SCRIPT, history

from conftest import GatewayProcess, unique, wait_until
from logclient import collect, records


def test_tail_replay_then_live_records(scripts, client, gw):
    n = unique("tail")
    sid = scripts.start(f"{n}.py", SCRIPT.format(n=n))["script_id"]
    for i in range(5):
        client.post(f"/script-engine/functions/{n}_talk/call", json={"args": [f"R{i}"]})
    wait_until(lambda: history(client, script_id=sid, q="error R4"), 10, "stored records")
    url = f"ws://127.0.0.1:{gw.gateway.port}/script-engine/logs/ws?script_id={sid}&tag=plc&tail=3"

    async def scenario():
        replayed = asyncio.Event()

        def done(messages):
            if len(records(messages)) >= 3:
                replayed.set()
            return len(records(messages)) >= 5

        reader = asyncio.ensure_future(collect(url, done, 20))
        # live records only once the replay of the last 3 has arrived
        await asyncio.wait_for(replayed.wait(), 20)
        loop = asyncio.get_running_loop()
        for tag in ("L1", "L2"):
            await loop.run_in_executor(
                None,
                lambda t=tag: client.post(
                    f"/script-engine/functions/{n}_talk/call", json={"args": [t]}
                ),
            )
        return await reader

    got = [r["message"] for r in records(asyncio.run(scenario()))]
    assert got == ["error R2", "error R3", "error R4", "error L1", "error L2"]


def test_two_subscribers_get_exactly_theirs(scripts, client, gw):
    a, b = unique("subA"), unique("subB")
    sa = scripts.start(f"{a}.py", SCRIPT.format(n=a))["script_id"]
    sb = scripts.start(f"{b}.py", SCRIPT.format(n=b))["script_id"]
    base = f"ws://127.0.0.1:{gw.gateway.port}/script-engine/logs/ws"

    async def scenario():
        ea, eb = asyncio.Event(), asyncio.Event()
        want_a = {"out line 1\nout line 2", "err line", "debug A", "warning A", "error A"}
        ra = asyncio.ensure_future(
            collect(
                f"{base}?script_id={sa}",
                lambda m: want_a <= {r["message"] for r in records(m)},
                20,
                ea,
            )
        )
        rb = asyncio.ensure_future(
            collect(
                f"{base}?script_id={sb}&level=ERROR",
                lambda m: any("error B" in r["message"] for r in records(m)),
                20,
                eb,
            )
        )
        await ea.wait()
        await eb.wait()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            None,
            lambda: client.post(f"/script-engine/functions/{a}_talk/call", json={"args": ["A"]}),
        )
        await loop.run_in_executor(
            None,
            lambda: client.post(f"/script-engine/functions/{b}_talk/call", json={"args": ["B"]}),
        )
        return await ra, await rb

    ma, mb = asyncio.run(scenario())
    assert {r["script_id"] for r in records(ma)} == {sa}
    assert {"out line 1\nout line 2", "err line", "debug A", "warning A", "error A"} <= {
        r["message"] for r in records(ma)
    }
    assert [r["message"] for r in records(mb)] == ["error B"]


@pytest.mark.timeout(240)
def test_a_slow_subscriber_is_cut_off_while_a_fast_one_keeps_up(tmp_path):
    # The gateway runs as its own process here, so the fast reader (in this process)
    # does not share an interpreter lock with it. It binds port 0 and says which port.
    import httpx

    root = tmp_path / "scripts"
    root.mkdir()
    (root / "flood.py").write_text(
        "def boot():\n    VWED.function.register('flood', flood)\n\n"
        "def flood(start, n):\n    for i in range(start, start + n):\n        print(f'{i:06d} ' + 'y' * 100)\n    return n\n"
    )
    gateway = GatewayProcess(
        root,
        tmp_path / "d",
        # 12 MiB of ring: room for a fast reader on a loaded machine, and still well
        # under the 21 MB flood, so the reader that never reads is cut off
        "--log-buffer-mb",
        "12",
        "--call-timeout",
        "180",
    )
    port, base = gateway.port, gateway.url
    try:
        with httpx.Client(base_url=base, timeout=180) as c:
            sid = c.post("/script-engine/start", json={"script_path": "flood.py"}).json()[
                "script_id"
            ]
            url = f"ws://127.0.0.1:{port}/script-engine/logs/ws?script_id={sid}"
            slow = _raw_ws(port, f"/script-engine/logs/ws?script_id={sid}")
            # 21 MB in five rounds of 4 MB: the next round is called only when the fast reader
            # has the last line of this one, so it is never more than a round (well under the
            # 12 MiB) behind, however busy the machine; the reader that never reads falls the
            # whole flood behind and is cut off
            rounds, per_round = 5, 40_000
            lines_total = rounds * per_round
            last = [per_round - 1]  # the line the fast reader waits for

            async def scenario():
                opened, caught_up = asyncio.Event(), asyncio.Event()

                def done(messages):
                    if messages and f"{last[0]:06d} " in messages[-1].get("message", ""):
                        caught_up.set()
                        return last[0] == lines_total - 1
                    return False

                fast = asyncio.ensure_future(collect(url, done, 180, opened))
                await opened.wait()
                loop = asyncio.get_running_loop()
                for start in range(0, lines_total, per_round):
                    last[0] = start + per_round - 1
                    caught_up.clear()
                    await loop.run_in_executor(
                        None,
                        lambda start=start: c.post(
                            "/script-engine/functions/flood/call",
                            json={"args": [start, per_round]},
                        ),
                    )
                    waiter = asyncio.ensure_future(caught_up.wait())
                    await asyncio.wait({fast, waiter}, timeout=120, return_when="FIRST_COMPLETED")
                    waiter.cancel()
                    if fast.done():
                        break
                    assert caught_up.is_set(), f"the fast reader never got line {last[0]}"
                return await fast

            fast_messages = asyncio.run(scenario())
            assert not [m for m in fast_messages if m.get("type") == "notice"]
            lines = "\n".join(r["message"] for r in records(fast_messages)).split("\n")
            assert len(lines) == lines_total  # the fast subscriber got every line
            # the slow one was told and disconnected
            slow.setblocking(True)
            slow.settimeout(30)
            data = b""
            while True:
                chunk = slow.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
            assert b"SLOW_CONSUMER" in data
    finally:
        gateway.finish()


def _raw_ws(port: int, path: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then does not read."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s
