"""kernel_gateway/deps without a gateway: declarations, resolution with the real uv against
wheels built by tests/wheels.py (find-links, no index, no network), environments, caching,
conflicts with the engine's packages, failures, timeouts, broken installs, gc."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from wheels import build_slow_sdist, build_test_wheels

from conftest import wait_until
from kernel_gateway.deps import (
    Declaration,
    DepsSettings,
    Environment,
    Environments,
    read_declaration,
)
from kernel_gateway.errors import DependencyConflict, DependencyFailed, DependencyInvalid
from kernel_gateway.scripts import ScriptStore

pytestmark = pytest.mark.timeout(90)

BLOCK = "# /// script\n# dependencies = {deps}\n# ///\n"


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_wheels(tmp_path_factory.mktemp("wheels"))


@pytest.fixture
def envs(tmp_path: Path, wheels: Path) -> Environments:
    return Environments(DepsSettings(dir=tmp_path / "deps", find_links=(str(wheels),), timeout=60))


def decl(*requirements: str) -> Declaration:
    return Declaration(tuple(requirements), "pep723", None)


def installs(envs: Environments) -> int:
    return sum("--target" in args for args in envs.uv.history)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def import_in(env: Environment, module: str) -> str:
    """``module.VERSION`` as a fresh engine Python sees it with the site added after its own."""
    code = (
        f"import site, sys; site.addsitedir(sys.argv[1]); import {module}; print({module}.VERSION)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, env.site], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


# -- declarations -----------------------------------------------------------------------
def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load(root: Path, rel: str) -> Declaration | None:
    return read_declaration(ScriptStore(root).load(rel), root)


def test_pep723_block_normalised(tmp_path: Path) -> None:
    text = BLOCK.format(deps='["VwedTiny >= 2", "Vwed_Dep"]') + "def boot():\n    pass\n"
    write(tmp_path, "a.py", "import os\n\n" + text)
    found = load(tmp_path, "a.py")
    assert found is not None
    assert found.requirements == ("vwed-dep", "vwedtiny>=2")
    assert found.origin == "pep723" and found.file is None
    assert found.to_json() == {
        "requirements": ["vwed-dep", "vwedtiny>=2"],
        "origin": "pep723",
        "file": None,
    }
    same = Declaration(("vwed-dep", "vwedtiny>=2"), "requirements.txt", "x/requirements.txt")
    assert same.key == found.key and len(found.key) == 64
    assert Declaration(("vwedtiny>=2",), "pep723").key != found.key
    # requires-python that admits the running Python is fine
    write(
        tmp_path, "b.py", '# /// script\n# requires-python = ">=3.10"\n# dependencies = []\n# ///\n'
    )
    empty = load(tmp_path, "b.py")
    assert empty is not None and empty.requirements == ()


def test_relative_find_links_and_empty_declaration(
    tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(wheels.parent)
    envs = Environments(DepsSettings(dir=Path("deps-rel"), find_links=(wheels.name,)))
    assert run(envs.ensure(decl("vwedtiny==1.0"))).lock.packages == (("vwedtiny", "1.0"),)
    runs = envs.uv.runs
    assert run(envs.ensure(decl())).lock.packages == () and envs.uv.runs == runs


def test_no_declaration(tmp_path: Path) -> None:
    write(tmp_path, "plain.py", "def boot():\n    pass\n")
    assert load(tmp_path, "plain.py") is None
    write(tmp_path, "other.py", "# /// pyproject\n# x = 1\n# ///\n")
    assert load(tmp_path, "other.py") is None


def test_requirements_txt_beside_the_script(tmp_path: Path) -> None:
    write(tmp_path, "line/a.py", "def boot():\n    pass\n")
    write(
        tmp_path,
        "line/requirements.txt",
        "# the line's packages\n\nvweddep  # comment\nVWEDTINY>=2\n",
    )
    write(tmp_path, "elsewhere/b.py", "def boot():\n    pass\n")
    found = load(tmp_path, "line/a.py")
    assert found is not None
    assert found.requirements == ("vweddep", "vwedtiny>=2")
    assert (found.origin, found.file) == ("requirements.txt", "line/requirements.txt")
    assert load(tmp_path, "elsewhere/b.py") is None
    # the script's own block wins over the folder's file
    write(tmp_path, "line/c.py", BLOCK.format(deps='["vwedtiny==1.0"]'))
    own = load(tmp_path, "line/c.py")
    assert own is not None and own.requirements == ("vwedtiny==1.0",) and own.origin == "pep723"


def test_notebook_first_code_cell(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# a notebook"),
        nbformat.v4.new_code_cell(BLOCK.format(deps='["vwedtiny"]') + "import vwedtiny"),
        nbformat.v4.new_code_cell("def boot():\n    pass"),
    ]
    write(tmp_path, "n.ipynb", nbformat.writes(nb))
    found = load(tmp_path, "n.ipynb")
    assert found is not None and found.requirements == ("vwedtiny",)
    assert found.origin == "notebook"
    # a block in a later cell is not a declaration
    nb.cells = [nb.cells[2], nb.cells[1]]
    write(tmp_path, "m.ipynb", nbformat.writes(nb))
    assert load(tmp_path, "m.ipynb") is None


@pytest.mark.parametrize(
    "body, needle",
    [
        ('# /// script\n# dependencies = ["a"\n# ///\n', "not valid TOML"),
        ('# /// script\n# dependencies = "vwedtiny"\n# ///\n', "list of strings"),
        (
            '# /// script\n# dependencies = ["not a requirement!!"]\n# ///\n',
            "not a valid requirement",
        ),
        ('# /// script\n# dependencies = ["x @ https://example.invalid/x.whl"]\n# ///\n', "URL"),
        (
            '# /// script\n# requires-python = ">=4"\n# dependencies = []\n# ///\n',
            "requires-python",
        ),
        (BLOCK.format(deps="[]") + "import os\n" + BLOCK.format(deps="[]"), "more than one"),
    ],
)
def test_invalid_pep723(tmp_path: Path, body: str, needle: str) -> None:
    write(tmp_path, "bad.py", body)
    with pytest.raises(DependencyInvalid) as info:
        load(tmp_path, "bad.py")
    assert needle in info.value.message
    assert info.value.status == 422 and info.value.code == "DEPENDENCY_INVALID"
    assert "bad.py" in info.value.message


@pytest.mark.parametrize(
    "line",
    [
        "-r other.txt",
        "-e .",
        "--index-url https://example.invalid/simple",
        "https://example.invalid/x.whl",
        "./local-folder",
        "x @ file:///etc/passwd",
        "vwedtiny>>2",
    ],
)
def test_invalid_requirements_txt_names_the_line(tmp_path: Path, line: str) -> None:
    write(tmp_path, "f/a.py", "def boot():\n    pass\n")
    write(tmp_path, "f/requirements.txt", f"vwedtiny\n{line}\n")
    with pytest.raises(DependencyInvalid) as info:
        load(tmp_path, "f/a.py")
    assert "f/requirements.txt line 2" in info.value.message
    assert info.value.details["line_number"] == 2


def test_requirements_txt_confined_to_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = write(tmp_path, "outside/requirements.txt", "vwedtiny\n")
    write(root, "s/a.py", "def boot():\n    pass\n")
    (root / "s" / "requirements.txt").symlink_to(outside)
    with pytest.raises(DependencyInvalid, match="outside the scripts root"):
        load(root, "s/a.py")


# -- ensure -----------------------------------------------------------------------------
def test_ensure_installs_and_the_second_runs_no_uv(envs: Environments, tmp_path: Path) -> None:
    lines: list[str] = []
    env = run(envs.ensure(decl("vwedtiny>=2"), lines.append))
    assert env.lock.packages == (("vwedtiny", "2.0"),)
    assert "--hash=sha256:" in env.lock.text and "vwedtiny==2.0" in env.lock.text
    assert Path(env.site).is_dir() and (Path(env.site) / "vwedtiny" / "__init__.py").is_file()
    assert import_in(env, "vwedtiny") == "2.0"
    assert lines[0] == "resolving 1 requirement" and lines[1] == "installing 1 package"
    assert lines[2].startswith("installed 1 package in ") and lines[2].endswith(" s")
    assert lines[3] == f"environment {env.lock.hash[:12]} ready"
    assert envs.uv.runs == 3  # resolve, lock, install
    assert any((envs.settings.dir / "cache").iterdir())  # uv's cache is ours, not ~/.cache
    # nothing the engine has is in the environment
    assert not any(p.name.startswith("tornado") for p in Path(env.site).iterdir())

    assert run(envs.ensure(decl("vwedtiny>=2"))) == env
    assert envs.uv.runs == 3
    # another gateway on the same folder (a restart): found ready, no uv either
    again = Environments(envs.settings)
    assert again.find(decl("vwedtiny>=2")) == env
    assert run(again.ensure(decl("vwedtiny>=2"))) == env and again.uv.runs == 0
    assert again.find(decl("vwedtiny==1.0")) is None
    assert not list((envs.settings.dir / "work").iterdir())


def test_same_requirements_share_one_environment(envs: Environments, tmp_path: Path) -> None:
    root = tmp_path / "scripts"
    write(root, "a/one.py", BLOCK.format(deps='["VWEDTINY==1.0"]'))
    write(root, "b/two.py", "def boot():\n    pass\n")
    write(root, "b/requirements.txt", "vwedtiny == 1.0\n")
    one, two = load(root, "a/one.py"), load(root, "b/two.py")
    assert one is not None and two is not None and one.key == two.key
    first = run(envs.ensure(one))
    runs = envs.uv.runs
    assert run(envs.ensure(two)).path == first.path and envs.uv.runs == runs
    assert import_in(first, "vwedtiny") == "1.0"


def test_transitive_dependency_installed(envs: Environments) -> None:
    env = run(envs.ensure(decl("vweddep")))
    assert env.lock.packages == (("vweddep", "1.0"), ("vwedtiny", "2.0"))
    assert import_in(env, "vwedtiny") == "2.0" and import_in(env, "vweddep") == "1.0"


def test_requirement_the_engine_meets_installs_nothing(envs: Environments) -> None:
    env = run(envs.ensure(decl("tornado>=6", "packaging")))
    assert env.lock.packages == () and env.lock.text == ""
    assert list(Path(env.site).iterdir()) == []
    assert installs(envs) == 0


@pytest.mark.parametrize(
    "requirement, via", [("tornado<5", None), ("vwedoldtornado", "vwedoldtornado")]
)
def test_conflict_with_the_engine(envs: Environments, requirement: str, via: str | None) -> None:
    import tornado

    with pytest.raises(DependencyConflict) as info:
        run(envs.ensure(decl(requirement)))
    err = info.value
    assert err.status == 422 and err.code == "DEPENDENCY_CONFLICT"
    assert err.details["package"] == "tornado"
    assert err.details["engine_requires"] == f"tornado=={tornado.version}"
    assert err.details["script_requires"] == "tornado<5"
    assert err.details["required_by"] == via
    assert "tornado<5" in err.details["resolver_message"]
    assert "tornado<5" in err.message and f"tornado=={tornado.version}" in err.message
    assert installs(envs) == 0 and envs.layout.env_names() == []


def test_missing_package_fails_with_uv_message(envs: Environments) -> None:
    with pytest.raises(DependencyFailed) as info:
        run(envs.ensure(decl("vwednosuchpackage")))
    assert info.value.code == "DEPENDENCY_FAILED" and info.value.status == 422
    assert "vwednosuchpackage" in info.value.details["resolver_message"]
    assert "vwednosuchpackage" in info.value.message


def test_broken_sdist_fails_and_leaves_nothing(envs: Environments) -> None:
    with pytest.raises(DependencyFailed) as info:
        run(envs.ensure(decl("vwedbroken")))
    assert "refuses to build" in info.value.details["resolver_message"]
    assert "vwedbroken" in info.value.message
    assert envs.layout.env_names() == [] and envs.layout.leftovers() == []


def test_timeout_kills_uv_and_its_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slow = tmp_path / "slow"
    pidfile = tmp_path / "backend.pid"
    build_slow_sdist(slow, pidfile=pidfile)
    envs = Environments(DepsSettings(dir=tmp_path / "deps", find_links=(str(slow),), timeout=4))
    started = time.monotonic()
    with pytest.raises(DependencyFailed) as info:
        run(envs.ensure(decl("vwedslow")))
    took = time.monotonic() - started
    assert "timed out after 4 s" in info.value.message
    assert info.value.details["resolver_message"] == "timed out after 4 s"
    assert took < 15
    assert pidfile.is_file(), "the build backend never ran"
    pid = int(pidfile.read_text())
    wait_until(lambda: not _alive(pid), 10, "the build backend to be killed")
    assert envs.layout.env_names() == [] and envs.layout.leftovers() == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "zombie" in status.read_text())


def test_broken_environment_is_rebuilt(envs: Environments) -> None:
    env = run(envs.ensure(decl("vwedtiny==1.0")))
    (env.path / "READY").unlink()  # as if the install had been cut before its marker
    assert envs.find(decl("vwedtiny==1.0")) is None
    assert [e["status"] for e in envs.listing()] == ["broken"]
    before = installs(envs)
    lines: list[str] = []
    again = run(envs.ensure(decl("vwedtiny==1.0"), lines.append))
    assert again == env and installs(envs) == before + 1
    assert "resolving 1 requirement" not in lines  # the lock was kept: only the install again
    assert (env.path / "READY").is_file() and import_in(again, "vwedtiny") == "1.0"
    assert [e["status"] for e in envs.listing()] == ["ready"]


def test_concurrent_ensure_installs_once(envs: Environments) -> None:
    other = Environments(envs.settings)  # a second gateway sharing the folder

    async def both() -> list[Environment]:
        calls = [envs.ensure(decl("vweddep")) for _ in range(3)]
        return await asyncio.gather(*calls, other.ensure(decl("vweddep")))

    results = run(both())
    assert len({r.path for r in results}) == 1
    assert installs(envs) + installs(other) == 1
    assert sum("--dry-run" in a for a in envs.uv.history) == 1


def test_engine_change_resolves_again(envs: Environments) -> None:
    env = run(envs.ensure(decl("vwedtiny")))
    record = envs.layout.by_declaration / f"{decl('vwedtiny').key}.json"
    data = json.loads(record.read_text())
    data["engine"] = "0" * 64  # resolved against other engine packages
    record.write_text(json.dumps(data))
    assert envs.find(decl("vwedtiny")) is None
    runs = envs.uv.runs
    assert run(envs.ensure(decl("vwedtiny"))) == env
    assert envs.uv.runs == runs + 2 and installs(envs) == 1  # resolved again, not installed


def test_ensure_lock_restores(envs: Environments) -> None:
    env = run(envs.ensure(decl("vweddep")))
    shutil.rmtree(env.path)
    restored = run(Environments(envs.settings).ensure_lock(env.lock.hash))
    assert restored == env and import_in(restored, "vweddep") == "1.0"
    for bad in ("f" * 64, "../../etc/passwd", ""):
        with pytest.raises(DependencyFailed, match="not recorded"):
            run(envs.ensure_lock(bad))


def test_touch_listing_and_gc(envs: Environments) -> None:
    old = run(envs.ensure(decl("vwedtiny==1.0")))
    used = run(envs.ensure(decl("vwedtiny==2.0")))
    kept = run(envs.ensure(decl("vweddep")))
    envs.touch(used.lock.hash, "line/a.py")
    envs.touch(used.lock.hash, "line/b.py")
    listing = {e["lock"]: e for e in envs.listing()}
    assert set(listing) == {old.lock.hash, used.lock.hash, kept.lock.hash}
    entry = listing[used.lock.hash]
    assert entry["scripts"] == ["line/a.py", "line/b.py"] and entry["status"] == "ready"
    assert entry["packages"] == [["vwedtiny", "2.0"]] and entry["size_bytes"] > 0
    assert entry["last_used"] >= entry["created"]
    assert listing[old.lock.hash]["last_used"] is None

    assert run(envs.gc()) == []
    later = time.time() + 31 * 86400
    removed = run(envs.gc(now=later, keep=[kept.lock.hash]))
    assert sorted(removed) == sorted([old.lock.hash, used.lock.hash])
    assert [e["lock"] for e in envs.listing()] == [kept.lock.hash]
    # the lock is kept for a restore; the environment comes back on demand
    assert run(envs.ensure_lock(used.lock.hash)).path == used.path


def test_gc_removes_broken_environments_and_old_leftovers(envs: Environments) -> None:
    env = run(envs.ensure(decl("vwedtiny==1.0")))
    (env.path / "READY").unlink()
    old = envs.layout.envs / f"{'a' * 64}.tmp-999999"
    fresh = envs.layout.envs / f"{'b' * 64}.tmp-999998"
    for leftover in (old, fresh):
        (leftover / "site").mkdir(parents=True)
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert run(envs.gc()) == [env.lock.hash]
    assert envs.listing() == [] and not old.exists() and fresh.exists()


def test_uv_and_the_builds_it_runs_never_get_the_gateways_secrets(
    tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uv runs third-party build backends: its environment is an allow-list. A real uv
    process prints what it was given (a build of an sdist would see the same)."""
    from kernel_gateway.deps.uv import Uv

    for name in ("VWED_TOKEN", "VWED_SECRETS_KEY", "VWED_SMTP_PASSWORD", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "leak-" + name)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    uv = Uv(DepsSettings(dir=tmp_path / "deps", find_links=(str(wheels),)))
    env = uv.env()
    assert not [k for k in env if "leak" in env[k]], sorted(env)
    assert env["PATH"] == os.environ["PATH"] and env["LC_ALL"] == "C.UTF-8"
    seen = subprocess.run(
        [uv.binary, "run", "--no-project", "--offline", "--python", sys.executable, "env"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "leak-" not in seen.stdout + seen.stderr
