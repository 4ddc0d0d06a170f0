"""The signatures of the fast channel's recent messages: a message signed right but
seen before is a replay (someone who read the traffic to a kernel on another host
sending a call again), and is refused, as jupyter_client's ``Session`` refuses a
message whose digest it has seen. Every message the gateway sends differs (its id
has a random part per connection and a count), so a legitimate one never repeats."""

from __future__ import annotations

from collections import deque

__all__ = ["SeenDigests", "KEEP"]

KEEP = 65536  # signatures remembered (jupyter_client keeps 2**16 too)


class SeenDigests:
    """The last ``keep`` signatures, oldest forgotten first."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._set: set[bytes] = set()
        self._order: deque[bytes] = deque()

    def fresh(self, signature: bytes) -> bool:
        """True (and remembered) the first time ``signature`` is seen; False after."""
        if signature in self._set:
            return False
        self._set.add(signature)
        self._order.append(signature)
        if len(self._order) > self.keep:
            self._set.discard(self._order.popleft())
        return True

    def __len__(self) -> int:
        return len(self._set)
