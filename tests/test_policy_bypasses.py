"""The red team's bypass list, run for real in a script kernel under each layer:
the audit hook alone, with the seccomp filter, with Landlock, and with
``--kernel-user``. Each row asserts what the layer closes and what remains;
docs/security.md carries the same table.

A bypass "happened" when its effect is seen (a file written or created outside
the writable paths; a program run, seen by the file it writes in the writable
folder; a connection made; a name looked up; the token read), not merely when
no exception was raised.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from conftest import GatewayThread, system_user
from kernel_gateway.config import Settings
from vwed_kernel.landlock import abi_version
from vwed_kernel.sandbox import seccomp_binding

SCRIPT = r"""
import ctypes, multiprocessing, multiprocessing.util, os, socket, subprocess

HERE = os.path.dirname(__file__)
DATA = os.path.join(HERE, "data")
libc = ctypes.CDLL(None, use_errno=True)

def boot():
    for name, f in list(globals().items()):
        if name.startswith("b_"):
            VWED.function.register(name, guarded(f))

def guarded(f):
    def call(*args):
        try:
            return {"happened": bool(f(*args)), "error": None}
        except Exception as exc:
            return {"happened": False, "error": "%s: %s" % (type(exc).__name__, exc)}
    return call

def b_fork_exec(out):
    import _posixsubprocess
    marker = os.path.join(DATA, "fork_exec")
    r, w = os.pipe()
    try:
        pid = _posixsubprocess.fork_exec(
            [b"/bin/sh", b"-c", b"echo x > " + marker.encode()], [b"/bin/sh"], True, (), None,
            None, -1, -1, -1, -1, -1, -1, r, w, False, False, -1, None, None, None, -1, None,
            False)
    finally:
        os.close(r); os.close(w)
    os.waitpid(pid, 0)
    return os.path.exists(marker)

def b_spawnv_passfds(out):
    marker = os.path.join(DATA, "spawnv")
    pid = multiprocessing.util.spawnv_passfds(
        b"/bin/sh", [b"/bin/sh", b"-c", b"echo x > " + marker.encode()], [])
    os.waitpid(pid, 0)
    return os.path.exists(marker)

def b_mp_spawn(out):
    marker = os.path.join(DATA, "mp_spawn")
    p = multiprocessing.get_context("spawn").Process(target=os.mkdir, args=(marker,))
    p.start()
    p.join(30)
    return os.path.exists(marker)

def b_link_alias(out):
    alias = os.path.join(DATA, "alias")
    os.link(os.path.join(out, "victim.txt"), alias)
    with open(alias, "w") as fh:
        fh.write("overwritten")
    return open(os.path.join(out, "victim.txt")).read() == "overwritten"

def b_fchmod_readonly(out):
    fd = os.open(os.path.join(out, "victim.txt"), os.O_RDONLY)
    try:
        os.chmod(fd, 0o666)
    finally:
        os.close(fd)
    return os.stat(os.path.join(out, "victim.txt")).st_mode & 0o777 == 0o666

def b_link_dir_fd(out):
    with open(os.path.join(DATA, "mine.txt"), "w") as fh:
        fh.write("x")
    src, dst = os.open(DATA, os.O_RDONLY), os.open(out, os.O_RDONLY)
    try:
        os.link("mine.txt", "planted", src_dir_fd=src, dst_dir_fd=dst)
    finally:
        os.close(src); os.close(dst)
    return os.path.exists(os.path.join(out, "planted"))

def b_gethostbyname(out):
    return socket.gethostbyname("localhost")

def b_gethostbyaddr(out):
    return socket.gethostbyaddr("127.0.0.1")

def b_ctypes_system(out):
    marker = os.path.join(DATA, "system")
    libc.system(("echo x > " + marker).encode())
    return os.path.exists(marker)

def b_ctypes_open(out):
    path = os.path.join(out, "ctypes_open.txt")
    fd = libc.open(path.encode(), os.O_WRONLY | os.O_CREAT, 0o644)
    if fd >= 0:
        libc.close(fd)
    return os.path.exists(path)

def b_ctypes_connect(out, port):
    s = socket.socket()
    try:
        addr = bytes([2, 0]) + port.to_bytes(2, "big") + bytes([127, 0, 0, 1]) + bytes(8)
        return libc.connect(s.fileno(), addr, 16) == 0
    finally:
        s.close()

def b_read_token(out, token_path):
    with open(token_path) as fh:
        return bool(fh.read())
