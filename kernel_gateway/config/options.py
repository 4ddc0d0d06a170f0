"""The options, derived from the fields of :class:`Settings`: name, flag, env var, key.

Nothing here names an option: :data:`OPTIONS` is read off ``Settings`` at import, so an
option added to ``Settings`` is at once a flag, an environment variable and a config
file key, with its help text in ``--help``. Values that come as text (env vars) or as
TOML values (the config file) are converted and checked here, the same way for every
option.
"""

from __future__ import annotations

import typing
from dataclasses import MISSING, dataclass, fields
from typing import Any

from .settings import ConfigError, Settings

__all__ = ["Option", "OPTIONS", "by_key", "from_env_text", "from_toml"]

# The types an option may have, and how a message names a value of each.
_EXPECTED = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


@dataclass(frozen=True)
class Option:
    """One option, as ``Settings`` declares it."""

    name: str
    type: type
    default: Any
    help: str
    repeatable: bool = False  # the flag may be given several times (values joined by ",")

    @property
    def flag(self) -> str:
        """The command-line flag: ``--pool-size``."""
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        """The environment variable: ``VWED_POOL_SIZE``."""
        return "VWED_" + self.name.upper()


def _options() -> tuple[Option, ...]:
    hints = typing.get_type_hints(Settings)
    out = []
    for f in fields(Settings):
        kind = hints[f.name]
        if kind not in _EXPECTED or f.default is MISSING or "help" not in f.metadata:
            raise TypeError(
                f"Settings.{f.name}: declare it as `name: str|int|float|bool = setting(default, help)`"
            )
        out.append(
            Option(f.name, kind, f.default, f.metadata["help"], bool(f.metadata.get("repeatable")))
        )
    return tuple(out)


OPTIONS: tuple[Option, ...] = _options()
_BY_NAME = {opt.name: opt for opt in OPTIONS}


def by_key(key: str) -> Option | None:
    """The option a config file key names (``pool_size`` or ``pool-size``), or None."""
    return _BY_NAME.get(key.replace("-", "_"))


def from_env_text(opt: Option, raw: str) -> Any:
    """The value of ``opt`` written as text in its environment variable."""
    if opt.type is bool:
        # a typo (VWED_AUTH=ture) is an error, never a silent "false"
        word = raw.strip().lower()
        if word in ("1", "true", "yes", "on"):
            return True
        if word in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(
            f"{opt.env}={raw!r} is not a boolean (use true/false, 1/0, yes/no, on/off)"
        )
    try:
        return opt.type(raw)
    except ValueError:
        raise ConfigError(f"{opt.env}={raw!r} is not a valid {opt.type.__name__}") from None


def _toml_type(value: Any) -> str:
    kinds: tuple[tuple[type, str], ...] = (
        (bool, "a boolean"),  # before int: a bool is an int in Python
        (int, "an integer"),
        (float, "a float"),
        (str, "a string"),
        (list, "an array"),
        (dict, "a table"),
    )
    for kind, name in kinds:
        if isinstance(value, kind):
            return name
    return "a date or time"


def from_toml(opt: Option, value: Any) -> Any:
    """The value of ``opt`` given as a TOML value; a message saying what is expected if
    it has the wrong type (the value itself is not repeated: it may be a secret)."""
    ok = isinstance(value, opt.type) and (opt.type is bool or not isinstance(value, bool))
    if opt.type is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        raise ConfigError(f"{opt.name!r} must be {_EXPECTED[opt.type]}, not {_toml_type(value)}")
    return value
