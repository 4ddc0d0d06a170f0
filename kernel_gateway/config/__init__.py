"""Gateway settings: every option declared once, read from flags, env vars and a file.

- :mod:`.settings`: :class:`Settings`, each option one field (default, type, help), its
  checks at start and the values derived from it (``host_check``, ``database_url``...);
- :mod:`.options`: the options derived from those fields (flag, ``VWED_*`` env var,
  config file key) and the conversion of text and TOML values;
- :mod:`.sources`: the parser and the precedence: flag > env var > config file > default.
"""

from __future__ import annotations

from .options import OPTIONS, Option
from .settings import ConfigError, Settings
from .sources import CONFIG_ENV, build_parser, parse_settings, read_config_file

__all__ = [
    "CONFIG_ENV",
    "OPTIONS",
    "ConfigError",
    "Option",
    "Settings",
    "build_parser",
    "parse_settings",
    "read_config_file",
]
