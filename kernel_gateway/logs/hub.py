"""The log hub: makes records, keeps the newest in memory, fans them out to live
subscribers and queues them for the database (``StoreService``) and for the log sinks
(``--log-sink``: :mod:`.sinks`)."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from ..store.logquery import LogQuery
from ..store.service import StoreService
from .ids import IdBlocks
from .records import LEVELS, StreamJoiner, make_record, split_message, strip_ansi
from .redact import Redactor
from .sinks import SinkSet
from .subscribers import LogFilter, Subscriber

__all__ = ["LogHub"]

log = logging.getLogger("kernel_gateway.logs")
_py = logging.getLogger("vwed.script")


class LogHub:
    def __init__(
        self,
        db: StoreService | None = None,
        *,
        ring_bytes: int = 16 * 1024 * 1024,
        ring_records: int = 100_000,
        sink_urls: Sequence[str] = (),
    ) -> None:
        self.db = db
        # every record goes to these too, each through a queue and thread of its own
        self.sinks = SinkSet(sink_urls, on_drop=self._sink_dropped)
        self.ring_bytes = ring_bytes
        self.ring_records = ring_records
        self._ids = IdBlocks(
            db.reserve_ids if db is not None else None,
            db.id_block if db is not None else 10_000,
        )
        self.last_id = 0
        self._ring: deque[dict[str, Any]] = deque()
        self._ring_size = 0
        self._subscribers: set[Subscriber] = set()
        self._runs: dict[str, int] = {}
        self._held: dict[str, list[tuple[Any, ...]]] = {}  # records waiting for a run id
        self._joiners: dict[str, StreamJoiner] = {}
        self._kernel_scripts: dict[str, str | None] = {}
        self._call_tasks: OrderedDict[str, str | None] = OrderedDict()
        self._call_scripts: dict[str, str] = {}
        # secret values kernels were given, written *** in their records (secrets/vault.py)
        self.redactor = Redactor()
        # told of every record that belongs to a call (its output, streamed to whoever
        # follows the call: executions/watchers.py)
        self.on_call_record: Callable[[dict[str, Any]], None] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.db is not None:
            first, last = await self.db.open(
                on_drop=self._dropped,
                on_notice=lambda level, message: self.engine(None, level, message),
            )
            self._ids.start(first, last)
            self.last_id = first - 1
            for level, message in self.db.notices:
                self.engine(None, level, message)
            self.db.notices.clear()
        await self.sinks.start()
        self._task = asyncio.ensure_future(self._partial_lines())

    async def close(self) -> None:
        for kernel_id in list(self._joiners):
            self._drain(kernel_id)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception:  # it had stopped before: partial lines went unsaid since
                log.exception("the flusher of partial lines had failed")
        await self.sinks.close()  # each within its flush time; before the database's flush
        if self.db is not None:
            reserved = self._ids.reserved_top
            await self.db.close((reserved, self.last_id) if reserved is not None else None)

    # -- making records ------------------------------------------------------------
    def run_pending(self, script_id: str) -> None:
        """The run of ``script_id`` is being recorded: its records wait for the run's id
        (``run_started`` sends them on), so each one carries it."""
        self._held.setdefault(script_id, [])

    def run_started(self, script_id: str, run_id: int | None) -> None:
        """The run's id (None: it could not be recorded); the records held meanwhile go."""
        if run_id is not None:
            self._runs[script_id] = run_id
        for args in self._held.pop(script_id, []):
            self.emit(*args)

    def note_call(self, call_id: str, task_id: str | None, script_id: str | None = None) -> None:
        """Remember a call's task id (and, for a step in a shared worker, the script
        it runs), so its output, which may arrive after its answer, is attributed."""
        self._call_tasks[call_id] = task_id
        if script_id is not None:
            self._call_scripts[call_id] = script_id
        if len(self._call_tasks) > 20_000:
            old, _ = self._call_tasks.popitem(last=False)
            self._call_scripts.pop(old, None)

    def emit(
        self,
        script_id: str | None,
        level: str,
        source: str,
        tag: str,
        message: str,
        call_id: str | None = None,
        task_id: str | None = None,
        kernel_id: str | None = None,
    ) -> None:
        """A record (split if long); ``kernel_id``: the kernel whose output it is, so the
        secret values that kernel was given are redacted."""
        held = self._held.get(script_id or "") if self._held else None
        if held is not None:  # its run is being recorded (run_pending)
            held.append((script_id, level, source, tag, message, call_id, task_id, kernel_id))
            return
        if call_id is not None:
            task_id = task_id or self._call_tasks.get(call_id)
            script_id = self._call_scripts.get(call_id, script_id)
        if self.redactor:
            message = self.redactor.redact(message, kernel_id, script_id)
        run_id = self._runs.get(script_id or "")
        sinks = self.sinks if self.sinks.runners else None
        for piece in split_message(message):
            record = make_record(
                self._ids.take(), script_id, run_id, level, source, tag, piece, call_id, task_id
            )
            self.last_id = record["id"]
            self._keep(record)
            if self.db is not None:
                self.db.add_log(record)
            if sinks is not None:
                sinks.add(record)
            if call_id is not None and self.on_call_record is not None:
                self.on_call_record(record)
        for sub in self._subscribers:
            sub.wake.set()
        if source == "engine":
            _py.log(LEVELS.get(level, 20), "[%s] %s", script_id or "-", message)
        elif _py.isEnabledFor(logging.DEBUG):
            _py.debug("[%s] %s%s", script_id or "-", f"{tag}: " if tag else "", message)

    def engine(self, script_id: str | None, level: str, message: str) -> None:
        """A lifecycle record: started, booted, stopped, died, restarted, dropped lines."""
        self.emit(script_id, level, "engine", "engine", message)

    def structured(
        self,
        script_id: str | None,
        data: dict[str, Any],
        call_id: str | None,
        kernel_id: str | None = None,
    ) -> None:
        """A ``VWED.log`` line: level and tag as the script gave them."""
        level = str(data.get("level", "INFO")).upper()
        if call_id not in self._call_tasks:
            call_id = None  # the parent was not a call (boot, an attached notebook, ...)
        self.emit(
            script_id,
            level if level in LEVELS else "INFO",
            "vwed",
            str(data.get("tag", ""))[:128],
            str(data.get("message", "")),
            call_id,
            kernel_id=kernel_id,
        )

    def on_iopub(self, kernel: Any, msg: dict[str, Any]) -> None:
        kind = msg.get("msg_type")
        if kind not in ("stream", "error"):
            return
        content = msg.get("content", {})
        parent = (msg.get("parent_header") or {}).get("msg_id")
        call_id = parent if parent in self._call_tasks else None
        if kind == "stream":
            name = "stderr" if content.get("name") == "stderr" else "stdout"
            self._kernel_scripts[kernel.kernel_id] = kernel.script_id
            joiner = self._joiners.setdefault(kernel.kernel_id, StreamJoiner())
            for who, text in joiner.feed(name, call_id, str(content.get("text", ""))):
                self._stream_record(kernel.script_id, name, who, text, kernel.kernel_id)
        else:
            tb = strip_ansi("\n".join(content.get("traceback") or []))
            self.emit(
                kernel.script_id,
                "ERROR",
                "error",
                "",
                tb or f"{content.get('ename')}: {content.get('evalue')}",
                call_id,
                kernel_id=kernel.kernel_id,
            )

    def _stream_record(
        self,
        script_id: str | None,
        stream: str,
        call_id: str | None,
        text: str,
        kernel_id: str | None = None,
    ) -> None:
        level = "WARNING" if stream == "stderr" else "INFO"
        self.emit(script_id, level, stream, "", text, call_id, kernel_id=kernel_id)

    def kernel_gone(self, kernel: Any) -> None:
        """Emit what is left of a kernel's partial lines."""
        self._drain(kernel.kernel_id)
        self.redactor.kernel_gone(kernel.kernel_id)

    def _drain(self, kernel_id: str) -> None:
        joiner = self._joiners.pop(kernel_id, None)
        script_id = self._kernel_scripts.pop(kernel_id, None)
        if joiner is not None:
            for stream, call_id, text in joiner.drain():
                self._stream_record(script_id, stream, call_id, text, kernel_id)

    async def _partial_lines(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            for kernel_id, joiner in list(self._joiners.items()):
                for stream, call_id, text in joiner.expired():
                    self._stream_record(
                        self._kernel_scripts.get(kernel_id), stream, call_id, text, kernel_id
                    )

    def _dropped(self, count: int, first: float, last: float) -> None:
        def iso(ts: float) -> str:
            return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")

        self.engine(
            None,
            "WARNING",
            f"{count} log records were not stored (the database queue was "
            f"full) between {iso(first)} and {iso(last)}",
        )

    def _sink_dropped(self, sink: str, count: int, first: float, last: float) -> None:
        def iso(ts: float) -> str:
            return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")

        self.engine(
            None,
            "WARNING",
            f"{count} log records were not sent to the log sink {sink} (its queue was "
            f"full, or it failed) between {iso(first)} and {iso(last)}",
        )

    def _keep(self, record: dict[str, Any]) -> None:
        """Add to the ring; evict the oldest past its bounds, cutting off subscribers
        that had not been through them yet."""
        ring = self._ring
        ring.append(record)
        self._ring_size += len(record["message"]) + 200
        while len(ring) > 1 and (
            self._ring_size > self.ring_bytes or len(ring) > self.ring_records
        ):
            old = ring.popleft()
            self._ring_size -= len(old["message"]) + 200
            for sub in self._subscribers:
                if sub.cursor < old["id"]:
                    sub.overflowed.set()

    def after(self, cursor: int) -> list[dict[str, Any]]:
        """Records with an id above ``cursor``, oldest first (from the ring)."""
        out: list[dict[str, Any]] = []
        for record in reversed(self._ring):
            if record["id"] <= cursor:
                break
            out.append(record)
        out.reverse()
        return out

    # -- subscribers ---------------------------------------------------------------
    def subscribe(self, flt: LogFilter) -> Subscriber:
        sub = Subscriber(flt, self.last_id)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def tail(self, flt: LogFilter, count: int, up_to: int) -> list[dict[str, Any]]:
        """The newest ``count`` records matching ``flt`` with an id <= ``up_to``, oldest first."""
        if count <= 0:
            return []
        found = [r for r in reversed(self._ring) if r["id"] <= up_to and flt.matches(r)][:count]
        oldest_in_ring = self._ring[0]["id"] if self._ring else up_to + 1
        if len(found) < count and self.db is not None and oldest_in_ring > 1:
            # older than the ring: long since handed to the writer, so in the database
            older = await self.db.query_logs(
                LogQuery(
                    script_id=flt.script_id,
                    min_level=flt.min_level or None,
                    tag=flt.tag,
                    cursor=oldest_in_ring,
                    newest_first=True,
                    limit=count - len(found),
                )
            )
            found.extend(older)
        return list(reversed(found))
