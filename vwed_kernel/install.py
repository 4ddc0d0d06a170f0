"""The ``vwed`` kernelspec: write it to a folder, or install it for Jupyter."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

__all__ = [
    "KERNEL_NAME",
    "DISPLAY_NAME",
    "KERNEL_CLASS",
    "Remote",
    "kernel_json",
    "remote_kernel_json",
    "write_kernelspec",
    "install",
]

KERNEL_NAME = "vwed"
DISPLAY_NAME = "Python 3 (VWED)"
KERNEL_CLASS = "vwed_kernel.kernel.VWEDKernel"


@dataclass(frozen=True)
class Remote:
    """A kernelspec whose kernels run on other hosts, started over SSH by
    ``gateway_provisioners``' ``DistributedProvisioner`` (docs/scaling.md).

    ``hosts``: where kernels may start (in turn); ``python``: the interpreter on those
    hosts that has ``vwed_kernel`` (and pycryptodomex, jupyter_client: what the
    launcher imports); ``launcher``: the path, on those hosts, of an assembled
    ``launch_ipykernel.py`` (default: the copy written into the kernelspec's folder,
    which must then be at the same path on every host)."""

    hosts: tuple[str, ...]
    python: str | None = None
    launcher: str | None = None
    port_range: bool = True  # pass gateway_provisioners' port range (GP_PORT_RANGE)


def kernel_json(python: str | None = None) -> dict[str, object]:
    """The kernel.json of the VWED kernel, running with ``python`` (default: this one)."""
    return {
        "argv": [python or sys.executable, "-m", "vwed_kernel", "-f", "{connection_file}"],
        "display_name": DISPLAY_NAME,
        "language": "python",
        # SIGINT raises KeyboardInterrupt in the code being run; a provisioner
        # that cannot send signals can still use the control channel.
        "interrupt_mode": "signal",
        "env": {"PYDEVD_DISABLE_FILE_VALIDATION": "1"},
        "metadata": {"debugger": True, "vwed": {"protocol": 1}},
    }


LAUNCHER_HERE = "{vwed_spec_dir}"  # replaced by the kernelspec's folder once it is there


def _launcher_sources() -> list[Path]:
    """gateway_provisioners' Python kernel launcher and the listener it imports (found
    without importing the package). The package ships the listener as a placeholder
    beside the launcher; its ``jupyter-ssh-spec`` "assembles" the real one from
    ``shared/``, and so does this."""
    spec = find_spec("gateway_provisioners")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "gateway_provisioners is not installed here: pip install gateway_provisioners, "
            "or give --launcher (its assembled launch_ipykernel.py on the remote hosts)"
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "kernel-launchers"
    return [
        root / "python" / "scripts" / "launch_ipykernel.py",
        root / "shared" / "scripts" / "server_listener.py",
    ]


def _copy_launcher(dest: Path) -> None:
    scripts = dest / "scripts"
    scripts.mkdir(exist_ok=True)
    for src in _launcher_sources():
        (scripts / src.name).write_bytes(src.read_bytes())


def remote_kernel_json(remote: Remote, display_name: str | None = None) -> dict[str, object]:
    """The kernel.json of VWED kernels started on ``remote.hosts`` over SSH.

    The launcher runs on the remote host, opens the kernel's ports there (on every
    address: the gateway connects to the host's address), sends the connection info
    back, encrypted, to the gateway's response address, and runs the VWED kernel
    class; the provisioner then talks to the launcher's listener for signals and
    liveness (the gateway never sees a local PID)."""
    if not remote.hosts:
        raise ValueError("a remote kernelspec needs at least one host")
    argv = [
        remote.python or sys.executable,
        remote.launcher or f"{LAUNCHER_HERE}/scripts/launch_ipykernel.py",
        "--kernel-id",
        "{kernel_id}",
        "--response-address",
        "{response_address}",
        "--public-key",
        "{public_key}",
        "--kernel-class-name",
        KERNEL_CLASS,
    ]
    if remote.port_range:
        argv[4:4] = ["--port-range", "{port_range}"]
    spec = kernel_json(remote.python)
    metadata = dict(spec["metadata"])  # type: ignore[call-overload]
    metadata["kernel_provisioner"] = {
        "provisioner_name": "distributed-provisioner",
        "config": {"remote_hosts": list(remote.hosts)},
    }
    metadata["vwed"] = {"protocol": 1, "remote": True}
    return {
        **spec,
        "argv": argv,
        "display_name": display_name or f"{DISPLAY_NAME} on {', '.join(remote.hosts)}",
        # no signal reaches a remote process from here: the launcher's listener relays
        # it, and a busy kernel is also interrupted on its control channel
        "interrupt_mode": "signal",
        "metadata": metadata,
    }


def write_kernelspec(
    folder: str | os.PathLike[str],
    python: str | None = None,
    remote: Remote | None = None,
    display_name: str | None = None,
) -> Path:
    """Write ``kernel.json`` (and logos, if ipykernel ships them) into ``folder``;
    with ``remote``, one whose kernels start on other hosts."""
    dest = Path(folder)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        from ipykernel.kernelspec import RESOURCES

        for name in ("logo-32x32.png", "logo-64x64.png", "logo-svg.svg"):
            src = Path(RESOURCES) / name
            if src.exists():
                (dest / name).write_bytes(src.read_bytes())
    except ImportError:
        pass
    spec = remote_kernel_json(remote, display_name) if remote is not None else kernel_json(python)
    if remote is None and display_name:
        spec["display_name"] = display_name
    if remote is not None and remote.launcher is None:
        _copy_launcher(dest)
    _write_json(dest, spec)
    return dest


def _write_json(dest: Path, spec: dict[str, object]) -> None:
    """``dest/kernel.json``, atomically, with the launcher's path made absolute (the
    remote provisioner substitutes no ``{resource_dir}``: the path is written out)."""
    text = json.dumps(spec, indent=2).replace(LAUNCHER_HERE, str(dest.resolve()))
    tmp = dest / "kernel.json.tmp"
    tmp.write_text(text)
    os.replace(tmp, dest / "kernel.json")


def install(
    user: bool = False,
    prefix: str | None = None,
    sys_prefix: bool = False,
    *,
    name: str = KERNEL_NAME,
    remote: Remote | None = None,
    display_name: str | None = None,
) -> str:
    """Install the kernelspec ``name`` for Jupyter (or a gateway's ``--kernel-name``);
    returns where it went."""
    from jupyter_client.kernelspec import KernelSpecManager

    if sys_prefix:
        prefix = sys.prefix
    with tempfile.TemporaryDirectory() as tmp:
        src = write_kernelspec(Path(tmp) / name, remote=remote, display_name=display_name)
        dest = KernelSpecManager().install_kernel_spec(str(src), name, user=user, prefix=prefix)
        if remote is not None:  # the launcher's path: in the installed folder, not in tmp
            text = (Path(dest) / "kernel.json").read_text()
            spec = json.loads(text.replace(str(src.resolve()), LAUNCHER_HERE))
            _write_json(Path(dest), spec)
    return dest
