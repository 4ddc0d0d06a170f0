"""A caller token reaches only the step functions a file defines (issue 12, item 1),
and steps run under the gateway's ``--policy``: real worker kernels, a real gateway."""

from __future__ import annotations

import json

import httpx
import pytest

from conftest import GatewayThread, unique
from kernel_gateway.config import Settings

STEP_FILE = """
import functools
from subprocess import check_output

API_KEY = "s3cret-key"
COUNTER = {"n": 0}


def _twice(fn):
    @functools.wraps(fn)
    def inner(*a, **k):
        return fn(*a, **k) * 2
    return inner


def public(x=1):
    COUNTER["n"] += 1
    return x


@_twice
def decorated(x=1):
    return x


async def later(x=1):
    return x


def _private():
    return API_KEY


class Thing:
    def __call__(self):
        return API_KEY


thing = Thing()
"""


def step(client, path, function, args=None):
    body = {"script_path": path, "function_name": function}
    if args is not None:
        body["args"] = args
    return client.post("/script-engine/execute", json=body)


@pytest.mark.timeout(90)
def test_only_functions_defined_in_the_file_are_callable(scripts, client):
    path = scripts.write(f"{unique('guarded_steps')}.py", STEP_FILE)
    assert step(client, path, "public", [3]).json()["result"] == 3
    assert step(client, path, "decorated", [3]).json()["result"] == 6
    assert step(client, path, "later", [4]).json()["result"] == 4
    refused = {
        "check_output": ["echo", "pwned"],  # imported by the file
        "__getattribute__": "API_KEY",  # would read any global
        "__setattr__": ["API_KEY", "changed"],  # would rewrite the module for every caller
        "__delattr__": "COUNTER",
        "_private": None,
        "Thing": None,  # a class is not a function
        "thing": None,  # nor an instance
        "API_KEY": None,
        "functools": None,
        "__init__": None,
        "public.__globals__": None,
    }
    for name, args in refused.items():
        r = step(client, path, name, args)
        assert r.status_code == 404, (name, r.text)
        body = r.json()
        assert body["code"] == "FUNCTION_NOT_FOUND", name
        assert sorted(body["available"]) == ["decorated", "later", "public"], name
        assert "s3cret" not in r.text and "pwned" not in r.text
    # the module's state was not changed by the refused calls
    assert step(client, path, "public", [5]).json()["result"] == 5


@pytest.mark.timeout(120)
def test_steps_run_under_the_gateway_policy(tmp_path):
    root = tmp_path / "scripts"
    root.mkdir()
    (root / "out").mkdir()
    (root / "steps.py").write_text(
        "import os, subprocess\n"
        "HERE = os.path.dirname(__file__)\n"
        "def spawn():\n    return subprocess.run(['true']).returncode\n"
        "def write(rel):\n"
        "    with open(os.path.join(HERE, rel), 'w') as fh:\n        fh.write('x')\n"
        "    return rel\n"
    )
    (tmp_path / "policy.json").write_text(json.dumps({"subprocess": False, "write": ["out"]}))
    settings = Settings(
        scripts_dir=str(root),
        port=0,
        data_dir=str(tmp_path / "data"),
        pool_size=1,
        workers=1,
        auth=False,
        policy=str(tmp_path / "policy.json"),
    ).validated()
    gw = GatewayThread(settings).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=60) as c:
            r = step(c, "steps.py", "spawn")
            assert r.status_code == 422 and r.json()["code"] == "STEP_FAILED", r.text
            assert r.json()["type"] == "PolicyViolation"
            assert "forbids starting a process" in r.json()["message"]
            # relative write entries of --policy are under the scripts root for steps
            assert step(c, "steps.py", "write", ["out/ok.txt"]).status_code == 200
            r = step(c, "steps.py", "write", ["elsewhere.txt"])
            assert r.status_code == 422 and r.json()["type"] == "PolicyViolation", r.text
            assert not (root / "elsewhere.txt").exists()
    finally:
        gw.stop()
