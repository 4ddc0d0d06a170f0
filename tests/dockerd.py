"""Docker for the Docker-kernel tests (tests/test_docker_kernels.py) and bench/remote.py:
whether a Docker daemon answers here, and the VWED kernel image built from this checkout
by deploy/docker/build-kernel-image.sh (no registry: a root file system made from this
machine's Python and ``docker import``), tagged with a digest of what goes into it so
that an image of older code is never used. ``python tests/dockerd.py`` builds it (.ci/run).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["why_not", "image_tag", "ensure_image", "containers_of"]

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "deploy" / "docker" / "build-kernel-image.sh"
REPOSITORY = "vwed-kernel"


# the daemon this process was started with: a test may point its gateways elsewhere
# (DOCKER_HOST in its environment) and still look at the containers here
_HOST = os.environ.get("DOCKER_HOST")


def _docker(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    if _HOST is not None:
        env["DOCKER_HOST"] = _HOST
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def why_not() -> str | None:
    """Why Docker kernels cannot run here (None: they can)."""
    if shutil.which("docker") is None:
        return "needs Docker (apt-get install -y docker.io, then dockerd running: see .ci/run)"
    for module, package in (("gateway_provisioners", "gateway_provisioners"), ("docker", "docker")):
        if importlib.util.find_spec(module) is None:
            return f"needs {package} (pip install 'gateway_provisioners[docker]')"
    try:
        done = _docker("version", "--format", "{{.Server.Version}}", timeout=15)
    except subprocess.TimeoutExpired:
        return "the Docker daemon does not answer (15 s)"
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no answer"])[-1]
        user = "" if os.geteuid() == 0 else " (not root: is this user allowed on its socket?)"
        return f"no Docker daemon answers{user}: {why}"
    return None


def image_tag() -> str:
    """The image's name: a digest of the files that go into it."""
    digest = hashlib.sha256()
    files = sorted(
        [*REPO.glob("vwed_kernel/**/*.py"), *(REPO / "deploy" / "docker").iterdir()]
        + [REPO / "pyproject.toml"]
    )
    for path in files:
        if path.is_file():
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return f"{REPOSITORY}:test-{digest.hexdigest()[:12]}"


def _image_python() -> str:
    """Debian's Python when it is this one's version (a lean standard library), else
    the interpreter this venv was made from."""
    debian = "/usr/bin/python3"
    if os.path.exists(debian):
        version = subprocess.run(
            [debian, "-c", "import sys; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
        if version == str(sys.version_info[:2]):
            return debian
    return getattr(sys, "_base_executable", sys.executable)


def ensure_image(timeout: float = 900) -> str:
    """The image of this checkout, built if it is not there yet (about 25 s here);
    older test images are removed (those no container uses)."""
    tag = image_tag()
    if _docker("image", "inspect", tag).returncode == 0:
        return tag
    from importlib.metadata import version

    env = {
        **os.environ,
        "VWED_IMAGE_PYTHON": _image_python(),
        "VWED_IMAGE_PIP": f"{sys.executable} -m pip",
        "VWED_IMAGE_GP_VERSION": version("gateway_provisioners"),
    }
    done = subprocess.run(
        [str(BUILD), tag], capture_output=True, text=True, timeout=timeout, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"{BUILD.name} failed: {(done.stderr or done.stdout)[-3000:]}")
    old = _docker("images", REPOSITORY, "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    for name in old:
        if name != tag and name.startswith(f"{REPOSITORY}:test-"):
            _docker("image", "rm", name)  # fails (kept) while a container uses it
    return tag


def containers_of(marker: str) -> list[str]:
    """The names of the running kernel containers whose environment holds ``marker``
    (a test's kernelspecs put it there: it finds that test's containers only)."""
    ids = _docker(
        "ps", "-q", "--filter", "label=app=gateway-provisioners", "--no-trunc"
    ).stdout.split()
    if not ids:
        return []
    found = json.loads(_docker("inspect", *ids).stdout or "[]")
    return [
        c["Name"].lstrip("/")
        for c in found
        if f"VWED_TEST_MARKER={marker}" in (c.get("Config", {}).get("Env") or [])
    ]


if __name__ == "__main__":
    problem = why_not()
    if problem is not None:
        print(f"no Docker kernel image: {problem}", file=sys.stderr)
        raise SystemExit(1)
    print(ensure_image())
