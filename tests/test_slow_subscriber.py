"""A live log subscriber that never reads is cut off with one INFO line in the
gateway's log, not ERROR tracebacks (issue 12, item 13)."""

from __future__ import annotations

import asyncio
import gc
import logging

import httpx
from tornado.websocket import websocket_connect

from conftest import GatewayThread, wait_until
from kernel_gateway.config import Settings

FLOOD = """
def boot():
    VWED.function.register("flood", flood)

def flood(n):
    for i in range(n):
        VWED.log.info("f", f"{i} " + "x" * 2000)
    return n
"""


def test_slow_subscriber_is_cut_off_with_one_info_line(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    (tmp_path / "flood.py").write_text(FLOOD)
    gw = GatewayThread(
        Settings(
            scripts_dir=str(tmp_path),
            port=0,
            data_dir=str(tmp_path / "d"),
            pool_size=1,
            workers=1,
            log_buffer_mb=1,
            auth=False,
        ).validated()
    ).start()
    client_loop = asyncio.new_event_loop()
    asyncio.set_event_loop(client_loop)  # tornado's client binds to the current loop
    try:
        assert gw.gateway is not None
        # a client that connects and never reads (its loop does not run meanwhile)
        conn = client_loop.run_until_complete(
            asyncio.wait_for(
                websocket_connect(f"ws://127.0.0.1:{gw.gateway.port}/script-engine/logs/ws"), 10
            )
        )
        with httpx.Client(base_url=gw.url, timeout=60) as c:
            r = c.post("/script-engine/start", json={"script_path": "flood.py"})
            assert r.status_code == 200
            r = c.post("/script-engine/functions/flood/call", json={"args": [20_000]})
            assert r.status_code == 200
        wait_until(lambda: gw.gateway.logs.subscribers == 0, 30, "the slow subscriber cut off")
        conn.close()
        client_loop.run_until_complete(asyncio.wait_for(conn.read_message(), 10))

        async def settle() -> None:
            for _ in range(20):  # let the cut-off connection's callbacks run, then collect
                await asyncio.sleep(0.01)
            gc.collect()
            await asyncio.sleep(0.01)

        gw.run(settle())
        gc.collect()
    finally:
        asyncio.set_event_loop(None)
        client_loop.close()
        gw.stop()
    errors = [
        f"{r.name}: {r.getMessage()[:200]}"
        for r in caplog.records
        if r.levelno >= logging.ERROR or r.exc_info
    ]
    assert not errors, errors
    slow = [r for r in caplog.records if "too slow" in r.getMessage()]
    assert len(slow) == 1 and slow[0].levelno == logging.INFO, slow
