"""The command of the VWED kernel image (deploy/docker/build-kernel-image.sh): start
gateway_provisioners' Python kernel launcher with the VWED kernel class from what its
Docker launcher put in the container's environment.

Why not the package's ``bootstrap-kernel.sh``: it needs bash and coreutils in the
image and prints the whole environment to the container's log. And the environment
``launch_docker.py`` gives a container is the kernel's environment on the gateway's
machine, paths included: those of the gateway's host (``PYTHONPATH``,
``VIRTUAL_ENV``, ``LD_LIBRARY_PATH``, ``HOME``, ``TMPDIR``) mean nothing here and
are replaced by the image's own before the launcher starts.
"""

import os
import sys

HOST_PATHS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "LD_LIBRARY_PATH")
IMAGE = {
    "PATH": "/opt/vwed/venv/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "VIRTUAL_ENV": "/opt/vwed/venv",
}
LAUNCHER = "/opt/vwed/launchers/launch_ipykernel.py"


def main() -> None:
    env = {k: v for k, v in os.environ.items() if k not in HOST_PATHS}
    env.update(IMAGE)
    for name in ("KERNEL_ID", "RESPONSE_ADDRESS", "PUBLIC_KEY"):
        if not env.get(name):
            sys.exit(f"{name} is not set: this image is started by gateway_provisioners")
    argv = [
        sys.executable,
        "-s",
        LAUNCHER,
        "--kernel-id",
        env["KERNEL_ID"],
        "--port-range",
        env.get("PORT_RANGE") or "0..0",
        "--response-address",
        env["RESPONSE_ADDRESS"],
        "--public-key",
        env["PUBLIC_KEY"],
        "--kernel-class-name",
        env.get("KERNEL_CLASS_NAME") or "vwed_kernel.kernel.VWEDKernel",
    ]
    if env.get("TRANSPORT_ENCRYPTION"):
        argv += ["--transport-encryption", env["TRANSPORT_ENCRYPTION"]]
    os.chdir("/tmp")
    os.execve(sys.executable, argv, env)


if __name__ == "__main__":
    main()
