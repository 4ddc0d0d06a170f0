"""Script kernels on other hosts (issue 19, part 2), proven on this machine: two
"hosts" are network namespaces made by the test (``tests/netns.py``: veth links,
addresses only inside them, sshd in each with its own config and keys), and
scripts started there through gateway_provisioners' SSH ``DistributedProvisioner``
from kernelspecs written by ``vwed-kernel install --remote-host``. Calls cross the
namespace boundary; a remote kernel killed in its namespace is restarted per the
script's policy; a restored script goes back to its host; a gateway killed -9 (or
replaced by its standby at a takeover, with ``--ha`` on PostgreSQL) reattaches to
the remote kernels that still run instead of starting them again.

The namespace tests run as root only (``ip netns add``), with openssh-server and
gateway_provisioners, and skip with the reason otherwise. Every namespace and sshd
is removed by the fixture's finalizer, also after a failure.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netns import Hosts, why_not
from test_store_outage import pg_schema  # noqa: F401 - the fixture (a schema per test)

from conftest import GatewayProcess, wait_until

_problem = why_not() or (
    None
    if importlib.util.find_spec("gateway_provisioners")
    else "needs gateway_provisioners (pip install gateway_provisioners)"
)
needs_hosts = pytest.mark.skipif(_problem is not None, reason=f"remote kernels: {_problem}")

SCRIPT = """
import os

def boot():
    VWED.api.register_route("/{name}/where", "GET", where)

def where():
    return {{"netns": os.readlink("/proc/self/ns/net"), "pid": os.getpid()}}
