"""Script kernels in Docker containers (issue 19, part 2), proven on this machine: a
Docker daemon (Debian's docker.io), an image built here with no registry
(deploy/docker/build-kernel-image.sh: this machine's Python and the VWED packages,
``docker import``; tests/dockerd.py builds it once per version of the code), and
scripts started in containers of it through gateway_provisioners'
``DockerProvisioner`` from kernelspecs written by ``vwed-kernel install
--docker-image``. Calls are routed into the container (its own network namespace, on
Docker's bridge); a container killed with ``docker kill`` is restarted per the
script's policy; a gateway killed with -9 reattaches to the containers that still run
(the same container, its globals, boot() not run again) instead of starting them again;
one restarted while it cannot reach the Docker daemon neither starts a second container
nor forgets the first.

Skipped with the reason when no Docker daemon answers here (not root, docker.io not
installed or dockerd not running: .ci/run starts one) or the image cannot be built.
Every container a test starts is removed by its finalizer, also after a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dockerd import containers_of, ensure_image, why_not

from conftest import GatewayProcess, wait_until

_problem = why_not()
needs_docker = pytest.mark.skipif(_problem is not None, reason=f"Docker kernels: {_problem}")

SCRIPT = """
import os, socket

token = os.urandom(8).hex()  # drawn when the script's code runs: at its kernel's boot
count = 0

def boot():
    VWED.api.register_route("/{name}/where", "GET", where)
    VWED.api.register_route("/{name}/count", "POST", bump)
    VWED.api.register_route("/{name}/hog", "POST", hog)

def where():
    return {{
        "host": socket.gethostname(),
        "netns": os.readlink("/proc/self/ns/net"),
        "pid": os.getpid(),
        "uid": os.getuid(),
        "token": token,
    }}

def bump():
    global count
    count += 1
    return {{"count": count}}

def hog():
    held = bytearray(400 * 1024 * 1024)  # over its memory limit: the container is killed
    return {{"held": len(held)}}
