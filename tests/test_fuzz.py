"""A bounded Schemathesis run over the gateway's own OpenAPI document, against a
real gateway (auth on, a running script, real kernels): no undocumented status,
no 5xx that the document does not name, every error a JSON body with a machine
code, and no request that hangs. Then the bad inputs the hardening issue names,
one by one: malformed JSON, wrong types, a huge body, odd unicode in paths."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

from conftest import GatewayThread
from kernel_gateway.config import Settings
from kernel_gateway.openapi import build_openapi

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "fuzz-admin-token"
AUTH = {"Authorization": f"token {TOKEN}"}
MAX_EXAMPLES = 25  # per operation: about 1,300 requests in all
REQUEST_TIMEOUT = 20  # seconds; a request that takes longer is a hang (calls time out at 5 s)

FUZZ_SCRIPT = """
def boot():
    VWED.api.register_route("/fuzz/echo", "GET", echo)
    VWED.api.register_route("/fuzz/echo", "POST", echo)
    VWED.function.register("fuzz_add", add)

def echo(request):
    return {"ok": True}

def add(a, b):
    return a + b
"""


@pytest.fixture(scope="module")
def fuzz_gateway(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(ROOT / "examples", base / "scripts")
    (base / "scripts" / "fuzz.py").write_text(FUZZ_SCRIPT)
    gw = GatewayThread(
        Settings(
            scripts_dir=str(base / "scripts"),
            port=0,
            data_dir=str(base / "data"),
            pool_size=1,
            workers=1,
            call_timeout=5.0,
            token=TOKEN,
            caller_token="fuzz-caller-token",
            max_body_size=256 * 1024,
        ).validated()
    ).start()
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=60) as c:
        for path in ("fuzz.py", "warehouse/controller.py"):
            r = c.post("/script-engine/start", json={"script_path": path})
            assert r.status_code == 200, r.text
    yield gw
    gw.stop()


# The document the gateway serves (test_openapi.py checks the two are the same).
# POST /api/kernels starts a kernel process per example; test_jupyter_api.py covers it.
schema = schemathesis.openapi.from_dict(build_openapi()).exclude(method="POST", path="/api/kernels")


@pytest.mark.timeout(420)
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_openapi_fuzz(case, fuzz_gateway):
    response = case.call(base_url=fuzz_gateway.url, headers=AUTH, timeout=REQUEST_TIMEOUT)
    documented = case.operation.definition.raw["responses"]
    status = response.status_code
    assert status < 500 or str(status) in documented, (
        f"{case.operation.label} answered {status}, which its document does not name: {response.text[:300]}"
    )
    if 400 <= status < 600 and case.method.upper() != "HEAD":
        body = response.json()
        assert body["success"] is False and body["code"] and body["error"], body
    case.validate_response(
        response, checks=[status_code_conformance, content_type_conformance], headers=AUTH
    )


JSON = {"Content-Type": "application/json"}


def test_bad_input_is_refused_clearly(fuzz_gateway):
    with httpx.Client(base_url=fuzz_gateway.url, headers=AUTH, timeout=30) as c:
        cases = [
            (
                "POST",
                "/script-engine/start",
                {"content": b"{not json", "headers": JSON},
                400,
                "INVALID_JSON",
            ),
            (
                "POST",
                "/script-engine/start",
                {"content": b"[1, 2]", "headers": JSON},
                400,
                "INVALID_JSON",
            ),
            ("POST", "/script-engine/start", {"json": {"script_path": 7}}, 400, "MISSING_FIELD"),
            (
                "POST",
                "/script-engine/start",
                {"json": {"script_path": "fuzz.py", "replicas": "2"}},
                400,
                "BAD_REQUEST",
            ),
            (
                "POST",
                "/script-engine/functions/fuzz_add/call",
                {"json": {"args": {"a": 1}}},
                400,
                "BAD_ARGUMENTS",
            ),
            (
                "POST",
                "/script-engine/functions/fuzz_add/call",
                {"json": {"args": [1, 2], "timeout": "x"}},
                400,
                "BAD_PARAMETER",
            ),
            (
                "POST",
                "/script-engine/functions/fuzz_add/call",
                {"content": b"\xff\xfe", "headers": JSON},
                400,
                "INVALID_JSON",
            ),
            ("GET", "/script-engine/files/%E2%80%AE%00evil.py", {}, 400, "PATH_INVALID"),
            ("GET", "/script-engine/files/..%2F..%2Fetc%2Fpasswd", {}, 400, "PATH_INVALID"),
            ("GET", "/script-engine/files/%F0%9F%A4%96/%ED%A0%80.py", {}, None, None),
            ("GET", "/script-api/fuzz/%F0%9F%A4%96%00", {}, 404, "ROUTE_NOT_FOUND"),
            ("GET", "/script-engine/logs", {"params": {"level": "LOUD"}}, 400, "BAD_PARAMETER"),
            ("GET", "/script-engine/logs/ws", {}, 400, "WEBSOCKET_REQUIRED"),
            (
                "POST",
                "/script-engine/functions/fuzz_add/call",
                {"content": b"{" + b" " * (300 * 1024) + b"}", "headers": JSON},
                413,
                "BODY_TOO_LARGE",
            ),
        ]
        for method, url, kwargs, status, code in cases:
            r = c.request(method, url, **kwargs)
            assert 400 <= r.status_code < 500, (method, url, r.status_code, r.text[:200])
            body = r.json()
            assert body["success"] is False and body["code"], body
            if status is not None:
                assert (r.status_code, body["code"]) == (status, code), (url, r.text[:300])
        # the gateway still serves after all of it
        r = c.post("/script-engine/functions/fuzz_add/call", json={"args": [2, 3]})
        assert r.json()["result"] == 5
