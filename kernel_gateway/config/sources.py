"""Where settings come from: flags, environment variables, a TOML config file, defaults.

Precedence, for each option on its own: a command-line flag wins over the environment
variable, the variable over the config file, the file over the default. The file is
named by ``--config FILE`` or else ``VWED_CONFIG``; its keys are the option names, with
``_`` or ``-`` (``pool_size`` or ``pool-size``), at the top level. An unknown key, a
value of the wrong type, a file that is missing or not TOML: a :class:`ConfigError`
naming the file (``vwed-gateway`` exits with code 2, like any bad setting).
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Mapping
from typing import Any

from .options import OPTIONS, by_key, from_env_text, from_toml
from .settings import ConfigError, Settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as a package (pyproject's conditional dependency)
    import tomli as tomllib

__all__ = ["CONFIG_ENV", "build_parser", "parse_settings", "read_config_file"]

CONFIG_ENV = "VWED_CONFIG"

_DESCRIPTION = (
    "The VWED script engine gateway. Every option is also read from its environment "
    "variable and from a TOML config file (--config): a flag wins over the variable, "
    "the variable over the file, the file over the default."
)


def build_parser() -> argparse.ArgumentParser:
    """The ``vwed-gateway`` parser: one flag per option, and ``--config``.

    No flag has a default here (an option not given is None): what a flag leaves unset
    comes from the other sources, in :func:`parse_settings`."""
    parser = argparse.ArgumentParser(prog="vwed-gateway", description=_DESCRIPTION)
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"TOML file of settings, keys named like the options [env {CONFIG_ENV}]",
    )
    for opt in OPTIONS:
        help_text = f"{opt.help} [env {opt.env}, default {opt.default!r}]"
        if opt.type is bool:
            action: Any = argparse.BooleanOptionalAction
            parser.add_argument(opt.flag, dest=opt.name, action=action, help=help_text)
        elif opt.repeatable:
            parser.add_argument(opt.flag, dest=opt.name, action="append", help=help_text)
        else:
            parser.add_argument(opt.flag, dest=opt.name, type=opt.type, help=help_text)
    return parser


def read_config_file(path: str) -> dict[str, Any]:
    """The options set in the TOML file at ``path``, by option name, checked."""
    where = f"config file {path!r}"
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    problems = []
    for key, value in data.items():
        opt = by_key(key)
        if opt is None:
            problems.append(f"unknown key {key!r}{_did_you_mean(key)}")
        elif opt.name in values:
            problems.append(f"{opt.name!r} is set twice (as {opt.name} and {opt.flag[2:]})")
        else:
            try:
                values[opt.name] = from_toml(opt, value)
            except ConfigError as exc:
                problems.append(str(exc))
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))
    return values


def _did_you_mean(key: str) -> str:
    names = [opt.name for opt in OPTIONS]
    close = difflib.get_close_matches(key.replace("-", "_").lower(), names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else " (keys are the option names)"


def _env_values(env: Mapping[str, str]) -> dict[str, Any]:
    return {opt.name: from_env_text(opt, env[opt.env]) for opt in OPTIONS if opt.env in env}


def parse_settings(argv: list[str] | None = None, env: dict[str, str] | None = None) -> Settings:
    """Settings from flags (``argv``, default ``sys.argv``), env vars (``env``, default
    ``os.environ``) and the config file they name; validated."""
    env = dict(os.environ if env is None else env)
    given = vars(build_parser().parse_args(argv))
    config = given.pop("config")
    if config is None:
        config = env.get(CONFIG_ENV, "")
    values = {opt.name: opt.default for opt in OPTIONS}
    # Every variable is checked, even one a flag overrides (a typo is reported).
    from_env = _env_values(env)
    if config:
        values.update(read_config_file(config))
    values.update(from_env)
    values.update(
        {
            name: ",".join(value) if isinstance(value, list) else value
            for name, value in given.items()
            if value is not None
        }
    )
    return Settings(**values).validated()