"""

BYPASSES = [
    "fork_exec",
    "spawnv_passfds",
    "mp_spawn",
    "link_alias",
    "fchmod_readonly",
    "link_dir_fd",
    "gethostbyname",
    "gethostbyaddr",
    "ctypes_system",
    "ctypes_open",
    "ctypes_connect",
    "read_token",
]
HOOK = set(BYPASSES[:8])  # closed by the audit hook
# what each layer closes (cumulative)
CLOSED = {
    "hook": HOOK,
    "hook+seccomp": HOOK | {"ctypes_system"},
    "hook+landlock": HOOK | {"ctypes_open"},
    "hook+seccomp+kernel_user": HOOK | {"ctypes_system", "ctypes_open", "read_token"},
    "hook+seccomp+landlock+kernel_user": HOOK | {"ctypes_system", "ctypes_open", "read_token"},
}
KERNEL_USER = "vwed-kernel-test"


@pytest.fixture
def root():
    """A folder other users may enter (pytest's tmp_path sits under a 0700 folder)."""
    path = Path(tempfile.mkdtemp(prefix="vwed-bypass-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def other_port():
    """A loopback listener the policy does not list."""
    server = socket.create_server(("127.0.0.1", 0))
    yield server.getsockname()[1]
    server.close()


def _python_for(user: pwd.struct_passwd | None) -> tuple[list[str], dict[str, str]]:
    if user is None:
        return [sys.executable], {}
    as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [], "cwd": "/"}
    probe = ["-c", "import vwed_kernel, ipykernel"]
    try:
        if subprocess.run([sys.executable, *probe], capture_output=True, **as_user).returncode == 0:
            return [sys.executable], {}
    except PermissionError:
        pass
    system = f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"
    site = next(p for p in sys.path if p.endswith("site-packages"))
    env = {"PYTHONPATH": f"{Path(__file__).resolve().parents[1]}:{site}"}
    if (
        not os.path.exists(system)
        or subprocess.run([system, *probe], env=env, capture_output=True, **as_user).returncode
    ):
        pytest.skip("no interpreter with this checkout's packages that the kernel user can run")
    return [system, "-s"], env


def _measure(root: Path, layer: str, other_port: int) -> dict[str, dict]:
    user = None
    if layer.endswith("kernel_user"):
        if os.geteuid() != 0:
            pytest.skip("--kernel-user needs the gateway (the test) to run as root")
        user = system_user(KERNEL_USER)
    if "landlock" in layer and abi_version() < 1:
        pytest.skip("this Linux kernel has no Landlock")
    if "seccomp" in layer and seccomp_binding() is None:
        pytest.skip("no libseccomp binding (pip install '.[sandbox]' or apt python3-seccomp)")
    scripts, out, data = root / "scripts", root / "outside", root / "data"
    (scripts / "data").mkdir(parents=True)
    out.mkdir()
    for folder in (scripts, out):
        os.chmod(folder, 0o755)
    (scripts / "bypass.py").write_text(SCRIPT)
    (out / "victim.txt").write_text("original")
    os.chmod(out / "victim.txt", 0o644)
    os.chmod(scripts / "bypass.py", 0o644)
    if user is not None:  # its own writable folder, as an operator would give it
        os.chown(scripts / "data", user.pw_uid, user.pw_gid)
    else:
        os.chmod(out, 0o777)  # without a user switch, only the policy keeps it out
    argv, env = _python_for(user)
    spec = data / "kernels" / "vwed-measure"
    spec.mkdir(parents=True)
    env = {**env, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    if "seccomp" not in layer:
        env["VWED_KERNEL_SECCOMP"] = "0"
    if "landlock" not in layer:
        env["VWED_KERNEL_LANDLOCK"] = "0"
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [*argv, "-m", "vwed_kernel", "-f", "{connection_file}"],
                "display_name": "measure",
                "language": "python",
                "env": env,
            }
        )
    )
    settings = Settings(
        scripts_dir=str(scripts),
        port=0,
        data_dir=str(data),
        pool_size=0,
        workers=1,
        call_timeout=60.0,
        auth=True,  # the admin token is made in <data>/token: the file a script must not read
        kernel_name="vwed-measure",
        kernel_user=user.pw_name if user else "",
    ).validated()
    # only a name is listed: lookups of localhost / 127.0.0.1 (answered from /etc/hosts,
    # nothing leaves the machine) and connects to loopback are all outside the list
    policy = {"network": ["plc.invalid:502"], "subprocess": False, "write": ["data"]}
    gw = GatewayThread(settings).start()
    results: dict[str, dict] = {}
    try:
        headers = {"Authorization": "token " + (data / "token").read_text().strip()}
        with httpx.Client(base_url=gw.url, timeout=90, headers=headers) as c:
            r = c.post("/script-engine/start", json={"script_path": "bypass.py", "policy": policy})
            assert r.status_code == 200, r.text
            for name in BYPASSES:
                args: list = [str(out)]
                if name == "ctypes_connect":
                    args.append(other_port)
                if name == "read_token":
                    args.append(str(data / "token"))
                r = c.post(f"/script-engine/functions/b_{name}/call", json={"args": args})
                assert r.status_code == 200, (name, r.text)
                results[name] = r.json()["result"]
    finally:
        gw.stop()
    return results


@pytest.mark.parametrize("layer", list(CLOSED))
def test_bypass_matrix(root, other_port, layer):
    results = _measure(root, layer, other_port)
    table = "\n".join(
        f"{name:16} {'happened' if r['happened'] else 'closed':9} {r['error'] or ''}"
        for name, r in results.items()
    )
    print(f"\n[{layer}]\n{table}")
    wrong = [name for name, r in results.items() if r["happened"] == (name in CLOSED[layer])]
    assert wrong == [], f"{layer}: not as documented: {wrong}\n{table}"
