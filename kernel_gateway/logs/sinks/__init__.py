"""Log sinks: destinations that get a copy of every log record, besides the database.

``--log-sink URL`` (repeatable) names each one; the URL's scheme picks its class in the
entry-point group ``vwed.log_sinks`` (built in: ``file``, ``http``/``https``,
``syslog``; a third party registers its own the same way). Each sink has a bounded
queue and a thread of its own; its drops are counted (``vwed_log_sink_records_dropped``)
and said in a record, as the database's are.

- :mod:`.base`: :class:`LogSink`, the base class a sink implements, and :class:`SinkError`;
- :mod:`.registry`: the lookup of a sink by scheme;
- :mod:`.runner`: one sink's queue and thread;
- :mod:`.fanout`: :class:`SinkSet`, the sinks of a gateway, fed by the log hub;
- :mod:`.file`, :mod:`.http`, :mod:`.syslog`: the built-in sinks.

See docs/extending.md, "Log sinks".
"""

from .base import LogSink, SinkError
from .fanout import SinkSet
from .registry import GROUP, make_sink, split_urls

__all__ = ["GROUP", "LogSink", "SinkError", "SinkSet", "make_sink", "split_urls"]
