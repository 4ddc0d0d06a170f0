"""What a kernel can reach of the gateway: no secret in its environment, a data
directory closed to other users (0700, files 0600), and with ``--kernel-user``
a kernel that cannot read the gateway's token at all."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
from test_jupyter_api import _execute

from conftest import GatewayThread, system_user
from kernel_gateway.app import Gateway
from kernel_gateway.config import ConfigError, Settings

SECRETS = {
    "VWED_TOKEN": "admin-secret-1",
    "VWED_CALLER_TOKEN": "caller-secret-2",
    "VWED_SMTP_PASSWORD": "smtp-secret-3",
    "VWED_PLATFORM_TOKEN": "platform-secret-4",
    "SOME_CLOUD_KEY": "cloud-secret-5",  # not the gateway's, but not meant for kernels either
    "JUPYTER_TOKEN": "jupyter-secret-6",  # an allowed prefix, but a secret's name
}

SCRIPT = """
import os

def boot():
    VWED.function.register("env", lambda: dict(os.environ))
    VWED.function.register("read", read)
    VWED.function.register("whoami", lambda: os.getuid())

def read(path):
    try:
        with open(path, "rb") as fh:
            return "read %d bytes" % len(fh.read())
    except OSError as exc:
        return "refused: %s" % type(exc).__name__
"""

STRICTEST = {"network": [], "subprocess": False, "write": []}


def _settings(tmp_path: Path, **kw) -> Settings:
    return Settings(
        scripts_dir=str(tmp_path / "scripts"),
        port=0,
        data_dir=str(tmp_path / "data"),
        pool_size=0,
        workers=1,
        call_timeout=10.0,
        auth=True,
        token="admin-secret-1",
        caller_token="caller-secret-2",
        **kw,
    ).validated()


def _call(c: httpx.Client, name: str, *args):
    r = c.post(f"/script-engine/functions/{name}/call", json={"args": list(args)})
    assert r.status_code == 200, r.text
    return r.json()["result"]


def test_kernel_sees_no_secret_and_data_dir_is_closed(tmp_path, monkeypatch):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "nosy.py").write_text(SCRIPT)
    (tmp_path / "data").mkdir(mode=0o755)  # an old, too open data directory is closed at start
    (tmp_path / "data" / "token").write_text("admin-secret-1\n")
    os.chmod(tmp_path / "data" / "token", 0o644)
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TZ", "UTC")
    gw = GatewayThread(_settings(tmp_path, kernel_env="TZ")).start()
    try:
        headers = {"Authorization": "token admin-secret-1"}
        with httpx.Client(base_url=gw.url, timeout=30, headers=headers) as c:
            r = c.post("/script-engine/start", json={"script_path": "nosy.py", "policy": STRICTEST})
            assert r.status_code == 200, r.text
            env = _call(c, "env")
            assert "PATH" in env and env.get("TZ") == "UTC"
            leaked = [k for k in env if k.startswith("VWED_") or k in SECRETS]
            assert leaked == [], leaked
            assert not any(v in SECRETS.values() for v in env.values())
            data = tmp_path / "data"
            assert stat.S_IMODE(data.stat().st_mode) == 0o700
            for name in ("token", "caller_token", "vwed.sqlite3"):
                if (data / name).exists():
                    assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
            assert (data / "vwed.sqlite3").exists()
            # the same user can still read them (only --kernel-user stops that)
            assert _call(c, "read", str(data / "token")).startswith("read")
            # a scratch kernel (Jupyter kernels API) starts the same way
            r = c.post("/api/kernels", json={"name": "vwed"})
            assert r.status_code == 201, r.text
            url = (
                f"ws://127.0.0.1:{gw.gateway.port}/api/kernels/{r.json()['id']}/channels"
                "?token=admin-secret-1"
            )
            code = "import os; print(sorted(k for k in os.environ if k in %r or 'VWED' in k))"
            out, reply = asyncio.run(_execute(url, code % sorted(SECRETS)))
            assert reply["content"]["status"] == "ok" and out.strip() == "[]", out
    finally:
        gw.stop()


def test_kernel_env_refuses_gateway_settings(tmp_path):
    (tmp_path / "scripts").mkdir()
    with pytest.raises(ConfigError, match="VWED_TOKEN"):
        _settings(tmp_path, kernel_env="PATH,VWED_TOKEN")


KERNEL_USER = "vwed-kernel-test"


def _kernel_user() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.skip("--kernel-user needs the gateway (the test) to run as root")
    return system_user(KERNEL_USER)


def _reachable_python(user: pwd.struct_passwd) -> tuple[list[str], dict[str, str]]:
    """An interpreter the kernel user can run with this checkout's packages: the
    venv's own when its base interpreter is open to that user, else the system
    Python of the same version with the venv's site-packages on its path."""
    probe = [sys.executable, "-c", "import vwed_kernel, ipykernel"]
    as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [], "cwd": "/"}
    try:
        if subprocess.run(probe, capture_output=True, **as_user).returncode == 0:
            return [sys.executable], {}
    except PermissionError:
        pass  # the venv's interpreter is closed to the kernel user
    system = f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"
    if not os.path.exists(system):
        pytest.skip(f"no interpreter the kernel user can run ({sys.executable} is closed to it)")
    site = next(p for p in sys.path if p.endswith("site-packages"))
    repo = str(Path(__file__).resolve().parents[1])
    env = {"PYTHONPATH": f"{repo}:{site}", "PATH": "/usr/bin:/bin"}
    if subprocess.run([system, *probe[1:]], env=env, capture_output=True, **as_user).returncode:
        pytest.skip("the system Python cannot load this checkout's packages as the kernel user")
    return [system, "-s"], env


