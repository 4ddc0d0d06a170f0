"""Secrets (issue 17): set and list without values (admin only), ``VWED.secrets.get`` in a
script and in a step within its scope, encrypted at rest (SQLite file bytes, a PostgreSQL
row), redacted in stored and live logs, absent from the kernel's environment, rotation,
a wrong key. A real gateway with real kernels."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from conftest import GatewayThread, token_gateway, unique, wait_until
from kernel_gateway.config import Settings
from logclient import collect, records

pytestmark = pytest.mark.timeout(180)

ADMIN, CALLER = "adm-" + uuid.uuid4().hex, "cal-" + uuid.uuid4().hex
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

PROBE = """
from vwed_kernel.errors import SecretNotAllowed, SecretNotFound

def boot():
    VWED.function.register("{fn}", probe)
    VWED.function.register("{fn}_leak", leak)

def probe(name):
    try:
        value = VWED.secrets.get(name)
    except SecretNotFound as exc:
        return {{"error": "SecretNotFound", "message": str(exc)}}
    except SecretNotAllowed as exc:
        return {{"error": "SecretNotAllowed", "message": str(exc)}}
    return {{"len": len(value), "sha": __import__("hashlib").sha256(value.encode()).hexdigest()}}

def leak(name):
    value = VWED.secrets.get(name)
    print("stdout says", value)
    VWED.log.info("plc", f"log says {{value}}")
    raise ValueError(f"traceback says {{value!r}}")
"""

STEP = """
def read(name):
    value = VWED.secrets.get(name)
    print("step prints", value)
    return len(value)
