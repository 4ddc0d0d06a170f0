"""Finding a sink by its URL's scheme: the entry-point group ``vwed.log_sinks``.

Each entry point is named by a URL scheme and points at a :class:`~.base.LogSink`
subclass (``file = "kernel_gateway.logs.sinks.file:FileSink"``). The built-in sinks are
registered in this project's own ``pyproject.toml`` the same way a third party's are;
:data:`BUILT_IN` is only the fallback of a source tree whose metadata was not
reinstalled since.
"""

from __future__ import annotations

import re
from importlib import import_module
from importlib.metadata import entry_points

from .base import LogSink, SinkError, safe_url

__all__ = ["GROUP", "BUILT_IN", "sink_class", "make_sink", "split_urls"]

GROUP = "vwed.log_sinks"
BUILT_IN = {
    "file": "kernel_gateway.logs.sinks.file:FileSink",
    "http": "kernel_gateway.logs.sinks.http:HttpSink",
    "https": "kernel_gateway.logs.sinks.http:HttpSink",
    "syslog": "kernel_gateway.logs.sinks.syslog:SyslogSink",
}
# a comma that starts another URL (``scheme:``): commas inside a URL are left alone
_NEXT_URL = re.compile(r",\s*(?=[A-Za-z][A-Za-z0-9+.-]*:)")


def split_urls(value: str) -> list[str]:
    """The URLs of a ``--log-sink`` value (the flag repeated is joined by commas)."""
    return [u.strip() for u in _NEXT_URL.split(value) if u.strip()]


def _schemes() -> dict[str, str]:
    found = dict(BUILT_IN)
    for ep in entry_points(group=GROUP):
        found[ep.name.lower()] = ep.value
    return found


def sink_class(scheme: str) -> type[LogSink]:
    """The sink class registered for ``scheme``; a :class:`SinkError` naming the known
    schemes when there is none, or when it fails to load."""
    known = _schemes()
    target = known.get(scheme.lower())
    if target is None:
        raise SinkError(
            f"no log sink for the scheme {scheme!r}: known are {', '.join(sorted(known))} "
            f"(more come from packages registering entry points in {GROUP!r})"
        )
    module, _, attr = target.partition(":")
    try:
        cls = getattr(import_module(module), attr)
    except Exception as exc:
        raise SinkError(f"the log sink {target!r} for {scheme!r} failed to load: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, LogSink)):
        raise SinkError(f"the log sink {target!r} for {scheme!r} is not a LogSink subclass")
    return cls


def make_sink(url: str) -> LogSink:
    """The sink ``url`` names, built and its options checked (nothing opened yet)."""
    scheme, sep, _ = url.partition(":")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        raise SinkError(f"log sink {safe_url(url)!r} is not a URL (scheme://...)")
    sink = sink_class(scheme)(url)
    sink.check_options()
    return sink