@pytest.fixture
def open_root():
    """A folder other users may enter (pytest's tmp_path sits under a 0700 folder)."""
    root = Path(tempfile.mkdtemp(prefix="vwed-open-"))
    os.chmod(root, 0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_kernel_user_cannot_read_the_data_dir(open_root):
    user = _kernel_user()
    argv, spec_env = _reachable_python(user)
    root = open_root
    (root / "scripts").mkdir()
    os.chmod(root / "scripts", 0o755)
    (root / "scripts" / "nosy.py").write_text(SCRIPT)
    os.chmod(root / "scripts" / "nosy.py", 0o644)
    data = root / "data"
    spec_dir = data / "kernels" / "vwed-user"
    spec_dir.mkdir(parents=True)
    import json

    spec_env = {**spec_env, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    spec = {
        "argv": [*argv, "-m", "vwed_kernel", "-f", "{connection_file}"],
        "display_name": "VWED as the kernel user",
        "language": "python",
        "env": spec_env,
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    assert os.stat("/tmp").st_mode & 0o001  # the connection files' folder is made there
    settings = Settings(
        scripts_dir=str(root / "scripts"),
        port=0,
        data_dir=str(data),
        pool_size=0,
        workers=1,
        call_timeout=20.0,
        auth=True,
        token="admin-secret-1",
        kernel_user=KERNEL_USER,
        kernel_name="vwed-user",
    ).validated()
    gw = GatewayThread(settings).start()
    try:
        headers = {"Authorization": "token admin-secret-1"}
        with httpx.Client(base_url=gw.url, timeout=60, headers=headers) as c:
            r = c.post("/script-engine/start", json={"script_path": "nosy.py"})
            assert r.status_code == 200, r.text
            assert _call(c, "whoami") == user.pw_uid
            # the data directory is 0711 with --kernel-user (the kernel user reaches the
            # scripts' environments inside it), its files stay 0600
            assert _call(c, "read", str(data / "caller_token")) == "refused: PermissionError"
            assert _call(c, "read", str(data / "vwed.sqlite3")) == "refused: PermissionError"
            assert _call(c, "read", str(data / "environments")) == "refused: IsADirectoryError"
            assert _call(c, "read", str(root / "scripts" / "nosy.py")).startswith("read")
    finally:
        gw.stop()


def test_kernel_user_refused_when_unusable(tmp_path):
    (tmp_path / "scripts").mkdir()
    with pytest.raises(ConfigError, match="does not exist" if os.geteuid() == 0 else "as root"):
        _settings(tmp_path, kernel_user="no-such-user-vwed")
    if os.geteuid() == 0:
        user = _kernel_user()
        # the scripts root under a folder closed to that user: said clearly at start
        closed = tmp_path / "closed"
        (closed / "scripts").mkdir(parents=True)
        os.chmod(closed, 0o700)
        settings = Settings(
            scripts_dir=str(closed / "scripts"),
            data_dir=str(tmp_path / "data"),
            port=0,
            kernel_user=user.pw_name,
        ).validated()
        with pytest.raises(ConfigError, match="cannot read the scripts root"):
            Gateway(settings)
