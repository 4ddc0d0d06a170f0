"""Settings: each option declared once, and read from flags, env vars and a TOML file
with one precedence (flag > env var > config file > default)."""

from __future__ import annotations

import re
import subprocess
import sys
import typing
from dataclasses import fields
from pathlib import Path

import pytest

from conftest import GatewayProcess
from kernel_gateway.config import (
    CONFIG_ENV,
    OPTIONS,
    ConfigError,
    Settings,
    build_parser,
    parse_settings,
)

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def _configuration_section() -> str:
    start = README.index("## Configuration")
    return README[start : README.index("\n## ", start + 1)]


def test_every_option_is_derived_from_its_one_field():
    hints = typing.get_type_hints(Settings)
    declared = fields(Settings)
    assert [o.name for o in OPTIONS] == [f.name for f in declared]
    for opt, f in zip(OPTIONS, declared, strict=True):
        assert (opt.type, opt.default, opt.help) == (hints[f.name], f.default, f.metadata["help"])
        assert opt.help and type(opt.default) is opt.type, opt.name
        assert opt.flag == "--" + f.name.replace("_", "-") and opt.env == "VWED_" + f.name.upper()
    assert Settings() == Settings(**{o.name: o.default for o in OPTIONS})
    # the parser: one flag per option (bools with --no-), plus --config and --help
    parser = build_parser()
    flags = {s for a in parser._actions for s in a.option_strings}
    expected = {o.flag for o in OPTIONS} | {"--no-" + o.flag[2:] for o in OPTIONS if o.type is bool}
    assert flags == expected | {"--config", "-h", "--help"}
    text = parser.format_help()
    for opt in OPTIONS:
        assert opt.flag in text and opt.env in text, opt.name
    # the README's table lists every flag and every env var (a group row may share VWED_X_*)
    table = _configuration_section()
    for opt in OPTIONS:
        assert f"`{opt.flag}" in table, opt.flag
        prefix = opt.env.rsplit("_", 1)[0] + "_*"
        assert opt.env in table or prefix in table, opt.env
    assert "`--config`" in table and f"`{CONFIG_ENV}`" in table


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("in_file", "in_env", "flag", "expected"),
    [
        (None, None, None, 2),  # the default
        (4, None, None, 4),  # the file over the default
        (4, 5, None, 5),  # the env var over the file
        (4, 5, 6, 6),  # the flag over the env var
        (None, 5, 6, 6),
        (4, None, 6, 6),
    ],
)
def test_precedence_flag_env_file_default(tmp_path, in_file, in_env, flag, expected):
    argv = ["--scripts-dir", str(tmp_path)]
    env = {}
    conf = _write(tmp_path / "vwed.toml", f"pool_size = {in_file}\n" if in_file else "")
    argv += ["--config", conf]
    if in_env is not None:
        env["VWED_POOL_SIZE"] = str(in_env)
    if flag is not None:
        argv += ["--pool-size", str(flag)]
    assert parse_settings(argv, env).pool_size == expected


def test_file_sets_each_kind_of_option_and_the_rest_keeps_its_default(tmp_path):
    conf = _write(
        tmp_path / "vwed.toml",
        f"scripts-dir = {str(tmp_path)!r}\n"  # either spelling of a key
        "call_timeout = 7\n"  # an integer for a float option
        "log-retention-days = 1.5\n"
        "watch = true\n"
        "auth = false\n"
        'allow_origins = "http://a.example,http://b.example"\n',
    )
    s = parse_settings(["--config", conf], {})
    assert (s.scripts_dir, s.call_timeout, s.log_retention_days) == (str(tmp_path), 7.0, 1.5)
    assert type(s.call_timeout) is float and s.watch is True and s.auth is False
    assert s.allow_origins == "http://a.example,http://b.example"
    assert (s.pool_size, s.port, s.ip) == (2, 8765, "127.0.0.1")
    # a bool flag and its env var win over the file too
    assert parse_settings(["--config", conf, "--auth"], {}).auth is True
    assert parse_settings(["--config", conf], {"VWED_WATCH": "0"}).watch is False


def test_the_file_is_named_by_flag_or_env_and_the_flag_wins(tmp_path):
    one = _write(tmp_path / "one.toml", f"scripts_dir = {str(tmp_path)!r}\nport = 1111\n")
    two = _write(tmp_path / "two.toml", f"scripts_dir = {str(tmp_path)!r}\nport = 2222\n")
    assert parse_settings([], {CONFIG_ENV: one}).port == 1111
    assert parse_settings(["--config", two], {CONFIG_ENV: one}).port == 2222
    assert parse_settings(["--scripts-dir", str(tmp_path)], {CONFIG_ENV: ""}).port == 8765


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pool_sise = 3\n", r"unknown key 'pool_sise' \(did you mean 'pool_size'\?\)"),
        ("[gateway]\npool_size = 3\n", r"unknown key 'gateway'"),
        ('pool_size = "3"\n', r"'pool_size' must be an integer, not a string"),
        ("pool_size = 3.0\n", r"'pool_size' must be an integer, not a float"),
        ("pool_size = true\n", r"'pool_size' must be an integer, not a boolean"),
        ("call_timeout = false\n", r"'call_timeout' must be a number, not a boolean"),
        ("watch = 1\n", r"'watch' must be true or false, not an integer"),
        ("token = 12345\n", r"'token' must be a string, not an integer"),
        ('ip = ["::1"]\n', r"'ip' must be a string, not an array"),
        ("pool_size = 1\npool-size = 2\n", r"'pool_size' is set twice"),
        ("pool_size = \n", r"is not valid TOML"),
    ],
)
def test_file_errors_name_the_file_the_key_and_what_is_expected(tmp_path, text, message):
    conf = _write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError, match=message) as info:
        parse_settings(["--scripts-dir", str(tmp_path), "--config", conf], {})
    assert str(info.value).startswith(f"config file {conf!r}")
    assert "12345" not in str(info.value)  # a value of the wrong type may be a secret


