"""Gateway settings: one table, read from CLI flags and ``VWED_*`` env vars.

Each setting has a flag (``--scripts-dir``), an environment variable
(``VWED_SCRIPTS_DIR``) and help text; a flag wins over the variable, the
variable over the default. Values are validated at start with a clear message.

Security: the gateway binds 127.0.0.1 by default and requires a token by default
(generated at first start, stored 0600 in the data directory); ``--no-auth`` is
refused on any address but loopback.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

__all__ = ["Settings", "ConfigError", "parse_settings", "OPTIONS"]


class ConfigError(ValueError):
    """A setting has a value the gateway cannot run with."""


@dataclass(frozen=True)
class Option:
    name: str
    type: type
    default: Any
    help: str


OPTIONS: tuple[Option, ...] = (
    Option(
        "scripts_dir",
        str,
        "examples",
        "folder of the scripts the gateway serves (the scripts root)",
    ),
    Option("ip", str, "127.0.0.1", "address to listen on; a non-loopback address needs a token"),
    Option("port", int, 8765, "port to listen on (0 picks a free one)"),
    Option("data_dir", str, ".vwed", "folder for the gateway's data: kernelspec, SQLite database"),
    Option("db_url", str, "", "SQLAlchemy database URL (default: SQLite file in the data dir)"),
    Option(
        "db_timeout",
        float,
        5.0,
        "seconds any one database operation may take (connect, statement, each awaited "
        "store call); past it the caller gets 503 STORE_TIMEOUT",
    ),
    Option("pool_size", int, 2, "number of pre-started kernels kept ready"),
    Option("call_timeout", float, 30.0, "seconds a route or function call may run before 504"),
    Option("boot_timeout", float, 60.0, "seconds a script may take to load and run boot()"),
    Option("workers", int, 0, "worker kernels for task-flow steps (0: the number of CPUs)"),
    Option("step_queue", int, 100, "steps that may wait for a free worker; more get 503 BUSY"),
    Option(
        "step_grace",
        float,
        5.0,
        "seconds an interrupted worker has to come back before it is replaced",
    ),
    Option(
        "restart_limit",
        int,
        5,
        "crashes within --restart-window after which a script stays down ('crashed')",
    ),
    Option("restart_window", float, 60.0, "seconds over which crashes are counted"),
    Option(
        "restart_backoff",
        float,
        0.5,
        "first delay before restarting a crashed script; doubles each time, 30 s at most",
    ),
    Option(
        "watch", bool, False, "reload a running script (without downtime) when its file changes"
    ),
    Option(
        "restore",
        bool,
        True,
        "start again, at start, the scripts that were running when the gateway stopped",
    ),
    Option("drain_timeout", float, 10.0, "seconds a stopping gateway waits for calls in flight"),
    Option("max_in_flight", int, 64, "calls in flight per kernel at most; more get 503 BUSY"),
    Option("max_kernels", int, 0, "script kernels running at most (0: no limit)"),
    Option(
        "memory_limit_mb",
        int,
        0,
        "default per-script memory limit (RSS of each kernel with the processes it started, MiB; 0: none)",
    ),
    Option(
        "policy",
        str,
        "",
        "default policy of scripts started without one: a JSON file with "
        "'network', 'subprocess', 'write' (docs/security.md)",
    ),
    Option(
        "kernel_name",
        str,
        "",
        "kernelspec to start scripts with (default: the gateway's own 'vwed' spec)",
    ),
    Option(
        "kernel_user",
        str,
        "",
        "run kernels as this unprivileged user (the gateway must run as root); "
        "that user cannot read the data directory (docs/security.md)",
    ),
    Option(
        "kernel_env",
        str,
        "",
        "comma-separated names of extra environment variables passed to kernels "
        "(kernels get an allow-listed environment; VWED_* is never passed)",
    ),
    Option("auth", bool, True, "require a token (--no-auth: none, only on a loopback address)"),
    Option(
        "token",
        str,
        "",
        "admin token (default: generated at first start in <data-dir>/token); "
        "clients send 'Authorization: token T' or 'Bearer T' (?token=T on WebSockets only)",
    ),
    Option(
        "allow_origins",
        str,
        "",
        "comma-separated browser origins allowed for CORS and WebSockets "
        "(default: none, same origin only; '*' for any)",
    ),
    Option(
        "allow_hosts",
        str,
        "",
        "comma-separated Host names accepted while the gateway listens on loopback (default: "
        "loopback names and addresses only, against DNS rebinding; '*' for any)",
    ),
    Option(
        "caller_token",
        str,
        "",
        "caller token for task flows: /script-api, function calls, "
        "events, steps (default: generated in <data-dir>/caller_token)",
    ),
    Option(
        "max_timeout",
        float,
        24 * 3600.0,
        "largest 'timeout' a call or step may ask for, in seconds",
    ),
    Option("max_file_size", int, 1024 * 1024, "largest script file accepted, in bytes"),
    Option("max_body_size", int, 16 * 1024 * 1024, "largest HTTP request body accepted, in bytes"),
    Option("log_retention_days", float, 30.0, "days of log records kept (0: no age limit)"),
    Option("log_retention_records", int, 5_000_000, "log records kept at most (0: no limit)"),
    Option(
        "log_queue_max",
        int,
        50_000,
        "log records waiting for the database at most; more are dropped (counted)",
    ),
    Option(
        "log_buffer_mb",
        int,
        16,
        "MiB of recent log records kept in memory for live subscribers; one that lags further is cut off",
    ),
    Option(
        "platform_url",
        str,
        "",
        "VWED server for VWED.storage/task/robot (empty: the embedded backend)",
    ),
    Option("platform_token", str, "", "bearer token for the VWED server"),
    Option("smtp_host", str, "", "SMTP server for VWED.mail (empty: mail is off)"),
    Option("smtp_port", int, 25, "SMTP port"),
    Option("smtp_user", str, "", "SMTP account (empty: no login)"),
    Option("smtp_password", str, "", "SMTP password (prefer the env var VWED_SMTP_PASSWORD)"),
    Option("smtp_from", str, "vwed@localhost", "sender address of VWED.mail"),
    Option("smtp_tls", str, "none", "none, starttls or ssl"),
    Option(
        "fast_path",
        bool,
        True,
        "send calls over each kernel's fast ZeroMQ channel (off: comm messages)",
    ),
    Option("debug", bool, False, "include tracebacks in error answers"),
)


@dataclass(frozen=True)
class Settings:
    scripts_dir: str = "examples"
    ip: str = "127.0.0.1"
    port: int = 8765
    data_dir: str = ".vwed"
    db_url: str = ""
    db_timeout: float = 5.0
    pool_size: int = 2
    call_timeout: float = 30.0
    boot_timeout: float = 60.0
    workers: int = 0
    step_queue: int = 100
    step_grace: float = 5.0
    restart_limit: int = 5
    restart_window: float = 60.0
    restart_backoff: float = 0.5
    watch: bool = False
    restore: bool = True
    drain_timeout: float = 10.0
    max_in_flight: int = 64
    max_kernels: int = 0
    memory_limit_mb: int = 0
    policy: str = ""
    kernel_name: str = ""
    kernel_user: str = ""
    kernel_env: str = ""
    auth: bool = True
    token: str = ""
    caller_token: str = ""
    allow_origins: str = ""
    allow_hosts: str = ""
    max_timeout: float = 24 * 3600.0
    max_file_size: int = 1024 * 1024
    max_body_size: int = 16 * 1024 * 1024
    log_retention_days: float = 30.0
    log_retention_records: int = 5_000_000
    log_queue_max: int = 50_000
    log_buffer_mb: int = 16
    platform_url: str = ""
    platform_token: str = ""
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = "vwed@localhost"
    smtp_tls: str = "none"
    fast_path: bool = True
    debug: bool = False

    def validated(self) -> Settings:
        problems = []
        if not Path(self.scripts_dir).is_dir():
            problems.append(f"scripts_dir {self.scripts_dir!r} is not a directory")
        if not 0 <= self.port <= 65535:
            problems.append(f"port {self.port} is not in 0-65535")
        if self.pool_size < 0:
            problems.append("pool_size must be >= 0")
        if self.workers < 0 or self.step_queue < 0 or self.step_grace <= 0:
            problems.append("workers and step_queue must be >= 0, step_grace > 0")
        if not 0 < self.max_timeout < float("inf"):
            problems.append("max_timeout must be a finite number of seconds > 0")
        for name in ("call_timeout", "boot_timeout", "db_timeout"):
            value = getattr(self, name)
            if not 0 < value <= self.max_timeout:  # also refuses NaN
                problems.append(f"{name} must be > 0 and at most max_timeout ({value!r})")
        if not 0 <= self.drain_timeout <= self.max_timeout:
            problems.append(f"drain_timeout must be >= 0 and finite ({self.drain_timeout!r})")
        if self.smtp_tls not in ("none", "starttls", "ssl"):
            problems.append("smtp_tls must be none, starttls or ssl")
        if self.max_file_size <= 0 or self.max_body_size <= 0:
            problems.append("size limits must be > 0")
        if not self.auth and not _is_loopback(self.ip):
            problems.append(f"refusing to listen on {self.ip} without auth (drop --no-auth)")
        if self.policy:
            try:
                self.default_policy  # noqa: B018 - read to check it
            except ConfigError as exc:
                problems.append(str(exc))
        from .kernelenv import check_extra_names

        problems.extend(check_extra_names(self.kernel_env_names))
        if self.kernel_user:
            from .kerneluser import KernelUserError, resolve_kernel_user

            try:
                resolve_kernel_user(self.kernel_user)
            except KernelUserError as exc:
                problems.append(str(exc))
        if self.db_url:
            from sqlalchemy.engine import make_url
            from sqlalchemy.exc import ArgumentError

            try:
                make_url(self.db_url)
            except ArgumentError as exc:
                problems.append(f"db_url is not a SQLAlchemy URL: {exc}")
        if problems:
            raise ConfigError("; ".join(problems))
        return self

    @property
    def default_policy(self) -> dict[str, Any] | None:
        """The ``--policy`` file's object (None without one)."""
        if not self.policy:
            return None
        try:
            value = json.loads(Path(self.policy).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"policy file {self.policy!r} cannot be read as JSON: {exc}"
            ) from None
        if not isinstance(value, dict):
            raise ConfigError(f"policy file {self.policy!r} must hold a JSON object")
        return value

    @property
    def host_check(self) -> tuple[str, ...] | None:
        """Host names accepted besides loopback ones, or None when Host is not checked.

        Security: a gateway that listens on loopback only (always so with ``--no-auth``)
        must not answer a page that reached it by DNS rebinding (a foreign name resolving
        to 127.0.0.1), as Jupyter Server does; one published on another address under a
        host name is protected by its tokens instead."""
        if not (_is_loopback(self.ip) or not self.auth):
            return None
        return tuple(h.strip().lower() for h in self.allow_hosts.split(",") if h.strip())

    @property
    def kernel_env_names(self) -> list[str]:
        """The ``--kernel-env`` names."""
        return [n.strip() for n in self.kernel_env.split(",") if n.strip()]

    @property
    def database_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{Path(self.data_dir).resolve() / 'vwed.sqlite3'}"


def _is_loopback(ip: str) -> bool:
    if ip in ("localhost", ""):
        return ip == "localhost"
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def _env_value(opt: Option, env: dict[str, str]) -> Any:
    raw = env.get("VWED_" + opt.name.upper())
    if raw is None:
        return opt.default
    try:
        if opt.type is bool:
            return raw.strip().lower() in ("1", "true", "yes", "on")
        return opt.type(raw)
    except ValueError:
        raise ConfigError(
            f"VWED_{opt.name.upper()}={raw!r} is not a valid {opt.type.__name__}"
        ) from None


def build_parser(env: dict[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vwed-gateway", description="The VWED script engine gateway."
    )
    for opt in OPTIONS:
        flag = "--" + opt.name.replace("_", "-")
        help_text = f"{opt.help} [env VWED_{opt.name.upper()}, default {opt.default!r}]"
        if opt.type is bool:
            parser.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=_env_value(opt, env),
                help=help_text,
            )
        else:
            parser.add_argument(flag, type=opt.type, default=_env_value(opt, env), help=help_text)
    return parser


def parse_settings(argv: list[str] | None = None, env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    args = build_parser(env).parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in fields(Settings)}
    return Settings(**values).validated()
