"""The base class of a log sink: a destination that gets a copy of every log record.

A sink is found by the scheme of its URL (``--log-sink file:///var/log/vwed.jsonl``) in
the entry-point group ``vwed.log_sinks`` (:mod:`.registry`), built from that URL, and
driven by a :class:`~.runner.SinkRunner`: a bounded queue and a thread of its own, so a
slow or dead sink never slows the gateway's event loop nor the other sinks.

What a sink receives: batches (lists) of log records, oldest first, as dicts
``{id, ts, script_id, run_id, level, source, tag, message, call_id, task_id}``: the very
records the database gets (secret values already written ``***``). They are shared with
the rest of the gateway: read them, never change them.

Which thread calls what: ``__init__`` runs at start on the main thread and must not
touch the outside world (it also runs when the settings are checked); :meth:`open`,
:meth:`send` and :meth:`close` run in the sink's own thread, one at a time.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from ...config.settings import ConfigError

__all__ = ["LogSink", "SinkError", "safe_url"]

T = TypeVar("T", int, float, str, bool)


def safe_url(url: str) -> str:
    """``url`` with its credentials (``user:password@``) and query left out, for messages."""
    return re.sub(r"//[^/?#]*@", "//***@", url.split("?", 1)[0])


class SinkError(ConfigError):
    """A log sink's URL, or the destination it names, cannot be used (a startup error)."""


class LogSink:
    """A log destination, configured from its URL.

    Subclasses read their options in ``__init__`` with :meth:`option` (the URL's query
    parameters; an option no one reads is an error at start) and implement
    :meth:`send`; :meth:`open` and :meth:`close` are optional.

    Options every sink has (read here): ``queue`` (records waiting at most; more are
    dropped and counted, default 10000), ``batch`` (records per :meth:`send` at most,
    default 500), ``flush_timeout`` (seconds the sink may take at the gateway's stop to
    send what is queued, default 5).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.parts = urlsplit(url)
            self.parts.port  # noqa: B018 - read to check it
        except ValueError as exc:
            raise SinkError(f"log sink {safe_url(url)!r} is not a URL: {exc}") from None
        self._options: dict[str, str] = {}
        for key, value in parse_qsl(self.parts.query, keep_blank_values=True):
            if key in self._options:
                raise SinkError(f"log sink {self.name}: option {key!r} is given twice")
            self._options[key] = value
        self.queue_size = self.option("queue", 10_000, minimum=1)
        self.batch_size = self.option("batch", 500, minimum=1)
        self.flush_timeout = self.option("flush_timeout", 5.0, minimum=0.0)
        # set by the runner once the stop's flush time is over: sleeps end at once
        self.abandoned = threading.Event()

    # -- configuration ---------------------------------------------------------------
    @property
    def name(self) -> str:
        """The URL without credentials nor query: how logs and metrics name this sink.
        A web address's path is a hash: webhooks (Slack, Teams, Discord) carry their
        secret in it, and this name goes to logs, records and metric labels."""
        p = self.parts
        host = p.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{p.port}" if p.port is not None else ""
        path = p.path
        if p.scheme in ("http", "https") and path not in ("", "/"):
            path = "/#" + hashlib.sha256(path.encode()).hexdigest()[:8]
        return f"{p.scheme}://{host}{port}{path}"

    def option(self, key: str, default: T, *, minimum: float | None = None) -> T:
        """The query option ``key`` of the URL, of the type of ``default``; a value
        that is not one (or below ``minimum``) is a :class:`SinkError`."""
        raw = self._options.pop(key, None)
        if raw is None:
            return default
        value: Any
        try:
            if isinstance(default, bool):
                if raw.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(raw)
                value = raw.lower() in ("1", "true", "yes", "on")
            else:
                value = type(default)(raw)
        except ValueError:
            kind = type(default).__name__
            raise SinkError(f"log sink {self.name}: {key}={raw!r} is not a {kind}") from None
        if minimum is not None and not value >= minimum:  # also refuses NaN
            raise SinkError(f"log sink {self.name}: {key} must be >= {minimum} ({raw!r})")
        return value  # type: ignore[no-any-return]

    def check_options(self) -> None:
        """Called after ``__init__``: an option no one read is a typo, said at start."""
        if self._options:
            names = ", ".join(sorted(self._options))
            raise SinkError(f"log sink {self.name}: unknown option(s) {names}")

    # -- the work (in the sink's thread) ------------------------------------------------
    def open(self) -> None:
        """Acquire what the sink needs (a file, a socket). Called once, in the sink's
        thread, before the first :meth:`send`; an exception is a startup error.
        Connections to a server that may be down belong in :meth:`send`."""

    def send(self, records: list[dict[str, Any]]) -> None:
        """Deliver one batch. Return when it is delivered; raise when it cannot be (the
        batch is then counted as dropped). Retrying is the sink's own business
        (:meth:`retrying`); it should end when :meth:`sleep` says so."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what :meth:`open` and :meth:`send` acquired; called once, last."""

    # -- helpers --------------------------------------------------------------------
    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds``; False (at once) once the gateway's stop gave up on this
        sink: stop retrying then."""
        return not self.abandoned.wait(seconds)

    def retrying(
        self,
        attempt: Callable[[], None],
        retries: int,
        backoff: float,
        backoff_max: float = 30.0,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
    ) -> None:
        """Run ``attempt`` until it returns, at most ``1 + retries`` times, sleeping
        ``backoff``, then twice as long each time (at most ``backoff_max``) in between;
        the last error is raised."""
        delay = backoff
        for left in range(retries, -1, -1):
            try:
                attempt()
                return
            except retry_on:
                if left == 0 or not self.sleep(delay):
                    raise
            delay = min(backoff_max, delay * 2)
