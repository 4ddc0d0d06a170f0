"""``file:///var/log/vwed/vwed.jsonl``: records as JSON lines, rotated by size.

Options: ``max_bytes`` (rotate before the file would grow past it; 0, the default:
never), ``keep`` (rotated files kept: ``vwed.jsonl.1`` the newest up to
``vwed.jsonl.<keep>``, default 5). The path must be absolute and its folder must
exist; files are created 0600 (records may hold what scripts printed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote

from .base import LogSink, SinkError

__all__ = ["FileSink"]


class FileSink(LogSink):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.max_bytes = self.option("max_bytes", 0, minimum=0)
        self.keep = self.option("keep", 5, minimum=1)
        host, raw = self.parts.netloc, unquote(self.parts.path)
        if host not in ("", "localhost"):
            raise SinkError(
                f"log sink {url!r}: a file URL names an absolute path, file:///path "
                f"(three slashes); {host!r} would be a host (a relative path is refused)"
            )
        if not raw or not os.path.isabs(raw) or raw.endswith("/"):
            raise SinkError(f"log sink {url!r}: the path must be an absolute file path")
        self.path = Path(raw)
        folder = self.path.parent
        if not folder.is_dir():
            raise SinkError(f"log sink {url!r}: the folder {str(folder)!r} does not exist")
        if self.path.is_dir():
            raise SinkError(f"log sink {url!r}: {raw!r} is a folder")
        self._file: IO[bytes] | None = None
        self._size = 0

    def open(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise SinkError(f"log sink {self.name}: cannot open the file: {exc}") from None
        self._file = os.fdopen(fd, "ab")
        self._size = os.fstat(fd).st_size

    def send(self, records: list[dict[str, Any]]) -> None:
        chunk: list[bytes] = []
        pending = 0
        for record in records:
            line = json.dumps(record, ensure_ascii=False, default=str).encode() + b"\n"
            if self.max_bytes and self._size + pending + len(line) > self.max_bytes:
                if chunk:
                    self._write(chunk)
                    chunk, pending = [], 0
                if self._size:
                    self._rotate()
            chunk.append(line)
            pending += len(line)
        if chunk:
            self._write(chunk)

    def _write(self, lines: list[bytes]) -> None:
        if self._file is None:  # a rotation that failed to reopen: try again now
            self.open()
        assert self._file is not None
        data = b"".join(lines)
        self._file.write(data)
        self._file.flush()
        self._size += len(data)

    def _rotate(self) -> None:
        """``path`` becomes ``path.1``, ``path.1`` ``path.2``..., the oldest past ``keep``
        is removed; a new ``path`` is started."""
        if self._file is not None:
            self._file.close()
            self._file = None
        base = str(self.path)
        for n in range(self.keep - 1, 0, -1):
            older = f"{base}.{n}"
            if os.path.exists(older):
                os.replace(older, f"{base}.{n + 1}")
        os.replace(base, f"{base}.1")
        self.open()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
