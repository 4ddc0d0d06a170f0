"""VWED.storage / VWED.task / VWED.robot: the embedded backend (two scripts racing for
one location) and the HTTP backend (against a VWED-like server on loopback)."""

from __future__ import annotations

import concurrent.futures
import http.server
import json
import threading

import httpx

from conftest import GatewayThread, unique
from kernel_gateway.config import Settings

RACER = """
def boot():
    VWED.function.register("{n}_grab", grab)

def grab(code, task):
    return VWED.storage.lock_location(code, task)
"""

WORKFLOW = """
def boot():
    VWED.function.register("{n}_flow", flow)

def flow(code):
    task = VWED.task.create("move", {{"to": code}})
    sent = VWED.robot.dispatch("AMR-1", task["task_id"])
    again = VWED.robot.dispatch("AMR-1", task["task_id"])
    status = VWED.task.get_status(task["task_id"])
    robots = VWED.robot.get_all()
    stopped = VWED.task.stop(task["task_id"])
    try:
        VWED.storage.get_location("NOPE-" + code)
    except Exception as exc:
        missing = exc.code
    return {{"sent": sent["dispatched"], "again": again["dispatched"], "status": status["status"],
            "robot_task": robots[0]["task_id"], "stopped": stopped["status"],
            "robot_after": VWED.robot.get_status("AMR-1")["status"], "missing": missing,
            "loc": VWED.storage.get_location(code)["zone"]}}
"""


def test_two_scripts_racing_for_one_location(scripts, client, gw):
    code = unique("A")
    r = client.post("/script-engine/platform/locations", json={"location_code": code, "zone": "A"})
    assert r.status_code == 201 and r.json()["location"]["locked"] is False
    a, b = unique("racerA"), unique("racerB")
    scripts.start(f"{a}.py", RACER.format(n=a))
    scripts.start(f"{b}.py", RACER.format(n=b))
    for round_ in range(5):
        with (
            httpx.Client(base_url=gw.url, timeout=30) as c,
            concurrent.futures.ThreadPoolExecutor(2) as pool,
        ):
            results = list(
                pool.map(
                    lambda nt: c.post(
                        f"/script-engine/functions/{nt[0]}_grab/call", json={"args": [code, nt[1]]}
                    ).json()["result"],
                    [(a, f"TA{round_}"), (b, f"TB{round_}")],
                )
            )
        assert sorted(r["locked"] for r in results) == [False, True]  # exactly one wins
        winner = next(r for r in results if r["locked"])["locked_by"]
        assert {r["locked_by"] for r in results} == {winner}
        location = [
            x
            for x in client.get("/script-engine/platform/locations").json()["locations"]
            if x["location_code"] == code
        ][0]
        assert location["locked_by"] == winner
        client.post(f"/script-engine/functions/{a}_grab/call", json={"args": [code, winner]})
        # release for the next round, as the winner
        gw.run(
            gw.gateway.platform.call(
                "storage", "unlock_location", {"location_code": code, "task_id": winner}
            )
        )


def test_tasks_and_robots(scripts, client):
    code = unique("B")
    client.post("/script-engine/platform/locations", json={"location_code": code, "zone": "B"})
    assert (
        client.post("/script-engine/platform/robots", json={"robot_id": "AMR-1"}).status_code == 201
    )
    n = unique("flow")
    scripts.start(f"{n}.py", WORKFLOW.format(n=n))
    r = client.post(f"/script-engine/functions/{n}_flow/call", json={"args": [code]})
    assert r.status_code == 200, r.text
    assert r.json()["result"] == {
        "sent": True,
        "again": False,
        "status": "running",
        "robot_task": r.json()["result"]["robot_task"],
        "stopped": "stopped",
        "robot_after": "idle",
        "missing": "LOCATION_NOT_FOUND",
        "loc": "B",
    }
    assert client.post("/script-engine/platform/robots", json={}).json()["code"] == "MISSING_FIELD"


class _VwedServer(http.server.BaseHTTPRequestHandler):
    calls: list = []

    def do_POST(self):  # noqa: N802
        args = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _VwedServer.calls.append((self.path, args, self.headers.get("Authorization")))
        if self.path == "/api/vwed/storage/get_location" and args["location_code"] == "X":
            status, body = 404, {"error": "no location X", "code": "LOCATION_NOT_FOUND"}
        elif self.path.endswith("/get_all"):
            status, body = 200, [{"robot_id": "R1", "path": self.path}]
        else:
            status, body = 200, {"echo": args, "path": self.path}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_http_backend_forwards_to_a_vwed_server(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _VwedServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp_path / "p.py").write_text("""
def boot():
    VWED.function.register("use", use)

def use():
    out = {"lock": VWED.storage.lock_location("A-1", 42), "robot": VWED.robot.get_all()}
    try:
        VWED.storage.get_location("X")
    except Exception as exc:
        out["missing"] = exc.code
    return out
""")
    gw = GatewayThread(
        Settings(
            scripts_dir=str(tmp_path),
            port=0,
            data_dir=str(tmp_path / "d"),
            pool_size=1,
            workers=1,
            platform_token="t0k",
            auth=False,
            platform_url=f"http://127.0.0.1:{server.server_address[1]}",
        ).validated()
    ).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            assert c.post("/script-engine/start", json={"script_path": "p.py"}).status_code == 200
            result = c.post("/script-engine/functions/use/call", json={}).json()["result"]
        assert result["lock"] == {
            "echo": {"location_code": "A-1", "task_id": 42},
            "path": "/api/vwed/storage/lock_location",
        }
        assert result["robot"] == [{"robot_id": "R1", "path": "/api/vwed/robot/get_all"}]
        assert result["missing"] == "LOCATION_NOT_FOUND"
        assert _VwedServer.calls[0][2] == "Bearer t0k"
    finally:
        gw.stop()
        server.shutdown()