"""


@pytest.fixture(scope="module")
def sec(tmp_path_factory) -> Iterator[tuple[GatewayThread, Path]]:
    yield from token_gateway(tmp_path_factory, "secrets", ADMIN, CALLER, pool_size=2)


@pytest.fixture
def admin(sec) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"token {ADMIN}", "X-VWED-Author": "ana"}
    with httpx.Client(base_url=sec[0].url, headers=headers, timeout=60) as c:
        yield c


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def put(c: httpx.Client, name: str, value: str, scripts: Any = None) -> httpx.Response:
    body: dict[str, Any] = {"value": value}
    if scripts is not None:
        body["scripts"] = scripts
    return c.put(f"/script-engine/secrets/{name}", json=body)


def start(c: httpx.Client, root: Path, rel: str, code: str) -> dict[str, Any]:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(code)
    r = c.post("/script-engine/start", json={"script_path": rel})
    assert r.status_code == 200, r.text
    return r.json()


def call(c: httpx.Client, fn: str, *args: Any) -> httpx.Response:
    return c.post(f"/script-engine/functions/{fn}/call", json={"args": list(args)})


def logs(c: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    r = c.get("/script-engine/logs", params={"limit": 500, **params})
    assert r.status_code == 200, r.text
    return r.json()["records"]


def test_set_list_without_values_and_caller_refused(sec, admin):
    name, value = unique("api_key"), "v-" + uuid.uuid4().hex
    r = put(admin, name, value, ["warehouse/", "robot/battery.py"])
    assert r.status_code == 201, r.text
    assert r.json()["set_by"] == "ana (admin)" and r.json()["created"] is True
    assert value not in r.text
    r = put(admin, name, value + "2", ["warehouse/"])
    assert r.status_code == 200 and r.json()["created"] is False
    listed = admin.get("/script-engine/secrets")
    assert listed.status_code == 200 and value not in listed.text
    mine = [s for s in listed.json()["secrets"] if s["name"] == name]
    assert mine == [
        {
            "name": name,
            "scripts": ["warehouse/"],
            "set_by": "ana (admin)",
            "set_at": mine[0]["set_at"],
            "readable": True,
        }
    ]
    assert abs(mine[0]["set_at"] - time.time()) < 60
    # the caller token (task flows) neither reads the list nor writes
    with httpx.Client(
        base_url=sec[0].url, headers={"Authorization": f"token {CALLER}"}, timeout=30
    ) as caller:
        for r in (
            caller.get("/script-engine/secrets"),
            put(caller, name, "x"),
            caller.delete(f"/script-engine/secrets/{name}"),
        ):
            assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN", r.text
    # bad input: readable errors with a code
    cases = [
        (put(admin, "bad name!", "x"), 400, "BAD_SECRET_NAME"),
        (put(admin, "x" * 129, "x"), 400, "BAD_SECRET_NAME"),
        (put(admin, name, "x", []), 400, "BAD_REQUEST"),
        (put(admin, name, "x", ["../etc/"]), 400, "BAD_REQUEST"),
        (put(admin, name, "x", ["/abs.py"]), 400, "BAD_REQUEST"),
        (put(admin, name, "x" * (64 * 1024 + 1)), 413, "SECRET_TOO_LARGE"),
        (admin.put(f"/script-engine/secrets/{name}", json={"value": 5}), 400, "BAD_REQUEST"),
        (admin.put(f"/script-engine/secrets/{name}", json={}), 400, "MISSING_FIELD"),
        (
            admin.put(f"/script-engine/secrets/{name}", json={"value": "x", "x": 1}),
            400,
            "BAD_REQUEST",
        ),
    ]
    for r, status, code in cases:
        assert r.status_code == status and r.json()["code"] == code, r.text
    assert admin.delete(f"/script-engine/secrets/{name}").json()["deleted"] is True
    r = admin.delete(f"/script-engine/secrets/{name}")
    assert r.status_code == 404 and r.json()["code"] == "SECRET_NOT_FOUND"
    assert name not in admin.get("/script-engine/secrets").text


def test_get_in_scope_refused_unknown_and_rotation(sec, admin):
    gw, root = sec
    n = unique("wh")
    inside, everyone, elsewhere = f"{n}_plc", f"{n}_all", f"{n}_other"
    v1, v2 = "pw-" + uuid.uuid4().hex, "rotated-" + uuid.uuid4().hex
    assert put(admin, inside, v1, [f"{n}/"]).status_code == 201
    assert put(admin, everyone, "shared-" + n).status_code == 201
    assert put(admin, elsewhere, "no", ["robot/battery.py", f"{n}/other.py"]).status_code == 201
    fn = f"{n}_probe"
    sid = start(admin, root, f"{n}/ctl.py", PROBE.format(fn=fn))["script_id"]
    try:
        assert call(admin, fn, inside).json()["result"] == {"len": len(v1), "sha": sha(v1)}
        assert call(admin, fn, everyone).json()["result"]["len"] == len("shared-" + n)
        refused = call(admin, fn, elsewhere).json()["result"]
        assert refused["error"] == "SecretNotAllowed" and f"{n}/ctl.py" in refused["message"]
        unknown = call(admin, fn, f"{n}_nope").json()["result"]
        assert unknown["error"] == "SecretNotFound"
        # rotation: the next get sees the new value
        assert put(admin, inside, v2, [f"{n}/"]).status_code == 200
        assert call(admin, fn, inside).json()["result"] == {"len": len(v2), "sha": sha(v2)}

        # every read is an engine record of the script, by name only
        def said() -> str:
            found = logs(admin, script_id=sid, source="engine", q="secret")
            text = "\n".join(r["message"] for r in found)
            return text if f"secret {n}_nope refused" in text else ""

        text = wait_until(said, 10, "the engine records of the reads")
        assert f"read secret {inside}" in text and f"secret {elsewhere} refused" in text
        assert v1 not in text and v2 not in text
    finally:
        admin.post("/script-engine/stop", json={"script_id": sid})


def test_printed_value_redacted_in_stored_and_live_logs(sec, admin):
    gw, root = sec
    n = unique("leak")
    value = "hunter-" + uuid.uuid4().hex
    assert put(admin, n, value).status_code == 201
    fn = f"{n}_probe"
    sid = start(admin, root, f"{n}.py", PROBE.format(fn=fn))["script_id"]
    url = f"ws://127.0.0.1:{gw.gateway.port}/script-engine/logs/ws?script_id={sid}&token={ADMIN}"
    try:

        async def scenario() -> list[dict[str, Any]]:
            ready = asyncio.Event()

            def done(messages: list[dict[str, Any]]) -> bool:
                got = records(messages)
                return any("stdout says" in r["message"] for r in got) and any(
                    "log says" in r["message"] for r in got
                )

            reader = asyncio.ensure_future(collect(url, done, 30, ready))
            await asyncio.wait_for(ready.wait(), 10)
            await asyncio.sleep(0)  # the subscription is made as the connection opens
            loop = asyncio.get_running_loop()
            r = await loop.run_in_executor(None, lambda: call(admin, f"{fn}_leak", n))
            assert r.status_code == 500 and value not in r.text, r.text
            assert "***" in r.json()["error"]
            return await reader

        live = records(asyncio.run(scenario()))
        assert live and all(value not in r["message"] for r in live)
        assert any(r["message"] == "stdout says ***" for r in live), live
        assert any(r["message"] == "log says ***" for r in live), live
        stored = wait_until(
            lambda: (
                [r for r in logs(admin, script_id=sid) if "says" in r["message"]]
                if len([r for r in logs(admin, script_id=sid) if "says" in r["message"]]) >= 3
                else None
            ),
            10,
            "the stored records",
        )
        assert all(value not in r["message"] for r in logs(admin, script_id=sid))
        assert any("traceback says '***'" in r["message"] for r in stored), stored
        # the calls history keeps the redacted error message
        calls = admin.get("/script-engine/calls", params={"script_id": sid, "ok": "false"})
        assert calls.status_code == 200 and value not in calls.text
    finally:
        admin.post("/script-engine/stop", json={"script_id": sid})


def test_value_absent_from_kernel_environment_and_database_file(sec, admin):
    gw, root = sec
    n = unique("envchk")
    value = "zz-" + uuid.uuid4().hex
    assert put(admin, n, value).status_code == 201
    fn = f"{n}_probe"
    started = start(admin, root, f"{n}.py", PROBE.format(fn=fn))
    try:
        assert call(admin, fn, n).json()["result"]["len"] == len(value)
        pid = admin.get(f"/script-engine/scripts/{started['script_id']}").json()["pid"]
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert value.encode() not in environ
        assert b"VWED_SECRETS_KEY" not in environ
        data = Path(gw.settings.data_dir)
        key_file = data / "secrets.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        # the SQLite file (and its WAL) hold the ciphertext, never the value
        raw = b"".join(p.read_bytes() for p in data.glob("vwed.sqlite3*"))
        assert n.encode() in raw
        assert value.encode() not in raw
    finally:
        admin.post("/script-engine/stop", json={"script_id": started["script_id"]})


def test_step_gets_its_file_scope(sec, admin):
    gw, root = sec
    n = unique("stepsec")
    value = "st-" + uuid.uuid4().hex
    assert put(admin, n, value, [f"{n}/allowed.py"]).status_code == 201
    for rel in (f"{n}/allowed.py", f"{n}/denied.py"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(STEP)

    def step(rel: str) -> httpx.Response:
        return admin.post(
            "/script-engine/execute",
            json={"script_path": rel, "function_name": "read", "args": [n], "task_id": n},
        )

    r = step(f"{n}/allowed.py")
    assert r.status_code == 200, r.text
    assert r.json()["result"] == len(value)
    assert value not in r.text and "step prints ***" in r.json()["stdout"]
    r = step(f"{n}/denied.py")
    assert r.status_code == 422 and r.json()["code"] == "STEP_FAILED", r.text
    assert r.json()["type"] == "SecretNotAllowed"
    # the allowed file again, on the same worker: still its own scope
    assert step(f"{n}/allowed.py").json()["result"] == len(value)
    stored = wait_until(
        lambda: logs(admin, script_id=f"{n}/allowed.py", q="step prints"), 10, "step records"
    )
    assert all(value not in r["message"] for r in stored)


def test_wrong_key_is_said_and_reads_fail_clearly(tmp_path):
    (tmp_path / "scripts").mkdir()

    def gateway(key_file: str) -> GatewayThread:
        return GatewayThread(
            Settings(
                scripts_dir=str(tmp_path / "scripts"),
                port=0,
                data_dir=str(tmp_path / "data"),
                pool_size=0,
                workers=1,
                auth=False,
                secrets_key_file=key_file,
            ).validated()
        ).start()

    first = gateway(str(tmp_path / "k1"))
    try:
        with httpx.Client(base_url=first.url, timeout=30) as c:
            assert put(c, "plc", "one").status_code == 201
    finally:
        first.stop()
    assert (tmp_path / "k1").stat().st_mode & 0o777 == 0o600
    second = gateway(str(tmp_path / "k2"))  # another key: the gateway starts, and says so
    try:
        with httpx.Client(base_url=second.url, timeout=30) as c:
            listed = c.get("/script-engine/secrets").json()["secrets"]
            assert [(s["name"], s["readable"]) for s in listed] == [("plc", False)]
            said = wait_until(
                lambda: c.get(
                    "/script-engine/logs", params={"level": "ERROR", "q": "decrypted"}
                ).json()["records"],
                10,
                "the error record at start",
            )
            assert "plc" in said[0]["message"]
            (tmp_path / "scripts" / "s.py").write_text(STEP)
            r = c.post(
                "/script-engine/execute",
                json={"script_path": "s.py", "function_name": "read", "args": ["plc"]},
            )
            assert r.status_code == 422 and r.json()["code"] == "STEP_FAILED", r.text
            assert "cannot be decrypted with the gateway's key" in r.json()["error"]
            # set again with this key: readable
            assert put(c, "plc", "two").status_code == 200
            listed = c.get("/script-engine/secrets").json()["secrets"]
            assert listed[0]["readable"] is True
    finally:
        second.stop()


def _pg_reason() -> str | None:
    try:
        engine = sa.create_engine(PG, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return None
    except Exception as exc:  # driver missing or server down
        return f"postgresql not reachable: {type(exc).__name__}: {str(exc)[:120]}"


def test_value_absent_from_postgresql_row(tmp_path):
    reason = _pg_reason()
    if reason:
        pytest.skip(reason)
    schema = f"vwed_t_{uuid.uuid4().hex[:10]}"
    admin_engine = sa.create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    url = f"{PG}?options=-csearch_path%3D{schema}"
    (tmp_path / "scripts").mkdir()
    gw = GatewayThread(
        Settings(
            scripts_dir=str(tmp_path / "scripts"),
            port=0,
            data_dir=str(tmp_path / "data"),
            pool_size=0,
            workers=1,
            db_url=url,
            auth=False,
        ).validated()
    ).start()
    try:
        value = "pg-" + uuid.uuid4().hex
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            assert put(c, "pg_secret", value, ["a/"]).status_code == 201
        with admin_engine.connect() as conn:
            row = (
                conn.execute(
                    sa.text(f"SELECT * FROM {schema}.vwed_secrets WHERE name = 'pg_secret'")
                )
                .mappings()
                .one()
            )
        assert value not in repr(dict(row))
        assert row["ciphertext"].startswith("v1:")
    finally:
        gw.stop()
        with admin_engine.connect() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin_engine.dispose()


def test_cli_secrets_set_ls_rm(sec):
    import os
    import subprocess
    import sys

    gw, root = sec
    env = {**os.environ, "VWED_URL": gw.url, "VWED_TOKEN": ADMIN, "VWED_AUTHOR": "cli-user"}
    name, value = unique("cli"), "cv-" + uuid.uuid4().hex

    def vwed(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vwed_client", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    done = vwed("secrets", "set", name, "--scripts", f"a/,{name}.py", stdin=value + "\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{name}: set (for a/, {name}.py)"
    listed = vwed("secrets", "ls")
    assert listed.returncode == 0 and value not in listed.stdout
    line = next(row for row in listed.stdout.splitlines() if row.startswith(name))
    assert f"a/, {name}.py" in line and "cli-user (admin)" in line
    # the value is what stdin gave, without its final newline
    (root / f"{name}.py").write_text(STEP)
    with httpx.Client(
        base_url=gw.url, headers={"Authorization": f"token {ADMIN}"}, timeout=60
    ) as c:
        r = c.post(
            "/script-engine/execute",
            json={"script_path": f"{name}.py", "function_name": "read", "args": [name]},
        )
        assert r.status_code == 200 and r.json()["result"] == len(value), r.text
    empty = vwed("secrets", "set", name, stdin="")
    assert empty.returncode == 2 and "empty" in empty.stderr
    assert vwed("secrets", "rm", name).stdout.strip() == f"{name}: deleted"
    gone = vwed("secrets", "rm", name)
    assert gone.returncode == 1 and "SECRET_NOT_FOUND" in gone.stderr


def test_a_draft_gets_only_secrets_of_every_script(sec, admin):
    from test_drafts import Notebook
    from tornado.websocket import websocket_connect

    class AdminNotebook(Notebook):
        async def _connect(self) -> Any:
            return await asyncio.wait_for(websocket_connect(f"{self.url}?token={ADMIN}"), 15)

    n = unique("draftsec")
    assert put(admin, f"{n}_all", "for-all").status_code == 201
    assert put(admin, f"{n}_scoped", "for-some", ["drafts/", f"{n}/"]).status_code == 201
    r = admin.post("/api/kernels", json={"name": "vwed"})
    assert r.status_code == 201, r.text
    kid = r.json()["id"]
    nb = AdminNotebook(sec[0], kid)
    try:
        assert nb.run(f"print(len(VWED.secrets.get('{n}_all')))").strip() == str(len("for-all"))
        out = nb.run(
            f"""
            from vwed_kernel.errors import SecretNotAllowed
            try:
                VWED.secrets.get('{n}_scoped')
            except SecretNotAllowed as exc:
                print('refused:', exc)
            """
        )
        assert out.startswith("refused:") and "draft" in out, out
    finally:
        nb.close()
        admin.delete(f"/api/kernels/{kid}")


def test_a_boot_that_fails_with_the_value_does_not_leak_it(sec, admin):
    gw, root = sec
    n = unique("bootleak")
    value = "bv-" + uuid.uuid4().hex
    assert put(admin, n, value).status_code == 201
    (root / f"{n}.py").write_text(
        f"def boot():\n    raise RuntimeError('cannot log in with ' + VWED.secrets.get('{n}'))\n"
    )
    r = admin.post("/script-engine/start", json={"script_path": f"{n}.py"})
    assert r.status_code == 422 and r.json()["code"] == "BOOT_FAILED", r.text
    assert value not in r.text and "cannot log in with ***" in r.text
    stored = wait_until(
        lambda: logs(admin, script_path=f"{n}.py", q="cannot log in"), 10, "the boot's traceback"
    )
    assert all(value not in rec["message"] for rec in logs(admin, script_path=f"{n}.py"))
    assert any("***" in rec["message"] for rec in stored)


def test_the_key_from_the_environment_and_a_bad_key(tmp_path, monkeypatch):
    from kernel_gateway.config import ConfigError
    from kernel_gateway.secrets.crypto import new_key_text

    (tmp_path / "scripts").mkdir()
    settings = Settings(
        scripts_dir=str(tmp_path / "scripts"),
        port=0,
        data_dir=str(tmp_path / "data"),
        pool_size=0,
        workers=1,
        auth=False,
    ).validated()
    monkeypatch.setenv("VWED_SECRETS_KEY", new_key_text())
    gw = GatewayThread(settings).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            assert put(c, "k", "v").status_code == 201
            assert c.get("/script-engine/secrets").json()["secrets"][0]["readable"] is True
    finally:
        gw.stop()
    assert not (tmp_path / "data" / "secrets.key").exists()  # the variable wins
    bad = "not-a-key-" + uuid.uuid4().hex
    monkeypatch.setenv("VWED_SECRETS_KEY", bad)
    with pytest.raises(ConfigError) as refused:
        GatewayThread(settings).start()
    assert "VWED_SECRETS_KEY" in str(refused.value) and bad not in str(refused.value)


def test_without_a_gateway_the_module_says_so():
    from vwed_kernel.errors import GatewayUnavailableError
    from vwed_kernel.vwed import VWED

    with pytest.raises(GatewayUnavailableError, match="no gateway is attached"):
        VWED().secrets.get("plc_password")


def test_a_multi_line_value_is_masked_line_by_line_and_a_lone_surrogate_is_refused() -> None:
    """A PEM key printed line by line is masked line by line (each line of 8 characters or
    more); a value that is not valid Unicode is a 400, not a 500."""
    from kernel_gateway.errors import BadRequest
    from kernel_gateway.logs.redact import Redactor
    from kernel_gateway.secrets.scope import check_value

    pem = "-----BEGIN KEY-----\nMIIBVgIBADANBgkqhkiG9w0BAQEF\nAASCAUAwggE8AgEAAkEAq7\n-----END KEY-----"
    redactor = Redactor()
    redactor.given("k1", "s.py_1", pem)
    for line in pem.splitlines():
        assert redactor.redact(f"line: {line}", "k1") == "line: ***"
    assert redactor.redact("an ok line", "k1") == "an ok line"
    with pytest.raises(BadRequest):
        check_value("\ud800")


LEAKY = """
import time


