"""The VWED kernel without a gateway (as in JupyterLab), and its kernelspec."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from jupyter_client.manager import KernelManager

from kernel_gateway.kernelspec import make_kernelspec_manager, write_gateway_kernelspec


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    data = tmp_path_factory.mktemp("ks")
    write_gateway_kernelspec(data)
    km = KernelManager(kernel_name="vwed", kernel_spec_manager=make_kernelspec_manager(data))
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    yield kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def run(kc, code: str) -> tuple[str, list[dict]]:
    """Execute ``code``; return stdout and the error messages seen on iopub."""
    msg_id = kc.execute(textwrap.dedent(code))
    out, errors = [], []
    while True:
        msg = kc.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            errors.append(msg["content"])
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return "".join(out), errors


def test_vwed_is_preloaded_and_works_locally(kernel):
    out, errors = run(
        kernel,
        """
        import json

        @VWED.api.route("/robots/{robot_id}", methods=["GET"])
        def robot(request):
            return {"id": request["path_params"]["robot_id"], "q": request["query_params"]}

        VWED.function.register("double", lambda x: 2 * x, "double it")
        print(json.dumps([VWED.api.call_local("/robots/7", query_params={"v": "1"}),
                          VWED.function.call("double", [21]),
                          [f["name"] for f in VWED.function.list_all()],
                          VWED.script_id]))
    """,
    )
    assert not errors, errors
    assert json.loads(out) == [{"id": "7", "q": {"v": "1"}}, 42, ["double"], None]


def test_local_log_prints_and_remote_call_explains(kernel):
    out, errors = run(
        kernel,
        """
        VWED.log.info("dispatch", "robot 7 sent")
        try:
            VWED.function.call("not_here", {})
        except Exception as exc:
            print(type(exc).__name__, exc)
    """,
    )
    assert "[INFO] dispatch: robot 7 sent" in out
    assert "GatewayUnavailableError" in out and "no gateway is attached" in out


def test_async_route_in_a_notebook(kernel):
    out, errors = run(
        kernel,
        """
        import asyncio
        async def slow(request):
            await asyncio.sleep(0.01)
            return "done"
        VWED.api.register_route("/slow", "POST", slow)
        print(await VWED.api.call_local("/slow", "POST"))
    """,
    )
    assert not errors and out.strip() == "done"


def test_bad_registration_is_a_clear_error(kernel):
    out, errors = run(
        kernel,
        """
        VWED.api.register_route("/a/../b", "GET", lambda r: 1)
    """,
    )
    assert errors and errors[0]["ename"] == "RegistrationError"
    out, errors = run(kernel, 'VWED.api.register_route("/a", "FETCH", lambda r: 1)')
    assert errors and "FETCH" in errors[0]["evalue"]


def test_vwed_kernel_install_writes_the_kernelspec(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "vwed_kernel.cli", "install", "--prefix", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    spec = json.loads((tmp_path / "share/jupyter/kernels/vwed/kernel.json").read_text())
    assert spec["display_name"] == "Python 3 (VWED)"
    assert spec["argv"][1:3] == ["-m", "vwed_kernel"]


def test_a_notebook_calls_functions_of_a_running_gateway(gw, scripts, tmp_path):
    import os

    from conftest import unique

    name = unique("remote")
    scripts.start(
        f"{name}.py",
        f"""
def boot():
    VWED.function.register("{name}_area", lambda w, h: w * h)
""",
    )
    write_gateway_kernelspec(tmp_path)
    km = KernelManager(kernel_name="vwed", kernel_spec_manager=make_kernelspec_manager(tmp_path))
    km.start_kernel(env={**os.environ, "VWED_GATEWAY_URL": gw.url})
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        out, errors = run(
            kc,
            f"""
            print(VWED.function.call("{name}_area", {{"w": 3, "h": 4}}))
            print(await VWED.function.acall("{name}_area", [5, 6]))
            print(any(f["name"] == "{name}_area" for f in VWED.function.list_all()))
            try:
                VWED.function.call("no_such_function_at_all", {{}})
            except Exception as exc:
                print(exc.code)
        """,
        )
        assert not errors, errors
        assert out.split() == ["12", "30", "True", "FUNCTION_NOT_FOUND"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
