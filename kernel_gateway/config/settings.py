"""The gateway's settings: every option written once, as a field of :class:`Settings`.

Each field carries its default (the field's), its type (the annotation) and its help
text (``setting(default, help)``); its flag (``--scripts-dir``), its environment variable
(``VWED_SCRIPTS_DIR``) and its config file key (``scripts_dir`` or ``scripts-dir``) are
derived from the name (:mod:`kernel_gateway.config.options`), and so are the argument
parser and the ``--help`` text (:mod:`kernel_gateway.config.sources`). Values are
validated at start with a clear message (:meth:`Settings.validated`).

Security: the gateway binds 127.0.0.1 by default and requires a token by default
(generated at first start, stored 0600 in the data directory); ``--no-auth`` is
refused on any address but loopback.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["Settings", "ConfigError", "setting"]

T = TypeVar("T")


class ConfigError(ValueError):
    """A setting has a value the gateway cannot run with."""


def setting(default: T, help: str, repeatable: bool = False) -> T:
    """One option of :class:`Settings`: its default and its help text (``repeatable``:
    a string option whose flag may be given several times, joined by commas)."""
    return field(default=default, metadata={"help": help, "repeatable": repeatable})


@dataclass(frozen=True)
class Settings:
    """Every option of the gateway; the field's name, type, default and help are the option's."""

    scripts_dir: str = setting(
        "examples", "folder of the scripts the gateway serves (the scripts root)"
    )
    scripts_remote: str = setting(
        "",
        "a git remote (URL or path) the scripts repository is pushed to after each commit "
        "and pulled from with POST /script-engine/files/pull (docs/versions.md)",
    )
    ip: str = setting("127.0.0.1", "address to listen on; a non-loopback address needs a token")
    port: int = setting(8765, "port to listen on (0 picks a free one)")
    data_dir: str = setting(".vwed", "folder for the gateway's data: kernelspec, SQLite database")
    db_url: str = setting("", "SQLAlchemy database URL (default: SQLite file in the data dir)")
    db_timeout: float = setting(
        5.0,
        "seconds any one database operation may take (connect, statement, each awaited "
        "store call); past it the caller gets 503 STORE_TIMEOUT",
    )
    pool_size: int = setting(2, "number of pre-started kernels kept ready")
    call_timeout: float = setting(30.0, "seconds a route or function call may run before 504")
    boot_timeout: float = setting(60.0, "seconds a script may take to load and run boot()")
    workers: int = setting(0, "worker kernels for task-flow steps (0: the number of CPUs)")
    step_queue: int = setting(100, "steps that may wait for a free worker; more get 503 BUSY")
    async_concurrency: int = setting(
        0, "asynchronous executions that run at once (0: as many as there are step workers)"
    )
    async_queue: int = setting(
        10_000, "asynchronous executions that may wait queued; more get 503 BUSY"
    )
    execution_retention_hours: float = setting(
        72.0, "hours an asynchronous execution's record is kept after it ended"
    )
    step_grace: float = setting(
        5.0, "seconds an interrupted worker has to come back before it is replaced"
    )
    deps_workers: int = setting(
        1, "worker kernels per script environment, for steps of files that declare packages"
    )
    deps_worker_idle: float = setting(
        300.0, "seconds without a step after which an environment's workers are retired"
    )
    restart_limit: int = setting(
        5, "crashes within --restart-window after which a script stays down ('crashed')"
    )
    restart_window: float = setting(60.0, "seconds over which crashes are counted")
    restart_backoff: float = setting(
        0.5, "first delay before restarting a crashed script; doubles each time, 30 s at most"
    )
    watch: bool = setting(False, "reload a running script (without downtime) when its file changes")
    restore: bool = setting(
        True, "start again, at start, the scripts that were running when the gateway stopped"
    )
    drain_timeout: float = setting(10.0, "seconds a stopping gateway waits for calls in flight")
    ha: bool = setting(
        False,
        "active/standby with other gateways on the same PostgreSQL database (--db-url): the "
        "one holding an advisory lock is active, the others answer 503 STANDBY and take over "
        "within seconds when it dies (docs/failover.md)",
    )
    max_in_flight: int = setting(64, "calls in flight per kernel at most; more get 503 BUSY")
    max_kernels: int = setting(0, "script kernels running at most (0: no limit)")
    memory_limit_mb: int = setting(
        0,
        "default per-script memory limit (RSS of each kernel with the processes it started, MiB; 0: none)",
    )
    policy: str = setting(
        "",
        "default policy of scripts started without one: a JSON file with "
        "'network', 'subprocess', 'write' (docs/security.md)",
    )
    # -- quotas (docs/security.md "Quotas") --
    rate_limit: int = setting(
        0,
        "default calls per minute into each script (routes, function calls, steps of its "
        "file), shared by its replicas; past it 429 RATE_LIMITED (0: no limit)",
    )
    rate_limit_burst: int = setting(
        0, "calls a script may take at once under --rate-limit (0: a minute's worth)"
    )
    cpu_quota: float = setting(
        0.0,
        "default CPU quota of each script kernel, in cores (0.5: half a core; 0: none); "
        "held by a cgroup per kernel where the machine allows it",
    )
    kernel_name: str = setting(
        "", "kernelspec to start scripts with (default: the gateway's own 'vwed' spec)"
    )
    fork_server: bool = setting(
        True,
        "fork script kernels from a fork server that has imported the kernel's runtime "
        "(less memory and a faster start per kernel; off: each kernel a fresh interpreter)",
    )
    kernel_user: str = setting(
        "",
        "run kernels as this unprivileged user (the gateway must run as root); "
        "that user cannot read the data directory (docs/security.md)",
    )
    kernel_env: str = setting(
        "",
        "comma-separated names of extra environment variables passed to kernels "
        "(kernels get an allow-listed environment; VWED_* is never passed)",
    )
    auth: bool = setting(True, "require a token (--no-auth: none, only on a loopback address)")
    token: str = setting(
        "",
        "admin token (default: generated at first start in <data-dir>/token); "
        "clients send 'Authorization: token T' or 'Bearer T' (?token=T on WebSockets only)",
    )
    allow_origins: str = setting(
        "",
        "comma-separated browser origins allowed for CORS and WebSockets "
        "(default: none, same origin only; '*' for any)",
    )
    allow_hosts: str = setting(
        "",
        "comma-separated Host names accepted while the gateway listens on loopback (default: "
        "loopback names and addresses only, against DNS rebinding; '*' for any)",
    )
    secrets_key_file: str = setting(
        "",
        "file of the key that encrypts secrets at rest (default: <data-dir>/secrets.key, "
        "made 0600 at first start); VWED_SECRETS_KEY, if set, is the key itself",
    )
    caller_token: str = setting(
        "",
        "caller token for task flows: /script-api, function calls, "
        "events, steps (default: generated in <data-dir>/caller_token)",
    )
    max_timeout: float = setting(
        24 * 3600.0, "largest 'timeout' a call or step may ask for, in seconds"
    )
    max_file_size: int = setting(1024 * 1024, "largest script file accepted, in bytes")
    max_body_size: int = setting(16 * 1024 * 1024, "largest HTTP request body accepted, in bytes")
    fast_http: bool = setting(
        True,
        "parse route and function calls with httptools in the gateway's own HTTP layer, "
        "every other request in Tornado's (off: Tornado's HTTP server serves every connection)",
    )
    busy_poll_us: int = setting(
        300,
        "after a call to a kernel whose answers come within this many microseconds, the "
        "event loop polls instead of sleeping until that much time from the send has "
        "passed (its answer and a caller's next request read without a wake-up; 0: off)",
    )
    log_retention_days: float = setting(30.0, "days of log records kept (0: no age limit)")
    log_retention_records: int = setting(5_000_000, "log records kept at most (0: no limit)")
    log_queue_max: int = setting(
        50_000, "log records waiting for the database at most; more are dropped (counted)"
    )
    log_buffer_mb: int = setting(
        16,
        "MiB of recent log records kept in memory for live subscribers; one that lags further is cut off",
    )
    log_sink: str = setting(
        "",
        "a log destination besides the database, by URL: file:///path/vwed.jsonl, "
        "http(s)://host/hook, syslog://host:514, or a plugin's scheme (repeat the flag, or "
        "comma-separated; docs/extending.md)",
        repeatable=True,
    )
    platform_url: str = setting(
        "", "VWED server for VWED.storage/task/robot (empty: the embedded backend)"
    )
    platform_token: str = setting("", "bearer token for the VWED server")
    smtp_host: str = setting("", "SMTP server for VWED.mail (empty: mail is off)")
    smtp_port: int = setting(25, "SMTP port")
    smtp_user: str = setting("", "SMTP account (empty: no login)")
    smtp_password: str = setting("", "SMTP password (prefer the env var VWED_SMTP_PASSWORD)")
    smtp_from: str = setting("vwed@localhost", "sender address of VWED.mail")
    smtp_tls: str = setting("none", "none, starttls or ssl")
    fast_path: bool = setting(
        True, "send calls over each kernel's fast ZeroMQ channel (off: comm messages)"
    )
    deps_dir: str = setting(
        "",
        "folder of the scripts' package environments and their locks "
        "(default: <data-dir>/environments; docs/dependencies.md)",
    )
    deps_index_url: str = setting(
        "", "package index the scripts' dependencies are resolved from (default: uv's, PyPI)"
    )
    deps_find_links: str = setting(
        "",
        "folders of wheels the scripts' dependencies may come from (repeat the flag, or "
        "comma-separated); each must exist",
        repeatable=True,
    )
    deps_timeout: float = setting(
        300.0, "seconds the resolution and installation of a script's dependencies may take"
    )
    deps_gc_days: float = setting(
        30.0, "days after which an environment no script used is removed (checked daily)"
    )
    debug: bool = setting(False, "include tracebacks in error answers")
    jupyter_url: str = setting(
        "",
        "base URL of the JupyterLab that attaches to this gateway (http or https); the "
        "console links running scripts there (GET /script-engine/whoami tells it)",
    )
    stats_interval: float = setting(
        10.0,
        "seconds between two samples of the series of GET /script-engine/stats "
        "(calls per second, latency, CPU and RSS; one hour is kept in memory)",
    )

    # -- MQTT (VWED.mqtt; kernel_gateway/mqtt_config.py) --
    mqtt_url: str = setting(
        "",
        "MQTT broker of VWED.mqtt: mqtt://host:1883, or mqtts://host:8883 for TLS "
        "(empty: VWED.mqtt is off)",
    )
    mqtt_user: str = setting("", "MQTT account (empty: no login)")
    mqtt_password: str = setting(
        "", "MQTT password (prefer the env var VWED_MQTT_PASSWORD or --mqtt-password-file)"
    )
    mqtt_password_file: str = setting("", "file whose first line is the MQTT password")
    mqtt_ca_file: str = setting(
        "", "PEM file of the CA certificates that verify an mqtts:// broker (default: the system's)"
    )

    def validated(self) -> Settings:
        problems = []
        if not Path(self.scripts_dir).is_dir():
            problems.append(f"scripts_dir {self.scripts_dir!r} is not a directory")
        if not 0 <= self.port <= 65535:
            problems.append(f"port {self.port} is not in 0-65535")
        if self.pool_size < 0:
            problems.append("pool_size must be >= 0")
        if not 0 <= self.busy_poll_us <= 10_000:
            problems.append(f"busy_poll_us must be 0-10000 microseconds ({self.busy_poll_us})")
        if self.workers < 0 or self.step_queue < 0 or self.step_grace <= 0:
            problems.append("workers and step_queue must be >= 0, step_grace > 0")
        if self.async_concurrency < 0 or self.async_queue < 1:
            problems.append("async_concurrency must be >= 0 and async_queue >= 1")
        if not self.execution_retention_hours > 0:
            problems.append("execution_retention_hours must be > 0")
        if self.deps_workers < 1 or not 0 < self.deps_worker_idle < float("inf"):
            problems.append("deps_workers must be >= 1 and deps_worker_idle > 0 seconds")
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
        from ..kernelenv import check_extra_names

        problems.extend(check_extra_names(self.kernel_env_names))
        problems.extend(self._log_sink_problems())
        if self.kernel_user:
            from ..kerneluser import KernelUserError, resolve_kernel_user

            try:
                resolve_kernel_user(self.kernel_user)
            except KernelUserError as exc:
                problems.append(str(exc))
        if self.jupyter_url:
            problems.extend(_check_url("jupyter_url", self.jupyter_url))
        if not 0 < self.stats_interval <= 3600:  # also refuses NaN
            problems.append(
                f"stats_interval must be > 0 and at most 3600 seconds ({self.stats_interval!r})"
            )
        problems.extend(self._deps_problems())
        from ..mqtt_config import mqtt_problems

        problems.extend(mqtt_problems(self))
        problems.extend(self._quota_problems())
        if self.db_url:
            from sqlalchemy.engine import make_url
            from sqlalchemy.exc import ArgumentError

            try:
                make_url(self.db_url)
            except ArgumentError as exc:
                problems.append(f"db_url is not a SQLAlchemy URL: {exc}")
        if self.ha and not self.db_url.startswith("postgresql"):
            problems.append(
                "ha needs a PostgreSQL --db-url (postgresql+psycopg://...): the active gateway "
                "is the one holding a PostgreSQL session advisory lock, which SQLite and MariaDB "
                "do not provide here"
            )
        if problems:
            raise ConfigError("; ".join(problems))
        return self

    def _quota_problems(self) -> list[str]:
        from ..cpuquota import MAX_CORES
        from ..quotas import MAX_CALLS_PER_MINUTE

        problems = []
        for name in ("rate_limit", "rate_limit_burst"):
            if not 0 <= getattr(self, name) <= MAX_CALLS_PER_MINUTE:
                problems.append(f"{name} must be from 0 to {MAX_CALLS_PER_MINUTE}")
        if self.rate_limit_burst and not self.rate_limit:
            problems.append("rate_limit_burst needs rate_limit (calls per minute)")
        if not (self.cpu_quota == 0 or 0.01 <= self.cpu_quota <= MAX_CORES):  # refuses NaN
            problems.append(
                f"cpu_quota must be 0 (none) or from 0.01 to {MAX_CORES:g} cores "
                f"({self.cpu_quota!r})"
            )
        return problems

    @property
    def default_rate_limit(self) -> Any:
        """``--rate-limit`` and ``--rate-limit-burst`` as a ``quotas.RateLimit`` (None: none)."""
        from ..quotas import RateLimit

        if not self.rate_limit:
            return None
        return RateLimit(self.rate_limit, self.rate_limit_burst or self.rate_limit)

    def _deps_problems(self) -> list[str]:
        problems = []
        if not 0 < self.deps_timeout <= self.max_timeout:  # also refuses NaN
            problems.append(
                f"deps_timeout must be > 0 and at most max_timeout ({self.deps_timeout!r})"
            )
        if not 0 < self.deps_gc_days < float("inf"):
            problems.append(f"deps_gc_days must be a number of days > 0 ({self.deps_gc_days!r})")
        for folder in self.deps_find_links_dirs:
            if not Path(folder).is_dir():
                problems.append(f"deps_find_links {folder!r} is not a directory")
        if self.deps_index_url:
            problems.extend(_check_url("deps_index_url", self.deps_index_url))
        return problems

    def _log_sink_problems(self) -> list[str]:
        from ..logs.sinks import SinkError, make_sink

        problems = []
        for url in self.log_sink_urls:
            try:
                make_sink(url)  # built and checked, nothing opened
            except SinkError as exc:
                problems.append(str(exc))
        return problems

    @property
    def log_sink_urls(self) -> list[str]:
        """The ``--log-sink`` URLs."""
        from ..logs.sinks import split_urls

        return split_urls(self.log_sink)

    @property
    def deps_find_links_dirs(self) -> tuple[str, ...]:
        """The ``--deps-find-links`` folders, absolute."""
        parts = (p.strip() for p in self.deps_find_links.split(","))
        return tuple(str(Path(p).resolve()) for p in parts if p)

    @property
    def secrets_key_path(self) -> Path:
        """``--secrets-key-file`` or ``<data-dir>/secrets.key``."""
        return Path(self.secrets_key_file or Path(self.data_dir) / "secrets.key").resolve()

    @property
    def deps_path(self) -> Path:
        """Where the scripts' environments live: ``--deps-dir`` or ``<data-dir>/environments``."""
        return Path(self.deps_dir or Path(self.data_dir) / "environments").resolve()

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


def _check_url(name: str, value: str) -> list[str]:
    """Problems of an http(s) URL setting (none when it is one)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - read to check it
    except ValueError as exc:
        return [f"{name} {value!r} is not a URL: {exc}"]
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [f"{name} must be an http:// or https:// URL with a host ({value!r})"]
    return []


def _is_loopback(ip: str) -> bool:
    if ip in ("localhost", ""):
        return ip == "localhost"
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False
