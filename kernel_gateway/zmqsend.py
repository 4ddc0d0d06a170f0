"""Sending a Jupyter message on one of a kernel client's asyncio ZeroMQ sockets
without losing that socket's next wake-up.

``Session.send`` writes through a blocking shadow of a ``zmq.asyncio`` socket. A
ZeroMQ send first processes the socket's pending commands, which clears the
edge-triggered file descriptor the event loop watches; when a reply had just
reached the socket, nothing wakes the task awaiting ``get_msg()`` on it, ever
(the reply stays queued, and no later message re-arms the descriptor). pyzmq's
own asynchronous ``send_multipart`` re-checks the socket's events after sending
and wakes its waiting readers, so every send to a kernel goes through it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import zmq.asyncio
from jupyter_client.session import Session

__all__ = ["send_message"]

log = logging.getLogger("kernel_gateway.zmqsend")


def send_message(
    session: Session,
    socket: zmq.asyncio.Socket,
    msg: dict[str, Any],
    buffers: list[Any] | None = None,
) -> None:
    """Sign and send ``msg`` (a full message dict) on ``socket``.

    Returns at once: the send normally completes here; when the socket's queue is
    full, pyzmq finishes it from the event loop, in order, and a failure is logged.
    """
    frames: list[Any] = session.serialize(msg)
    frames.extend(buffers or ())
    copy = max(len(f) for f in frames) < session.copy_threshold
    done = socket.send_multipart(frames, copy=copy)
    if isinstance(done, asyncio.Future):
        done.add_done_callback(_report)


def _report(done: asyncio.Future[Any]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.error("sending a message to a kernel failed: %s", done.exception())
