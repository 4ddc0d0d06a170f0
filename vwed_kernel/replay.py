"""Replays on the fast channel: a message signed right but sent again as it was
(someone who read the traffic to a kernel on another host sending a call again) is
refused, as jupyter_client's ``Session`` refuses a message whose digest it has seen.

How, in little memory: the gateway numbers the messages of each connection (``cid``, a
random name of the connection, and ``seq``, 1, 2, 3...; both inside the signed header,
so they cannot be changed). The kernel keeps, per connection name, the last number it
took, and refuses a message whose number is not above it: a replay, on the same
connection or a new one. The names of the last ``STREAMS`` connections are kept (a
gateway opens one per kernel and bridge). A message without them (a gateway older than
this) falls back to the signatures of the last ``KEEP`` such messages.

One guard per kernel process (``GUARD``): a new fast channel (a comm opened again, a
gateway restarted) keeps what the old one saw.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

__all__ = ["ReplayGuard", "GUARD", "STREAMS", "KEEP"]

STREAMS = 256  # connection names remembered, the least recently used forgotten first
KEEP = 4096  # signatures of messages without a number remembered (older gateways)


class ReplayGuard:
    def __init__(self, streams: int = STREAMS, keep: int = KEEP) -> None:
        self.streams = streams
        self.keep = keep
        self._last: OrderedDict[str, int] = OrderedDict()  # cid -> last seq taken
        self._seen: set[bytes] = set()
        self._order: deque[bytes] = deque()

    def fresh(self, data: dict[str, Any], signature: bytes) -> bool:
        """True (and remembered) for a message not seen before; False for a replay."""
        cid, seq = data.get("cid"), data.get("seq")
        if isinstance(cid, str) and type(seq) is int:
            last = self._last.get(cid)
            if last is not None and seq <= last:
                return False
            self._last[cid] = seq
            self._last.move_to_end(cid)
            if len(self._last) > self.streams:
                self._last.popitem(last=False)
            return True
        if signature in self._seen:
            return False
        self._seen.add(signature)
        self._order.append(signature)
        if len(self._order) > self.keep:
            self._seen.discard(self._order.popleft())
        return True


GUARD = ReplayGuard()
