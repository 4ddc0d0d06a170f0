"""Build small wheels and sdists into a folder, with zipfile and tarfile (no network, no build
tool): what the dependency tests resolve and install with ``--find-links`` and no index.

A wheel is a zip of the package's files and ``{name}-{version}.dist-info/`` with ``METADATA``,
``WHEEL`` and ``RECORD``; an sdist is a ``.tar.gz`` of ``{name}-{version}/`` with ``PKG-INFO``
and a ``pyproject.toml``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

__all__ = [
    "build_wheel",
    "build_sdist",
    "build_failing_sdist",
    "build_slow_sdist",
    "build_test_wheels",
]


def _metadata(name: str, version: str, requires: list[str]) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    return "\n".join(lines) + "\n"


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def build_wheel(
    folder: Path,
    name: str,
    version: str,
    requires: list[str] | None = None,
    module: str | None = None,
) -> Path:
    """A pure-Python wheel of ``name`` whose module (``name`` by default) has ``VERSION``."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = name.replace("-", "_")
    module = module or dist
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{info}/METADATA": _metadata(name, version, requires or []).encode(),
        f"{info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: vwed-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = [_record_line(p, d) for p, d in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for p, d in files.items():
            zf.writestr(p, d)
    return path


def build_sdist(folder: Path, name: str, version: str, files: dict[str, str]) -> Path:
    """An sdist ``{name}-{version}.tar.gz`` holding ``files`` (and a ``PKG-INFO``)."""
    folder.mkdir(parents=True, exist_ok=True)
    base = f"{name}-{version}"
    files = {"PKG-INFO": _metadata(name, version, []), **files}
    path = folder / f"{base}.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for rel, text in files.items():
            data = text.encode()
            member = tarfile.TarInfo(f"{base}/{rel}")
            member.size = len(data)
            member.mode = 0o644
            tf.addfile(member, io.BytesIO(data))
    return path


def build_failing_sdist(folder: Path, name: str = "vwedbroken", version: str = "1.0") -> Path:
    """An sdist whose in-tree build backend (``backend-path = ["."]``) raises."""
    pyproject = (
        "[build-system]\n"
        "requires = []\n"
        'build-backend = "vwed_failing_backend"\n'
        'backend-path = ["."]\n'
        "\n[project]\n"
        f'name = "{name}"\nversion = "{version}"\n'
    )
    backend = (
        "def get_requires_for_build_wheel(config_settings=None):\n"
        "    return []\n\n"
        "def prepare_metadata_for_build_wheel(directory, config_settings=None):\n"
        f"    raise RuntimeError('{name} refuses to build (a test package)')\n\n"
        "def build_wheel(directory, config_settings=None, metadata_directory=None):\n"
        f"    raise RuntimeError('{name} refuses to build (a test package)')\n"
    )
    return build_sdist(
        folder, name, version, {"pyproject.toml": pyproject, "vwed_failing_backend.py": backend}
    )


def build_slow_sdist(
    folder: Path, name: str = "vwedslow", version: str = "1.0", pidfile: Path | None = None
) -> Path:
    """An sdist whose build backend writes its pid to ``pidfile`` (written into the backend:
    uv gives builds an allow-listed environment) and then sleeps for ten minutes (what a
    timeout must kill)."""
    pyproject = (
        "[build-system]\n"
        "requires = []\n"
        'build-backend = "vwed_slow_backend"\n'
        'backend-path = ["."]\n'
        "\n[project]\n"
        f'name = "{name}"\nversion = "{version}"\n'
    )
    backend = (
        "import os, time\n\n"
        "def _stall():\n"
        f"    path = {str(pidfile) if pidfile else ''!r}\n"
        "    if path:\n"
        "        with open(path, 'w') as f:\n"
        "            f.write(str(os.getpid()))\n"
        "    time.sleep(600)\n\n"
        "def get_requires_for_build_wheel(config_settings=None):\n"
        "    return []\n\n"
        "def prepare_metadata_for_build_wheel(directory, config_settings=None):\n"
        "    _stall()\n\n"
        "def build_wheel(directory, config_settings=None, metadata_directory=None):\n"
        "    _stall()\n"
    )
    return build_sdist(
        folder, name, version, {"pyproject.toml": pyproject, "vwed_slow_backend.py": backend}
    )


def build_test_wheels(folder: Path) -> Path:
    """The packages of the dependency tests, in ``folder``:

    - ``vwedtiny`` 1.0 and 2.0 (module ``vwedtiny`` with ``VERSION``);
    - ``vweddep`` 1.0, which needs ``vwedtiny>=2``;
    - ``vwedoldtornado`` 1.0, which needs ``tornado<5`` (a conflict with the engine);
    - ``vwedbroken`` 1.0, an sdist whose build backend raises.
    """
    build_wheel(folder, "vwedtiny", "1.0")
    build_wheel(folder, "vwedtiny", "2.0")
    build_wheel(folder, "vweddep", "1.0", ["vwedtiny>=2"])
    build_wheel(folder, "vwedoldtornado", "1.0", ["tornado<5"])
    build_failing_sdist(folder)
    return folder
