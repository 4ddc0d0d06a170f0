"""Limits: memory per script, calls in flight per kernel, running kernels."""

from __future__ import annotations

import concurrent.futures

import httpx
import pytest

from conftest import GatewayThread, wait_until
from kernel_gateway.config import Settings

SCRIPT = """
import asyncio

HOLD = []

def boot():
    VWED.function.register("{n}_eat", eat)
    VWED.function.register("{n}_nap", nap)

def eat(mib):
    HOLD.append(bytearray(mib * 1024 * 1024))
    return len(HOLD)

async def nap(seconds):
    await asyncio.sleep(seconds)
    return seconds
"""


@pytest.fixture
def limited(tmp_path):
    for n in ("a", "b"):
        (tmp_path / f"{n}.py").write_text(SCRIPT.format(n=n))
    gw = GatewayThread(
        Settings(
            scripts_dir=str(tmp_path),
            port=0,
            data_dir=str(tmp_path / "d"),
            pool_size=2,
            workers=1,
            max_in_flight=1,
            max_kernels=1,
            auth=False,
        ).validated()
    ).start()
    yield gw
    gw.stop()


def test_limits(limited):
    with httpx.Client(base_url=limited.url, timeout=60) as c:
        r = c.post(
            "/script-engine/start",
            json={"script_path": "a.py", "restart": "never", "memory_limit_mb": 200},
        )
        assert r.status_code == 200, r.text
        sid = r.json()["script_id"]
        # one kernel is the limit
        r = c.post("/script-engine/start", json={"script_path": "b.py"})
        assert r.status_code == 503 and r.json()["code"] == "TOO_MANY_KERNELS"
        # one call in flight per kernel
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(
                lambda: httpx.post(
                    f"{limited.url}/script-engine/functions/a_nap/call",
                    json={"args": [1.0]},
                    timeout=30,
                )
            )
            wait_until(
                lambda: c.get(f"/script-engine/scripts/{sid}").json()["in_flight"] == 1, 10, "busy"
            )
            r = c.post("/script-engine/functions/a_nap/call", json={"args": [0]})
            assert (
                r.status_code == 503
                and r.json()["code"] == "BUSY"
                and r.headers["retry-after"] == "1"
            )
            assert slow.result(30).status_code == 200
        # past its memory limit the kernel is stopped, with a clear record
        # (the limit may strike while the call is still running: then the call fails with 502)
        assert c.post("/script-engine/functions/a_eat/call", json={"args": [300]}).status_code in (
            200,
            502,
        )
        info = wait_until(
            lambda: (lambda s: s if s["status"] == "died" else None)(
                c.get(f"/script-engine/scripts/{sid}").json()
            ),
            15,
            "the memory limit",
        )
        assert "memory limit exceeded" in info["last_error"]
        records = wait_until(
            lambda: c.get(
                "/script-engine/logs",
                params={"script_id": sid, "source": "engine", "q": "memory limit"},
            ).json()["records"],
            10,
            "the record",
        )
        assert records[0]["level"] == "ERROR"
        r = c.post("/script-engine/start", json={"script_path": "a.py", "memory_limit_mb": -1})
        assert r.status_code == 400
