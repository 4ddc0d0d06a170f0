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
    "Docker",
    "kernel_json",
    "remote_kernel_json",
    "docker_kernel_json",
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


@dataclass(frozen=True)
class Docker:
    """A kernelspec whose kernels run in Docker containers, started by
    ``gateway_provisioners``' ``DockerProvisioner`` (docs/scaling.md, "Docker").

    ``image``: an image with the VWED kernel and gateway_provisioners' Python kernel
    launcher, which starts it from the container's environment
    (deploy/docker/build-kernel-image.sh builds one); ``python``: the interpreter, on
    the gateway's machine, that runs the package's ``launch_docker.py`` (it needs the
    ``docker`` package; default: this one)."""

    image: str
    python: str | None = None


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


def _launcher_sources(docker: bool = False) -> list[Path]:
    """gateway_provisioners' Python kernel launcher and the listener it imports (found
    without importing the package). The package ships the listener as a placeholder
    beside the launcher; its ``jupyter-ssh-spec`` "assembles" the real one from
    ``shared/``, and so does this. With ``docker``: its Docker launcher (which starts
    a container; the kernel's launcher is in the image)."""
    spec = find_spec("gateway_provisioners")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "gateway_provisioners is not installed here: pip install gateway_provisioners"
            + ("[docker]" if docker else ", or give --launcher (its assembled ")
            + ("" if docker else "launch_ipykernel.py on the remote hosts)")
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "kernel-launchers"
    if docker:
        return [root / "docker" / "scripts" / "launch_docker.py"]
    return [
        root / "python" / "scripts" / "launch_ipykernel.py",
        root / "shared" / "scripts" / "server_listener.py",
    ]


def _copy_launcher(dest: Path, docker: bool = False) -> None:
    scripts = dest / "scripts"
    scripts.mkdir(exist_ok=True)
    for src in _launcher_sources(docker):
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


def docker_kernel_json(docker: Docker, display_name: str | None = None) -> dict[str, object]:
    """The kernel.json of VWED kernels started in Docker containers of ``docker.image``.

    The package's ``launch_docker.py`` runs here and starts the container (labelled
    with the kernel id, removed when it ends) with the kernel's environment and the
    launch arguments in it; the image's command starts the kernel launcher, which
    opens the kernel's ports in the container and sends the connection info back,
    encrypted, to the gateway's response address. The provisioner finds the
    container (and its address on gateway_provisioners' ``GP_DOCKER_NETWORK``, default
    ``bridge``) through the Docker daemon, and removes it at a stop."""
    if not docker.image:
        raise ValueError("a Docker kernelspec needs an image")
    spec = kernel_json(docker.python)
    metadata = dict(spec["metadata"])  # type: ignore[call-overload]
    metadata["kernel_provisioner"] = {
        "provisioner_name": "docker-provisioner",
        "config": {"image_name": docker.image},
    }
    metadata["vwed"] = {"protocol": 1, "remote": True}
    argv = [
        docker.python or sys.executable,
        f"{LAUNCHER_HERE}/scripts/launch_docker.py",
        "--kernel-id",
        "{kernel_id}",
        "--port-range",
        "{port_range}",
        "--response-address",
        "{response_address}",
        "--public-key",
        "{public_key}",
        "--kernel-class-name",
        KERNEL_CLASS,
    ]
    # the kernel's user in the image (uid 1000 there, gateway_provisioners' KERNEL_UID);
    # it names the container too: vwed-<kernel id>. Not the gateway's user (root is
    # refused as a kernel user by default: GP_UNAUTHORIZED_USERS)
    env = {**spec["env"], "KERNEL_USERNAME": "vwed"}  # type: ignore[dict-item]
    return {
        **spec,
        "argv": argv,
        "env": env,
        "display_name": display_name or f"{DISPLAY_NAME} in Docker ({docker.image})",
        "metadata": metadata,
    }


def write_kernelspec(
    folder: str | os.PathLike[str],
    python: str | None = None,
    remote: Remote | Docker | None = None,
    display_name: str | None = None,
) -> Path:
    """Write ``kernel.json`` (and logos, if ipykernel ships them) into ``folder``;
    with ``remote``, one whose kernels start on other hosts (``Remote``) or in
    Docker containers (``Docker``)."""
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
    if isinstance(remote, Docker):
        spec = docker_kernel_json(remote, display_name)
        _copy_launcher(dest, docker=True)
    elif remote is not None:
        spec = remote_kernel_json(remote, display_name)
        if remote.launcher is None:
            _copy_launcher(dest)
    else:
        spec = kernel_json(python)
        if display_name:
            spec["display_name"] = display_name
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
    remote: Remote | Docker | None = None,
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