def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    conf = _write(tmp_path / "bad.toml", 'nope = 1\nport = "80"\n')
    with pytest.raises(ConfigError, match=r"unknown key 'nope'.*; 'port' must be an integer"):
        parse_settings(["--config", conf], {})


def test_a_missing_or_unreadable_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"config file '.*missing.toml' does not exist"):
        parse_settings(["--config", str(tmp_path / "missing.toml")], {})
    with pytest.raises(ConfigError, match=r"config file .* cannot be read"):
        parse_settings([], {CONFIG_ENV: str(tmp_path)})  # a folder


def test_values_from_the_file_are_validated_like_any_other(tmp_path):
    conf = _write(tmp_path / "vwed.toml", f"scripts_dir = {str(tmp_path)!r}\nport = 70000\n")
    with pytest.raises(ConfigError, match="port 70000 is not in 0-65535"):
        parse_settings(["--config", conf], {})
    assert parse_settings(["--config", conf, "--port", "0"], {}).port == 0


def test_a_bad_file_exits_with_code_2_and_says_why(tmp_path):
    conf = _write(tmp_path / "vwed.toml", "pool_size = 'two'\n")
    for argv, env in (
        (["--config", conf], {}),
        ([], {CONFIG_ENV: str(tmp_path / "missing.toml")}),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "kernel_gateway", *argv],
            env={**_clean_env(), **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert re.match(r"vwed-gateway: config file '.*' ", done.stderr), done.stderr


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("VWED_")}


def test_the_readme_example_file_is_valid(tmp_path):
    (example,) = re.findall(r"```toml\n(.*?)```", _configuration_section(), re.S)
    conf = _write(tmp_path / "vwed.toml", example)
    (tmp_path / "scripts").mkdir()
    from kernel_gateway.config import read_config_file

    values = read_config_file(conf)
    assert values and set(values) <= {o.name for o in OPTIONS}
    for path_option in ("scripts_dir", "data_dir", "policy"):
        values.pop(path_option, None)  # paths of a real install
    Settings(scripts_dir=str(tmp_path / "scripts"), **values).validated()


def test_a_gateway_started_from_a_config_file(tmp_path, monkeypatch):
    """A real ``python -m kernel_gateway --config FILE``: what the file sets takes effect,
    an env var wins over the file, a flag wins over both (GatewayProcess passes
    ``--pool-size 1``)."""
    root, data = tmp_path / "scripts", tmp_path / "data"
    root.mkdir()
    conf = _write(
        tmp_path / "vwed.toml",
        "pool-size = 3\n"  # the flag --pool-size 1 wins
        'allow_hosts = "vwed.example"\n'  # only here: takes effect
        'allow_origins = "http://file.example"\n',  # the env var wins
    )
    monkeypatch.setenv("VWED_ALLOW_ORIGINS", "http://env.example")
    gateway = GatewayProcess(root, data, "--config", conf)
    try:
        c = gateway.client
        assert c.get("/script-engine/health").json()["pool"]["target"] == 1
        assert c.get("/script-engine/health", headers={"Host": "vwed.example"}).status_code == 200
        r = c.get("/script-engine/health", headers={"Host": "other.example"})
        assert r.status_code == 403 and r.json()["code"] == "HOST_NOT_ALLOWED"
        r = c.get("/script-engine/running", headers={"Origin": "http://env.example"})
        assert r.headers.get("access-control-allow-origin") == "http://env.example"
        r = c.get("/script-engine/running", headers={"Origin": "http://file.example"})
        assert "access-control-allow-origin" not in r.headers
    finally:
        gateway.finish()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("TRUE", True), ("on", True), ("0", False), ("off", False), ("No", False)],
)
def test_boolean_env_vars_take_the_usual_words(raw, expected):
    assert parse_settings([], {"VWED_AUTH": raw}).auth is expected


def test_a_boolean_env_var_with_a_typo_is_an_error_not_false():
    # a typo in VWED_AUTH once turned auth off without a word
    with pytest.raises(ConfigError, match=r"VWED_AUTH='ture' is not a boolean"):
        parse_settings([], {"VWED_AUTH": "ture"})