"""


def _install(data: Path, name: str, image: str, marker: str | None = None) -> Path:
    """``vwed-kernel install --docker-image`` into the gateway's data directory; with
    ``marker``, the test's mark in its containers' environment (to find them)."""
    out = subprocess.run(
        [sys.executable, "-m", "vwed_kernel.cli", "install", "--data-dir", str(data)]
        + ["--name", name, "--docker-image", image],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert f"Installed kernelspec {name} (kernels in Docker containers of {image})" in out.stdout
    spec_file = data / "kernels" / name / "kernel.json"
    if marker is not None:
        spec = json.loads(spec_file.read_text())
        spec["env"]["VWED_TEST_MARKER"] = marker
        spec_file.write_text(json.dumps(spec))
    return spec_file


@pytest.mark.timeout(60)
@pytest.mark.skipif(
    not importlib.util.find_spec("gateway_provisioners"), reason="needs gateway_provisioners"
)
def test_install_writes_a_docker_kernelspec(tmp_path: Path) -> None:
    """The Docker provisioner with the image, the package's Docker launcher copied into
    the kernelspec's folder, the VWED kernel class, the kernel user of the image (not
    the gateway's root, which gateway_provisioners refuses); never with --remote-host."""
    spec_file = _install(tmp_path, "vwed-box", "vwed-kernel:x")
    spec = json.loads(spec_file.read_text())
    assert spec["metadata"]["kernel_provisioner"] == {
        "provisioner_name": "docker-provisioner",
        "config": {"image_name": "vwed-kernel:x"},
    }
    argv = spec["argv"]
    launcher = spec_file.parent / "scripts" / "launch_docker.py"
    assert argv[1] == str(launcher.resolve()) and launcher.is_file()
    assert argv[argv.index("--kernel-class-name") + 1] == "vwed_kernel.kernel.VWEDKernel"
    assert argv[argv.index("--response-address") + 1] == "{response_address}"
    assert spec["env"]["KERNEL_USERNAME"] == "vwed"
    out = subprocess.run(
        [sys.executable, "-m", "vwed_kernel.cli", "install", "--data-dir", str(tmp_path)]
        + ["--docker-image", "x", "--remote-host", "10.0.0.1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "not both" in out.stderr


@pytest.fixture(scope="module")
def image() -> str:
    try:
        return ensure_image()
    except Exception as exc:  # a daemon that answers but cannot import/run: said
        pytest.skip(f"the kernel image could not be built: {exc}")


@pytest.fixture
def marker() -> Iterator[str]:
    """This test's mark in its containers; those left at its end are removed."""
    mark = uuid.uuid4().hex
    yield mark
    left = containers_of(mark)
    if left:
        subprocess.run(["docker", "rm", "-f", *left], capture_output=True, timeout=60)


def _scripts(tmp_path: Path, image: str, marker: str, names: tuple[str, ...]) -> tuple[Path, Path]:
    root, data = tmp_path / "scripts", tmp_path / "data"
    root.mkdir()
    data.mkdir()
    for name in names:
        (root / f"{name}.py").write_text(SCRIPT.format(name=name))
    _install(data, "vwed-docker", image, marker)
    return root, data


def _start_in_docker(gw: GatewayProcess, path: str) -> None:
    """Start ``path`` on the Docker kernelspec; the start must answer 200."""
    r = gw.client.post(
        "/script-engine/start", json={"script_path": path, "kernel_name": "vwed-docker"}
    )
    assert r.status_code == 200, r.text


def _where(gw: GatewayProcess, name: str) -> dict[str, Any]:
    r = gw.client.get(f"/script-api/{name}/where")
    assert r.status_code == 200, r.text
    return dict(r.json())


def _bump(gw: GatewayProcess, name: str) -> int:
    r = gw.client.post(f"/script-api/{name}/count")
    assert r.status_code == 200, r.text
    return int(r.json()["count"])


def _running(container: str) -> bool:
    done = subprocess.run(
        ["docker", "inspect", "--format", "{{.State.Running}}", container],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.returncode == 0 and done.stdout.strip() == "true"


def _memory_limit(container: str) -> int:
    done = subprocess.run(
        ["docker", "inspect", "--format", "{{.HostConfig.Memory}}", container],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return int(done.stdout.strip() or 0)


@needs_docker
@pytest.mark.timeout(300)
def test_a_script_in_a_container(tmp_path: Path, image: str, marker: str) -> None:
    root, data = _scripts(tmp_path, image, marker, ("boxed", "here"))
    gw = GatewayProcess(root, data, "--pool-size", "0", "--restart-backoff", "0.1")
    try:
        boxed_options = {"kernel_name": "vwed-docker", "restart": "on-failure"}
        for path, body in (
            ("boxed.py", {**boxed_options, "memory_limit_mb": 256}),
            ("here.py", {"memory_limit_mb": 512}),
        ):
            r = gw.client.post("/script-engine/start", json={"script_path": path, **body})
            assert r.status_code == 200, r.text

        # the call crosses into the container: its own network namespace, its user
        boxed = _where(gw, "boxed")
        assert boxed["netns"] != os.readlink("/proc/self/ns/net")
        assert boxed["uid"] == 1000  # gateway_provisioners' KERNEL_UID, not the gateway's root
        assert containers_of(marker) == [boxed["host"]]  # the container's name is its hostname
        assert _where(gw, "here")["netns"] == os.readlink("/proc/self/ns/net")

        # it says where it runs; its CPU and RSS are measured (the container's main
        # process, on this machine: the daemon runs here), its pid is not the gateway's
        # to signal (null)
        kernel = gw.running()["boxed.py"]["kernels"][0]
        assert kernel["host"] == boxed["host"]
        assert kernel["pid"] is None and kernel["cpu_percent"] is not None
        assert 20 < kernel["rss_mib"] < 256, kernel

        # docker kill: the kernel's death is seen and the script restarted per its
        # policy, in a new container
        subprocess.run(["docker", "kill", boxed["host"]], check=True, timeout=30)

        def restarted() -> bool:
            script = gw.running().get("boxed.py")
            return bool(script and script["restarts"] >= 1 and script["status"] == "running")

        wait_until(restarted, 90, "boxed.py restarted in a new container")
        again = _where(gw, "boxed")
        assert again["host"] != boxed["host"] and again["token"] != boxed["token"]
        assert containers_of(marker) == [again["host"]]
        assert _bump(gw, "boxed") == 1

        # its memory limit is Docker's (set on each new container): over it, the
        # container is killed, and the script restarted per its policy
        assert _memory_limit(again["host"]) == 256 * 2**20
        assert "its memory limit (256 MiB) is Docker's" in gw.out.read_text()
        r = gw.client.post("/script-api/boxed/hog")
        assert r.status_code >= 500, r.text

        def restarted_twice() -> bool:
            script = gw.running().get("boxed.py")
            return bool(script and script["restarts"] >= 2 and script["status"] == "running")

        wait_until(restarted_twice, 90, "boxed.py restarted after its container's OOM kill")
        third = _where(gw, "boxed")
        assert third["host"] != again["host"] and _memory_limit(third["host"]) == 256 * 2**20

        # a stop removes its container
        r = gw.client.post("/script-engine/stop", json={"script_path": "boxed.py"})
        assert r.status_code == 200, r.text
        wait_until(lambda: not _running(third["host"]), 30, "boxed.py's container removed")
        assert containers_of(marker) == []
    finally:
        gw.finish()


@needs_docker
@pytest.mark.timeout(360)
def test_a_gateway_killed_9_reattaches_to_its_containers(
    tmp_path: Path, image: str, marker: str
) -> None:
    """kill -9 of the gateway, a new one on the same data directory: the container that
    still runs is reattached (the same container, its globals: a counter goes on and
    the token drawn at its boot is the same; the same script id and run; no second
    container); the one killed meanwhile is started again in a new container. A
    clean stop of the second gateway removes its containers."""
    root, data = _scripts(tmp_path, image, marker, ("keep", "lost"))
    first = GatewayProcess(root, data, "--pool-size", "0")
    try:
        for path in ("keep.py", "lost.py"):
            _start_in_docker(first, path)
        for _ in range(3):
            _bump(first, "keep")
        keep, lost = _where(first, "keep"), _where(first, "lost")
        before = first.running()
    finally:
        first.proc.kill()  # kill -9: no shutdown, its containers run on
        first.proc.wait(30)
        first.finish()
    assert _running(keep["host"]) and _running(lost["host"])
    subprocess.run(["docker", "kill", lost["host"]], check=True, timeout=30)  # dies meanwhile
    wait_until(lambda: not _running(lost["host"]), 30, "lost.py's container gone")

    second = GatewayProcess(root, data, "--pool-size", "0")
    try:

        def restored() -> bool:
            running = second.running()
            return all(
                running.get(p, {}).get("status") == "running" for p in ("keep.py", "lost.py")
            )

        wait_until(restored, 120, "both scripts restored")
        after = second.running()
        again = _where(second, "keep")
        assert again["host"] == keep["host"] and again["token"] == keep["token"]
        assert again["pid"] == keep["pid"]
        assert _bump(second, "keep") == 4
        assert after["keep.py"]["script_id"] == before["keep.py"]["script_id"]
        assert after["keep.py"]["run_id"] == before["keep.py"]["run_id"]
        assert after["keep.py"]["kernels"][0]["rss_mib"] is not None  # measured again
        log = second.out.read_text()
        assert "reattached keep.py to 1 running kernel(s)" in log, log[-3000:]
        new = _where(second, "lost")
        assert new["host"] != lost["host"] and new["token"] != lost["token"]
        assert _bump(second, "lost") == 1
        assert sorted(containers_of(marker)) == sorted([keep["host"], new["host"]])
    finally:
        second.proc.terminate()  # a clean stop: its containers are removed
        second.proc.wait(60)
        second.finish()
    wait_until(lambda: containers_of(marker) == [], 30, "the containers removed by the stop")


@needs_docker
@pytest.mark.timeout(360)
def test_a_docker_daemon_away_at_restore_leaves_the_container_alone(
    tmp_path: Path, image: str, marker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gateway restarted while it cannot reach the Docker daemon (here: its
    DOCKER_HOST names no socket) cannot know whether the old container runs: it says
    so (an ERROR naming the container) and neither starts a second one nor forgets
    the first; the next gateway that reaches the daemon reattaches to it."""
    root, data = _scripts(tmp_path, image, marker, ("keep",))
    first = GatewayProcess(root, data, "--pool-size", "0")
    try:
        _start_in_docker(first, "keep.py")
        assert _bump(first, "keep") == 1
        keep = _where(first, "keep")
    finally:
        first.proc.kill()
        first.proc.wait(30)
        first.finish()

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    second = GatewayProcess(root, data, "--pool-size", "0")
    try:
        error = f"an old kernel of keep.py (pid 0 on {keep['host']}) may still run"
        wait_until(lambda: error in second.out.read_text(), 60, "the ERROR on the old container")
        assert second.running().get("keep.py", {}).get("status") != "running"
        assert "the remote kernels of keep.py are gone" not in second.out.read_text()
        assert containers_of(marker) == [keep["host"]]  # the old one, alone
    finally:
        second.proc.kill()
        second.proc.wait(30)
        second.finish()

    monkeypatch.delenv("DOCKER_HOST")
    third = GatewayProcess(root, data, "--pool-size", "0")
    try:
        wait_until(
            lambda: third.running().get("keep.py", {}).get("status") == "running",
            120,
            "keep.py reattached",
        )
        again = _where(third, "keep")
        assert again["host"] == keep["host"] and again["token"] == keep["token"]
        assert _bump(third, "keep") == 2
        assert containers_of(marker) == [keep["host"]]
    finally:
        third.proc.terminate()
        third.proc.wait(60)
        third.finish()


def _tamper_daemon(data: Path, path: str, daemon: str) -> str:
    """Change the Docker daemon ID kept in ``path``'s sealed attach state (as if its
    container had been started by another daemon); returns the ID it had."""
    import sqlite3

    from kernel_gateway.secrets.crypto import SecretsKey

    key = SecretsKey.load(data / "secrets.key")
    with sqlite3.connect(data / "vwed.sqlite3") as db:
        (raw,) = db.execute(
            "SELECT options FROM vwed_desired_scripts WHERE script_path = ?", (path,)
        ).fetchone()
        options = json.loads(raw)
        state = json.loads(key.open(f"kernel-state:{path}", options["attach"]))
        old = state["kernels"][0]["docker_daemon"]
        state["kernels"][0]["docker_daemon"] = daemon
        options["attach"] = key.seal(f"kernel-state:{path}", json.dumps(state))
        db.execute(
            "UPDATE vwed_desired_scripts SET options = ? WHERE script_path = ?",
            (json.dumps(options), path),
        )
    return str(old)


@needs_docker
@pytest.mark.timeout(300)
def test_a_container_of_another_daemon_is_not_taken_as_gone(
    tmp_path: Path, image: str, marker: str
) -> None:
    """The state kept for a reattach names the Docker daemon that started the
    container: a gateway that talks to another daemon (a standby on another machine)
    does not find the container there, and must not take that as "gone": an ERROR
    names it as an old kernel that may still run (kept to be ended at a later
    restore), and the script starts again beside it."""
    root, data = _scripts(tmp_path, image, marker, ("keep",))
    first = GatewayProcess(root, data, "--pool-size", "0")
    try:
        _start_in_docker(first, "keep.py")
        keep = _where(first, "keep")
    finally:
        first.proc.kill()
        first.proc.wait(30)
        first.finish()
    daemon = _tamper_daemon(data, "keep.py", "ANOTHER:DAEMON")
    info = subprocess.run(
        ["docker", "info", "--format", "{{.ID}}"], capture_output=True, text=True, timeout=30
    )
    assert daemon == info.stdout.strip()  # what was kept: this daemon's ID

    second = GatewayProcess(root, data, "--pool-size", "0")
    try:
        wait_until(
            lambda: second.running().get("keep.py", {}).get("status") == "running",
            120,
            "keep.py started again",
        )
        log = second.out.read_text()
        assert f"an old kernel of keep.py (pid 0 on {keep['host']}) may still run" in log, log
        assert "ran on Docker daemon ANOTHER:DAEMON" in log
        assert _where(second, "keep")["host"] != keep["host"]
        assert _running(keep["host"])  # not ended: this daemon cannot be trusted with it
    finally:
        second.proc.terminate()
        second.proc.wait(60)
        second.finish()