def leak(name, hang):
    value = VWED.secrets.get(name)
    print("printed " + value)
    VWED.progress(0.5, message="using " + value)
    if hang:
        time.sleep(30)
    return len(value)
"""


def test_an_asynchronous_step_never_shows_a_secret(sec, admin):
    """Issue 18: a secret a step printed and put in its progress message is *** in the
    execution's record (the caller token reads it), its stored row and its events, also
    when the step ran out of time."""
    gw, root = sec
    n = unique("asyncsec")
    value = "as-" + uuid.uuid4().hex
    assert put(admin, n, value).status_code == 201
    (root / f"{n}.py").write_text(LEAKY)
    for hang, status in ((False, "succeeded"), (True, "timed_out")):
        body = {
            "script_path": f"{n}.py",
            "function_name": "leak",
            "args": [n, hang],
            "async": True,
            "timeout": 1.5,
        }
        r = admin.post("/script-engine/execute", json=body)
        assert r.status_code == 202, r.text
        execution_id = r.json()["execution_id"]
        r = admin.get(f"/script-engine/executions/{execution_id}/wait", params={"timeout": 60})
        found = r.json()
        assert found["status"] == status, found
        assert value not in r.text
        assert "printed ***" in found["stdout_tail"]
        assert found["progress"]["message"] == "using ***"
    data = Path(gw.settings.data_dir)
    for db_file in data.glob("*.db*"):
        assert value.encode() not in db_file.read_bytes()