"""


@pytest.mark.timeout(60)
@pytest.mark.skipif(
    not importlib.util.find_spec("gateway_provisioners"), reason="needs gateway_provisioners"
)
def test_install_writes_a_remote_kernelspec(tmp_path: Path) -> None:
    """``vwed-kernel install --remote-host``: the SSH provisioner, its hosts, the
    launcher assembled into the kernelspec's folder (the package ships a placeholder
    listener), the VWED kernel class; the gateway's start accepts its name."""
    import json

    _install(tmp_path, "vwed-far", "10.77.0.2")
    folder = tmp_path / "kernels" / "vwed-far"
    spec = json.loads((folder / "kernel.json").read_text())
    provisioner = spec["metadata"]["kernel_provisioner"]
    assert provisioner == {
        "provisioner_name": "distributed-provisioner",
        "config": {"remote_hosts": ["10.77.0.2"]},
    }
    argv = spec["argv"]
    assert argv[1] == str(folder.resolve() / "scripts" / "launch_ipykernel.py")
    assert argv[argv.index("--kernel-class-name") + 1] == "vwed_kernel.kernel.VWEDKernel"
    listener = (folder / "scripts" / "server_listener.py").read_text()
    assert "assembly is required" not in listener  # the real one, not the placeholder
    out = subprocess.run(
        [sys.executable, "-m", "vwed_kernel.cli", "install", "--data-dir", str(tmp_path)]
        + ["--launcher", "/x/launch_ipykernel.py"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "need --remote-host" in out.stderr


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    made = Hosts(tmp_path_factory.mktemp("hosts"))
    try:
        made.open()
        yield made
    finally:
        made.close()


@pytest.fixture
def remote_env(hosts: Hosts, monkeypatch: pytest.MonkeyPatch) -> Hosts:
    """The gateway subprocess inherits these: its SSH key, known_hosts, port, user."""
    for key, value in hosts.env().items():
        monkeypatch.setenv(key, value)
    return hosts


def _install(data: Path, name: str, host: str) -> None:
    """``vwed-kernel install --remote-host`` into the gateway's data directory."""
    out = subprocess.run(
        [sys.executable, "-m", "vwed_kernel.cli", "install", "--data-dir", str(data)]
        + ["--name", name, "--remote-host", host],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert f"Installed kernelspec {name} (kernels on {host})" in out.stdout


def _scripts(tmp_path: Path, hosts: Hosts, names: tuple[str, ...]) -> tuple[Path, Path]:
    root, data = tmp_path / "scripts", tmp_path / "data"
    root.mkdir()
    data.mkdir()
    for name in names:
        (root / f"{name}.py").write_text(SCRIPT.format(name=name))
    for i, host in enumerate(hosts.hosts):
        _install(data, f"vwed-h{i}", host.address)
    return root, data


def _where(gw: GatewayProcess, name: str) -> dict[str, Any]:
    r = gw.client.get(f"/script-api/{name}/where")
    assert r.status_code == 200, r.text
    return dict(r.json())


def _netns_of(hosts: Hosts, i: int) -> str:
    return hosts.hosts[i].run("readlink", "/proc/self/ns/net").strip()


@needs_hosts
@pytest.mark.timeout(300)
def test_scripts_on_two_remote_hosts_and_a_local_one(tmp_path: Path, remote_env: Hosts) -> None:
    hosts = remote_env
    root, data = _scripts(tmp_path, hosts, ("one", "two", "here"))
    gw = GatewayProcess(root, data, "--pool-size", "0", "--restart-backoff", "0.1")
    try:
        # an unknown kernelspec: 400 before anything starts
        r = gw.client.post(
            "/script-engine/start", json={"script_path": "one.py", "kernel_name": "nope"}
        )
        assert r.status_code == 400 and r.json()["code"] == "UNKNOWN_KERNEL", r.text
        assert "vwed-h0" in r.json()["error"]
        r = gw.client.post("/script-engine/start", json={"script_path": "one.py", "kernel_name": 3})
        assert r.status_code == 400 and r.json()["code"] == "BAD_REQUEST", r.text

        for path, body in (
            ("one.py", {"kernel_name": "vwed-h0", "restart": "on-failure"}),
            ("two.py", {"kernel_name": "vwed-h1", "memory_limit_mb": 512}),
            ("here.py", {}),
        ):
            r = gw.client.post("/script-engine/start", json={"script_path": path, **body})
            assert r.status_code == 200, r.text

        # each call crosses into the namespace its kernelspec names
        mine = os.readlink("/proc/self/ns/net")
        assert _where(gw, "one")["netns"] == _netns_of(hosts, 0) != mine
        assert _where(gw, "two")["netns"] == _netns_of(hosts, 1) != mine
        assert _where(gw, "here")["netns"] == mine

        # what a remote kernel cannot give is null, and says where it runs
        running = gw.running()
        one, two, here = (running[p]["kernels"][0] for p in ("one.py", "two.py", "here.py"))
        assert one["host"] == hosts.hosts[0].address and two["host"] == hosts.hosts[1].address
        assert one["pid"] is None and one["rss_mib"] is None and one["cpu_percent"] is None
        assert here["host"] is None and here["pid"] and here["rss_mib"]
        assert "is not enforced" in gw.out.read_text()  # two.py's memory limit, said

        # a remote kernel killed in its namespace: restarted there, per its policy
        before = _where(gw, "one")["pid"]
        hosts.hosts[0].run("kill", "-9", str(before))

        def restarted() -> bool:
            script = gw.running().get("one.py")
            return bool(script and script["restarts"] >= 1 and script["status"] == "running")

        wait_until(restarted, 90, "one.py restarted on its host")
        after = _where(gw, "one")
        assert after["pid"] != before and after["netns"] == _netns_of(hosts, 0)

        # a stop ends the remote kernel (through the launcher's listener)
        pid_two = _where(gw, "two")["pid"]
        r = gw.client.post("/script-engine/stop", json={"script_path": "two.py"})
        assert r.status_code == 200, r.text
        wait_until(lambda: not _alive(pid_two), 30, "two.py's remote kernel gone")
    finally:
        gw.finish()


@needs_hosts
@pytest.mark.timeout(300)
def test_a_restored_remote_script_goes_back_to_its_host(tmp_path: Path, remote_env: Hosts) -> None:
    """After a clean gateway restart the script runs on its host again (its
    kernel_name is kept with it): a clean stop ends the remote kernels (a SIGTERM
    here), so the restore finds none to reattach to and starts a new one."""
    hosts = remote_env
    root, data = _scripts(tmp_path, hosts, ("one",))
    first = GatewayProcess(root, data, "--pool-size", "0")
    try:
        r = first.client.post(
            "/script-engine/start", json={"script_path": "one.py", "kernel_name": "vwed-h1"}
        )
        assert r.status_code == 200, r.text
        old = _where(first, "one")["pid"]
    finally:
        first.proc.terminate()  # a clean stop: its kernels are shut down, and restored
        first.proc.wait(60)
        first.finish()
    assert not _alive(old)
    second = GatewayProcess(root, data, "--pool-size", "0")
    try:
        wait_until(
            lambda: second.running().get("one.py", {}).get("status") == "running",
            90,
            "one.py restored",
        )
        assert second.running()["one.py"]["kernels"][0]["host"] == hosts.hosts[1].address
        assert _where(second, "one")["netns"] == _netns_of(hosts, 1)
    finally:
        second.finish()


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (the namespaces share this machine's PIDs)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return "State:\tZ" not in f.read()
    except FileNotFoundError:
        return False


@needs_hosts
@pytest.mark.timeout(180)
def test_a_remote_kernel_outlives_its_manager_and_is_reattached(
    tmp_path: Path, remote_env: Hosts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reconnect a restarted gateway needs (kernel_gateway/remote.py), at the
    Jupyter level: a kernel started on a namespace host through the gateway's own
    launch path, its manager dropped without a shutdown (as a gateway killed -9
    would), a new manager built from the persisted provisioner info, and the
    kernel's state still there. (The engine's restore goes through it:
    test_a_gateway_killed_9_reattaches_to_its_remote_kernels.)"""
    import asyncio
    import json

    from kernel_gateway.kernelspec import make_kernelspec_manager
    from kernel_gateway.launch import LaunchOptions, start_kernel
    from kernel_gateway.remote import prepare_remote_provisioners, reattach, remote_state

    prepare_remote_provisioners(os.environ)  # read when gateway_provisioners is imported
    data = tmp_path / "data"
    _install(data, "vwed-h0", remote_env.hosts[0].address)
    ksm = make_kernelspec_manager(data)

    async def run(client: Any, code: str) -> Any:
        msg_id = client.execute(code)
        while True:
            msg = await client.get_iopub_msg(timeout=30)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "execute_result":
                return msg["content"]["data"]["text/plain"]
            if msg["msg_type"] == "error":
                raise AssertionError(msg["content"]["evalue"])
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return None

    async def scenario() -> None:
        km = await start_kernel(ksm, "vwed-h0", LaunchOptions())
        client = km.client()
        client.start_channels()
        await client.wait_for_ready(timeout=60)
        pid = await run(client, "import os; x = 41; os.getpid()")
        state = await remote_state(km)
        assert state is not None
        stored = json.loads(json.dumps(state))  # what a database row would give back
        client.stop_channels()
        del km, client  # the gateway "dies": no shutdown, the kernel runs on

        again = await reattach(ksm, stored)
        assert again is not None, "the kernel was not found again"
        client = again.client()
        client.start_channels()
        await client.wait_for_ready(timeout=60)
        assert await run(client, "x + 1") == "42"
        assert await run(client, "os.getpid()") == pid
        assert await run(client, "os.readlink('/proc/self/ns/net')") == repr(
            _netns_of(remote_env, 0)
        )
        client.stop_channels()
        await again.shutdown_kernel(now=False)
        assert await reattach(ksm, stored) is None  # gone: a restore starts a new one

    asyncio.run(scenario())


COUNTER = """
import os

count = 0

def boot():
    VWED.api.register_route("/{name}/where", "GET", where)
    VWED.api.register_route("/{name}/count", "POST", bump)

def where():
    from ipykernel.kernelbase import Kernel
    # the kernel's message key: the test checks it is nowhere in the database in plaintext
    key = Kernel.instance().session.key.decode()
    return {{"netns": os.readlink("/proc/self/ns/net"), "pid": os.getpid(), "key": key}}

def bump():
    global count
    count += 1
    return {{"count": count, "pid": os.getpid()}}
"""


def _counter_scripts(tmp_path: Path, hosts: Hosts, names: tuple[str, ...]) -> tuple[Path, Path]:
    root, data = _scripts(tmp_path, hosts, ())
    for name in names:
        (root / f"{name}.py").write_text(COUNTER.format(name=name))
    return root, data


def _bump(gw: GatewayProcess, name: str) -> int:
    r = gw.client.post(f"/script-api/{name}/count")
    assert r.status_code == 200, r.text
    return int(r.json()["count"])


def _kernel_pids(hosts: Hosts, i: int, data: Path) -> set[int]:
    """The remote kernels' processes in namespace ``i`` (each kernel with its listener)
    started from the kernelspecs in ``data`` (not those of the module's other tests)."""
    out = subprocess.run(
        ["ip", "netns", "pids", hosts.hosts[i].netns], capture_output=True, text=True, timeout=10
    ).stdout.split()
    found = set()
    for pid in out:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
                if b"launch_ipykernel" in cmdline and str(data).encode() in cmdline:
                    found.add(int(pid))
        except OSError:
            continue
    return found


def _desired_options(data: Path) -> dict[str, dict[str, Any]]:
    import json
    import sqlite3

    with sqlite3.connect(data / "vwed.sqlite3") as db:
        rows = db.execute("SELECT script_path, options FROM vwed_desired_scripts").fetchall()
    return {path: json.loads(options or "{}") for path, options in rows}


def _runs_of(data: Path, path: str) -> list[tuple[int, str, float | None]]:
    import sqlite3

    with sqlite3.connect(data / "vwed.sqlite3") as db:
        return list(
            db.execute(
                "SELECT id, status, stopped_at FROM vwed_script_runs WHERE script_path = ? "
                "ORDER BY id",
                (path,),
            )
        )


# keep.py of the kill -9 test also reads a secret in boot() and prints it on demand:
# after the restart the printed value must still be *** in the stored logs
SECRET_READER = """
secret = None

def boot():
    global secret
    VWED.api.register_route("/{name}/where", "GET", where)
    VWED.api.register_route("/{name}/count", "POST", bump)
    VWED.api.register_route("/{name}/leak", "POST", leak)
    secret = VWED.secrets.get("plc_password")
    global mqtt_password  # the MQTT settings, as VWED.mqtt asks for them at its first use
    mqtt_password = VWED.mqtt._config()["password"]

def leak():
    print("the PLC password is", secret)
    print("the MQTT password is", mqtt_password)
    return {{"printed": True}}
"""


def _tamper(data: Path, path: str, change: Any, part: str = "kernels") -> None:
    """Open the sealed attach state of ``path`` (with the gateway's secrets key), let
    ``change`` edit its kernels' stored provisioner info, seal it again: a stored
    state a restore cannot use to ask the launcher (an exception in ``reattach``)."""
    import json
    import sqlite3

    from kernel_gateway.secrets.crypto import SecretsKey

    key = SecretsKey.load(data / "secrets.key")
    with sqlite3.connect(data / "vwed.sqlite3") as db:
        (raw,) = db.execute(
            "SELECT options FROM vwed_desired_scripts WHERE script_path = ?", (path,)
        ).fetchone()
        options = json.loads(raw)
        state = json.loads(key.open(f"kernel-state:{path}", options["attach"]))
        for kernel in state[part]:
            change(kernel["provisioner"])
        options["attach"] = key.seal(f"kernel-state:{path}", json.dumps(state))
        db.execute(
            "UPDATE vwed_desired_scripts SET options = ? WHERE script_path = ?",
            (json.dumps(options), path),
        )


def _attach_state(data: Path, path: str) -> dict[str, Any]:
    import json

    from kernel_gateway.secrets.crypto import SecretsKey

    key = SecretsKey.load(data / "secrets.key")
    sealed = _desired_options(data)[path]["attach"]
    return dict(json.loads(key.open(f"kernel-state:{path}", sealed)))


@needs_hosts
@pytest.mark.timeout(420)
def test_a_gateway_killed_9_reattaches_to_its_remote_kernels(
    tmp_path: Path, remote_env: Hosts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 of the gateway, a new gateway on the same data directory: the remote
    kernel that still runs (itself a restart after a crash) is reattached (same pid on its host, its globals kept,
    boot() not run again, the same script id and run, calls routed to it, no second
    copy); the remote kernel that died meanwhile is started again on its host; the
    local script is started again. The kernels' message keys are nowhere in the
    database in plaintext (sealed with the secrets key). The reattached script keeps its
    rate limit (shown, stored again, 429 past it), and the secret and MQTT password its
    kernel got before the restart are *** in its stored logs. A kernel whose launcher
    cannot be asked (an exception in reattach) is ended over SSH before its script starts
    again; one that cannot be ended either is kept sealed as an orphan with an ERROR, and
    ended at the next restore (a third gateway)."""
    hosts = remote_env
    root, data = _counter_scripts(tmp_path, hosts, ("keep", "lost", "here", "stuck", "orphan"))
    (root / "keep.py").write_text(COUNTER.format(name="keep") + SECRET_READER.format(name="keep"))
    password = "plc-" + os.urandom(8).hex()
    limit = {"calls_per_minute": 1, "burst": 30}  # refills slowly: 30 calls, then 429
    # a broker's settings for kernels (never connected to here: only its password matters)
    mqtt_password = "mqtt-" + os.urandom(8).hex()
    monkeypatch.setenv("VWED_MQTT_PASSWORD", mqtt_password)
    mqtt = ("--mqtt-url", "mqtt://127.0.0.1:1883", "--mqtt-user", "vwed")
    first = GatewayProcess(root, data, "--pool-size", "0", *mqtt)
    try:
        r = first.client.put("/script-engine/secrets/plc_password", json={"value": password})
        assert r.status_code in (200, 201), r.text
        for path, body in (
            ("keep.py", {"kernel_name": "vwed-h0", "rate_limit": limit, "cpu_quota": 0.5}),
            ("lost.py", {"kernel_name": "vwed-h1"}),
            ("here.py", {}),
            ("stuck.py", {"kernel_name": "vwed-h1"}),
            ("orphan.py", {"kernel_name": "vwed-h1"}),
        ):
            r = first.client.post("/script-engine/start", json={"script_path": path, **body})
            assert r.status_code == 200, r.text
        # keep.py's first kernel dies and is restarted per its policy: what is kept for
        # a reattach is its new kernel's
        crashed = _where(first, "keep")["pid"]
        hosts.hosts[0].run("kill", "-9", str(crashed))
        wait_until(
            lambda: (
                first.running().get("keep.py", {}).get("restarts") == 1
                and first.running()["keep.py"]["status"] == "running"
            ),
            90,
            "keep.py restarted on its host",
        )
        for _ in range(3):
            _bump(first, "keep")
        assert _bump(first, "lost") == 1
        keep, lost = _where(first, "keep"), _where(first, "lost")
        stuck, orphan = _where(first, "stuck"), _where(first, "orphan")
        before = first.running()
        assert before["keep.py"]["rate_limit"] == limit
        launchers = _kernel_pids(hosts, 0, data)  # keep.py's kernel (and its listener)
        assert keep["pid"] in launchers
    finally:
        first.proc.kill()  # kill -9: no shutdown, its remote kernels run on
        first.proc.wait(30)
        first.finish()
    assert _alive(keep["pid"]) and _alive(lost["pid"])
    hosts.hosts[1].run("kill", "-9", str(lost["pid"]))  # dies while no gateway runs
    wait_until(lambda: not _alive(lost["pid"]), 30, "lost.py's kernel gone")

    # nothing of a kernel's key in plaintext in the database (the whole file)
    stored = (data / "vwed.sqlite3").read_bytes()
    for wal in data.glob("vwed.sqlite3-*"):
        stored += wal.read_bytes()
    assert keep["key"].encode() not in stored and lost["key"].encode() not in stored
    options = _desired_options(data)
    assert options["keep.py"]["attach"].startswith("v1:")  # sealed (secrets/crypto.py)
    assert options["keep.py"]["rate_limit"] == limit
    assert "attach" not in options["here.py"]
    assert password.encode() not in stored
    # stuck.py and orphan.py: their launchers cannot be asked at the restore (a stored
    # listener port that does not load: an exception, as an unreachable host gives).
    # stuck.py's kernel is then ended over SSH before a new one starts; orphan.py's
    # host is wrong too, so it cannot be ended: kept as an orphan, with an ERROR
    host1 = _attach_state(data, "orphan.py")["kernels"][0]["provisioner"]["assigned_host"]
    _tamper(data, "stuck.py", lambda info: info.update(comm_port="unreachable"))
    _tamper(
        data,
        "orphan.py",
        lambda info: info.update(comm_port="unreachable", assigned_host="127.0.0.1"),
    )
    assert _alive(stuck["pid"]) and _alive(orphan["pid"])

    second = GatewayProcess(root, data, "--pool-size", "0", *mqtt)
    try:

        def restored() -> bool:
            running = second.running()
            return all(
                running.get(p, {}).get("status") == "running"
                for p in ("keep.py", "lost.py", "here.py", "stuck.py", "orphan.py")
            )

        wait_until(restored, 180, "the five scripts restored")
        after = second.running()
        # reattached: the same process on its host, its globals, script id and run
        again = _where(second, "keep")
        assert again["pid"] == keep["pid"] and again["netns"] == _netns_of(hosts, 0)
        assert _bump(second, "keep") == 4
        assert after["keep.py"]["script_id"] == before["keep.py"]["script_id"]
        assert after["keep.py"]["run_id"] == before["keep.py"]["run_id"]
        assert after["keep.py"]["kernels"][0]["host"] == hosts.hosts[0].address
        assert _kernel_pids(hosts, 0, data) == launchers  # no second copy on its host
        runs = _runs_of(data, "keep.py")
        assert len(runs) == 1 and runs[0][1] == "running" and runs[0][2] is None, runs
        log = second.out.read_text()
        assert "reattached keep.py to 1 running kernel(s)" in log, log[-3000:]
        assert "here.py are gone" not in log  # a local script keeps no state to reattach to
        assert keep["key"] not in log and keep["key"] not in first.out.read_text()
        # gone meanwhile: started again on its host (a new kernel, boot() again)
        new = _where(second, "lost")
        assert new["pid"] != lost["pid"] and new["netns"] == _netns_of(hosts, 1)
        assert _bump(second, "lost") == 1
        assert after["lost.py"]["run_id"] != before["lost.py"]["run_id"]
        assert [r[1] for r in _runs_of(data, "lost.py")] == ["died", "running"]
        # a local kernel dies with its gateway: started again
        assert _bump(second, "here") == 1
        # the secret keep.py read in boot() before the restart is still redacted
        r = second.client.post("/script-api/keep/leak")
        assert r.status_code == 200, r.text

        def printed() -> list[dict[str, Any]]:
            r = second.client.get(
                "/script-engine/logs",
                params={"script_id": after["keep.py"]["script_id"], "limit": 500},
            )
            assert r.status_code == 200, r.text
            return [x for x in r.json()["records"] if " password is" in x["message"]]

        def both() -> list[dict[str, Any]] | None:
            got = printed()
            text = "\n".join(x["message"] for x in got)
            return got if "the PLC password" in text and "the MQTT password" in text else None

        records = wait_until(both, 30, "keep.py's prints stored")
        assert all(password not in x["message"] for x in records), records
        assert all(mqtt_password not in x["message"] for x in records), records
        assert any("the PLC password is ***" in x["message"] for x in records), records
        assert any("the MQTT password is ***" in x["message"] for x in records), records
        # its rate limit holds after the restart: shown, stored again, and enforced
        assert after["keep.py"]["rate_limit"] == limit
        assert _desired_options(data)["keep.py"]["rate_limit"] == limit
        # and its CPU quota (not held on another host, as before the restart: said so)
        assert _desired_options(data)["keep.py"]["cpu_quota"] == 0.5
        assert after["keep.py"]["cpu_quota"]["cores"] == 0.5, after["keep.py"]["cpu_quota"]
        codes = [second.client.post("/script-api/keep/count").status_code for _ in range(35)]
        assert 429 in codes and set(codes) <= {200, 429}, codes
        # stuck.py: its old kernel, whose launcher could not be asked, was ended on its
        # host before the new one started (one copy, never two)
        wait_until(lambda: not _alive(stuck["pid"]), 30, "stuck.py's old kernel ended")
        assert _where(second, "stuck")["pid"] != stuck["pid"]
        # orphan.py: its old kernel could not be ended: an ERROR naming host and pid,
        # and its sealed state kept with the script, to be ended at the next restore
        assert _alive(orphan["pid"])
        assert f"an old kernel of orphan.py (pid {orphan['pid']} on 127.0.0.1)" in (
            second.out.read_text()
        )
        kept = _attach_state(data, "orphan.py")
        assert [o["provisioner"]["pid"] for o in kept["orphans"]] == [orphan["pid"]]
        assert _where(second, "orphan")["pid"] != orphan["pid"]
        log = second.out.read_text()
        assert password not in log and password not in first.out.read_text()
        assert mqtt_password not in log
    finally:
        second.proc.terminate()  # a clean stop ends its kernels, remote ones too
        second.proc.wait(60)
        second.finish()
        if sys.exc_info()[0] is not None and _alive(orphan["pid"]):
            hosts.hosts[1].run("kill", "-9", str(orphan["pid"]))
    wait_until(lambda: not _alive(keep["pid"]), 30, "keep.py's kernel ended by the stop")

    # the next restore tries the orphan again: its host answers now (the stored host
    # made right again), so it is ended there and no longer kept
    try:
        assert _alive(orphan["pid"])
        _tamper(data, "orphan.py", lambda i: i.update(assigned_host=host1), part="orphans")
        third = GatewayProcess(root, data, "--pool-size", "0", *mqtt)
        try:
            wait_until(
                lambda: third.running().get("orphan.py", {}).get("status") == "running",
                180,
                "orphan.py restored",
            )
            wait_until(lambda: not _alive(orphan["pid"]), 30, "the orphan ended at last")
            wait_until(
                lambda: _attach_state(data, "orphan.py")["orphans"] == [],
                30,
                "the orphan no longer kept",
            )
        finally:
            third.proc.terminate()
            third.proc.wait(60)
            third.finish()
    finally:
        if _alive(orphan["pid"]):  # what an operator does after the ERROR
            hosts.hosts[1].run("kill", "-9", str(orphan["pid"]))


@needs_hosts
@pytest.mark.timeout(300)
def test_a_takeover_reattaches_to_the_remote_kernels(
    tmp_path: Path,
    remote_env: Hosts,
    monkeypatch: pytest.MonkeyPatch,
    pg_schema: str,  # noqa: F811
) -> None:
    """--ha: the active gateway killed -9, the standby takes over and reattaches to the
    remote kernel it left (same pid, globals, script id and run), not a second copy.
    Both gateways have the same secrets key (docs/failover.md): the sealed state opens."""
    from test_failover import _active, _role, _url

    from kernel_gateway.secrets import ENV_KEY
    from kernel_gateway.secrets.crypto import new_key_text

    hosts = remote_env
    monkeypatch.setenv(ENV_KEY, new_key_text())
    root, data_a = _counter_scripts(tmp_path, hosts, ("keep",))
    data_b = tmp_path / "b"
    for i, host in enumerate(hosts.hosts):
        _install(data_b, f"vwed-h{i}", host.address)
    args = ("--db-url", _url(pg_schema), "--ha", "--pool-size", "0")
    a = GatewayProcess(root, data_a, *args)
    b = None
    try:
        wait_until(lambda: _active(a), 30, "the first gateway to become active")
        b = GatewayProcess(root, data_b, *args)
        assert _role(b) == "standby"
        r = a.client.post(
            "/script-engine/start", json={"script_path": "keep.py", "kernel_name": "vwed-h0"}
        )
        assert r.status_code == 200, r.text
        for _ in range(3):
            _bump(a, "keep")
        keep = _where(a, "keep")
        before = a.running()["keep.py"]
        launchers = _kernel_pids(hosts, 0, data_a)
        a.proc.kill()
        a.proc.wait(30)
        wait_until(lambda: _active(b), 60, "the standby to take over")
        wait_until(
            lambda: b.running().get("keep.py", {}).get("status") == "running",
            60,
            "keep.py reattached",
        )
        assert _where(b, "keep")["pid"] == keep["pid"]
        assert _bump(b, "keep") == 4
        after = b.running()["keep.py"]
        assert (after["script_id"], after["run_id"]) == (before["script_id"], before["run_id"])
        assert _kernel_pids(hosts, 0, data_a) == launchers
        assert "reattached keep.py to 1 running kernel(s)" in b.out.read_text()
    finally:
        a.finish()
        if b is not None:
            b.proc.terminate()
            b.proc.wait(60)
            b.finish()
