"""The kernel end of the ``vwed`` comm: the gateway's calls in, registrations and
logs out (every message is listed in docs/protocol.md).

Threads: ``call``, ``prepare`` and ``boot`` messages are handled on the kernel's
main thread, so a synchronous handler can be interrupted (SIGINT raises
``KeyboardInterrupt`` in it) and coroutine handlers run on the main thread's
event loop, several at once. ``response`` and ``cancel`` messages are sent by the
gateway to a *service subshell* (a Jupyter kernel subshell the gateway creates),
so they are handled on that subshell's thread even while the main thread is
blocked, e.g. in a synchronous ``VWED.function.call`` waiting for its answer.
``progress`` ops are also sent from the progress flusher's thread (``progress.py``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import itertools
import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from . import PROTOCOL_VERSION, __version__
from .context import Context, Link
from .debugsource import ScriptSources
from .dispatch import Calls
from .encoding import ResultNotSerializable, encode_value
from .errors import GatewayUnavailableError, RemoteCallError
from .load import load_script
from .policy import PolicyError
from .prepare import add_site_dirs, install_policy, script_name
from .registrations import Registrations
from .replies import Send, reply_error, reply_ok

__all__ = ["GatewayLink"]

log = logging.getLogger("vwed_kernel")
DEFAULT_REQUEST_TIMEOUT = 60.0


class GatewayLink(Link):
    """The kernel's end of the comm opened by the gateway."""

    def __init__(
        self,
        user_ns: Callable[[], dict[str, Any]],
        registrations: Registrations,
        vwed_provider: Callable[[], Any],
        kernel: Callable[[], Any] = lambda: None,
        sources: ScriptSources | None = None,
    ):
        self._user_ns = user_ns
        self._sources = sources
        self._registrations = registrations
        self._kernel = kernel
        self._fast: Any = None
        self._vwed = vwed_provider
        self._comm: Any = None
        self._service_subshell: str | None = None
        self.loading = False  # a ``load`` op is under way (load.py)
        self._main_thread = threading.main_thread()
        self._pending: dict[str, concurrent.futures.Future[Any]] = {}
        # failures of the script's handlers are logged through the link, as VWED.log is
        self.calls = Calls(
            registrations,
            lambda: self.script_id,
            vwed_provider,
            Context(registrations, self).log,
            progress=self.notify_progress,
            comm=self._send,
        )
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        # what the gateway gave this kernel that its logs must hide: the NAMES of the
        # secrets read (never a value) and whether the MQTT settings (a password) came;
        # a restarted gateway that reattaches asks for them (``registrations``)
        self._secrets_read: set[str] = set()
        self._mqtt_given = False
        self._ops: dict[str, Callable[[dict[str, Any], list[Any]], None]] = {
            "ping": self._op_ping,
            "prepare": self._op_prepare,
            "boot": self._op_boot,
            "load": self._op_load,
            "call": self._op_call,
            "cancel": self._op_cancel,
            "response": self._op_response,
            "registrations": self._op_registrations,
        }

    # -- comm lifecycle -------------------------------------------------------------
    @property
    def attached(self) -> bool:
        return self._comm is not None

    def on_comm_open(self, comm: Any, msg: dict[str, Any]) -> None:
        data = msg.get("content", {}).get("data") or {}
        if self._comm is not None:
            log.warning("a second gateway comm was opened; the newest one wins")
        # ipykernel routes comm replies back to the subshell that last published on
        # the comm; the gateway addresses each message itself (header subshell_id).
        comm._reply_subshell_for = lambda _data, default: default
        self._comm = comm
        self._service_subshell = data.get("service_subshell")
        comm.on_msg(self._on_msg)
        comm.on_close(self._on_close)
        fast_port = self._open_fast_channel() if data.get("fastpath") else None
        self._send(
            {
                # transport "stream": framed messages on a plain socket (fastpath.py)
                # "ops": what the channel carries besides calls (a gateway sends other
                # ops on the comm)
                "fastpath": {"port": fast_port, "transport": "stream", "ops": self._fast.ops}
                if fast_port and self._fast is not None
                else None,
                "op": "hello",
                "pid": os.getpid(),
                "protocol": PROTOCOL_VERSION,
                "version": __version__,
                "python": sys.version.split()[0],
                "service_subshell": self._service_subshell,
            }
        )

    def _open_fast_channel(self) -> int | None:
        """Bind the fast channel next to the kernel's Jupyter sockets (TCP only)."""
        if self._fast is not None:
            self._fast.close()
            self._fast = None
        kernel = self._kernel()
        try:
            from ipykernel.kernelapp import IPKernelApp

            app = IPKernelApp.instance() if IPKernelApp.initialized() else None
            if kernel is None or app is None or app.transport != "tcp":
                return None
            from .fastpath import FastChannel

            ops = {"load": self._load} if "load" in self._ops else {}
            self._fast = FastChannel(kernel, self.calls, app.ip, ops)
            return self._fast.port
        except Exception:
            log.exception("the fast channel could not be opened; calls use the comm")
            return None

    def _on_close(self, msg: dict[str, Any]) -> None:
        self._comm = None
        if self._fast is not None:
            self._fast.close()
            self._fast = None
        for fut in list(self._pending.values()):
            if not fut.done():
                fut.set_exception(GatewayUnavailableError("the gateway closed its connection"))

    def _send(self, data: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        comm = self._comm
        if comm is not None:
            comm.send(data, buffers=buffers)

    def _on_msg(self, msg: dict[str, Any]) -> None:
        data = msg.get("content", {}).get("data") or {}
        buffers = msg.get("buffers") or []
        op = data.get("op")
        handler = self._ops.get(op) if isinstance(op, str) else None
        if handler is None:
            log.warning("unknown vwed op %r", op)
            if data.get("id"):
                self._reply_error(data["id"], ValueError(f"unknown op {op!r}"), "protocol")
            return
        handler(data, buffers)

    # -- replies ----------------------------------------------------------------------
    def _reply_ok(self, call_id: str, fields: dict[str, Any], buffers: list[bytes]) -> None:
        reply_ok(self._send, call_id, fields, buffers)

    def _reply_error(self, call_id: str, exc: BaseException, kind: str) -> None:
        reply_error(self._send, call_id, exc, kind)

    # -- ops from the gateway -----------------------------------------------------------
    def _op_ping(self, data: dict[str, Any], buffers: list[Any]) -> None:
        self._reply_ok(data["id"], {"encoding": "json"}, [b'"pong"'])

    def _op_prepare(self, data: dict[str, Any], buffers: list[Any]) -> None:
        try:
            self.prepare(data)
        except PolicyError as exc:
            self._reply_error(data["id"], exc, "policy")
            return
        self._reply_ok(data["id"], {"encoding": "json"}, [b"null"])

    def prepare(self, data: dict[str, Any]) -> None:
        """Before the script's source runs: name the script, set ``__file__``, install
        its policy (``PolicyError`` when that cannot be done)."""
        self.script_id = data.get("script_id")
        self.replica = int(data.get("replica") or 0)
        self.replicas = int(data.get("replicas") or 1)
        ns = self._user_ns()
        path = data.get("file")
        if path:
            ns["__file__"] = path
            folder = os.path.dirname(path)
            # Not the scripts root itself (a script at the root): its modules come
            # through the gateway, confined to it (vwed_kernel/importer.py).
            at_root = "/" not in str(data.get("path") or "/")
            if folder and not at_root and os.path.isdir(folder) and folder not in sys.path:
                sys.path.insert(0, folder)
        add_site_dirs(data.get("site") or [])
        self._registrations.clear()
        # module plugins: the script's own environment may hold some (its site dirs, just
        # added); the failures found since the kernel started go to the script's log now
        plugins = getattr(self._vwed(), "_plugin_loader", None)
        if plugins is not None:
            plugins.discover()
            plugins.report()
        if self._sources is not None and path:
            self._sources.begin(script_name(data, path), path)
        if data.get("policy") is not None:
            folder = data.get("folder") or (os.path.dirname(path) if path else None)
            install_policy(data["policy"], folder, self._vwed(), lambda: self.attached, self._send)

    def _op_boot(self, data: dict[str, Any], buffers: list[Any]) -> None:
        self.boot(data["id"], self._send)

    def _op_load(self, data: dict[str, Any], buffers: list[Any]) -> None:
        """``prepare``, the script's code and ``boot`` in one message (load.py)."""
        load_script(self, self._kernel(), data, self._send)

    def _load(self, data: dict[str, Any], buffers: list[Any], send: Send) -> None:
        """The same, from the fast channel: answered there."""
        load_script(self, self._kernel(), data, send)

    def boot(self, call_id: str, send: Send) -> None:
        """Call the script's ``boot()``; its answer (the registrations) goes to ``send``."""
        if self._sources is not None:
            self._sources.end()
        boot = self._user_ns().get("boot")
        if not callable(boot):
            missing = NameError("the script defines no boot() function")
            reply_error(send, call_id, missing, "boot_missing")
            return
        vwed = self._vwed()

        async def after(value: Any) -> Any:
            await value
            return vwed.registrations()

        def produce() -> Any:
            value = boot()
            return after(value) if inspect.isawaitable(value) else vwed.registrations()

        self.calls.run(call_id, "boot", produce, send)

    def _op_registrations(self, data: dict[str, Any], buffers: list[Any]) -> None:
        """What this kernel has registered now (what ``boot`` answered, with the
        changes made since): a gateway that reattaches to a running kernel (a remote
        one, after its restart) routes from it without running ``boot()`` again."""
        snapshot = {**self._vwed().registrations(), "given": self.given()}
        self._reply_ok(data["id"], {"encoding": "json"}, [json.dumps(snapshot).encode()])

    def given(self) -> dict[str, Any]:
        """What the gateway gave this kernel that must be redacted from its logs: the
        names of the secrets read and whether it got the MQTT settings (no values)."""
        with self._lock:
            return {"secrets": sorted(self._secrets_read), "mqtt": self._mqtt_given}

    def _record_given(self, service: str, payload: dict[str, Any]) -> None:
        if service == "secret.get":
            with self._lock:
                self._secrets_read.add(str(payload.get("name", "")))
        elif service == "mqtt.config":
            self._mqtt_given = True

    def _op_call(self, data: dict[str, Any], buffers: list[Any]) -> None:
        self.calls.call(data, buffers, self._send)

    def _op_cancel(self, data: dict[str, Any], buffers: list[Any]) -> None:
        # On the service subshell's thread; answered (with an id) with what it did
        state = self.calls.cancel(str(data.get("target", "")))
        if data.get("id"):
            self._reply_ok(data["id"], {"encoding": "json"}, [json.dumps(state).encode()])

    def _op_response(self, data: dict[str, Any], buffers: list[Any]) -> None:
        fut = self._pending.pop(data.get("id", ""), None)
        if fut is None or fut.done():
            return
        if data.get("ok"):
            value = data.get("value")
            if buffers:
                value = json.loads(bytes(buffers[0]))
            fut.set_result(value)
        else:
            err = data.get("error") or {}
            fut.set_exception(
                RemoteCallError(
                    err.get("message", "request failed"), err.get("code", ""), err.get("type", "")
                )
            )

    # -- kernel -> gateway ----------------------------------------------------------
    def notify_register(self, kind: str, description: dict[str, Any]) -> None:
        if not self.loading:  # a load's registrations are in its answer (load.py)
            self._send({"op": "register", "kind": kind, "item": description})

    def notify_unregister(self, kind: str, description: dict[str, Any]) -> None:
        if not self.loading:
            self._send({"op": "unregister", "kind": kind, "item": description})

    def notify_log(self, level: str, tag: str, message: str) -> bool:
        if self._comm is None:
            return False
        self._send({"op": "log", "level": level, "tag": tag, "message": message})
        return True

    def notify_progress(self, data: dict[str, Any]) -> bool:
        """A call's ``progress`` op (``progress.py``); from the call's thread or the
        progress flusher's. ipykernel's comm publishes through the IOPub thread's
        queue, which any thread may feed; the op names its call, so the parent
        header it goes out with does not matter."""
        if self._comm is None:
            return False
        self._send(data)
        return True

    def can_request(self) -> bool:
        if self._comm is None:
            return False
        thread = threading.current_thread()
        if self._service_subshell is not None:
            # the service subshell's thread delivers the answers: it must not wait for one
            return thread.name != f"subshell-{self._service_subshell}"
        return thread is not self._main_thread

    def _new_request(
        self, service: str, payload: dict[str, Any]
    ) -> tuple[str, concurrent.futures.Future[Any]]:
        if self._comm is None:
            raise GatewayUnavailableError(f"{service!r} needs a gateway, and none is attached")
        req_id = f"k{os.getpid()}-{next(self._ids)}"
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._pending[req_id] = fut
        try:
            body = encode_value(payload)
        except ResultNotSerializable as exc:
            self._pending.pop(req_id, None)
            raise TypeError(f"arguments of {service!r} are not JSON-serializable: {exc}") from None
        self._send({"op": "request", "id": req_id, "service": service}, [body])
        return req_id, fut

    def notify(self, service: str, payload: dict[str, Any]) -> None:
        if self._comm is None:
            raise GatewayUnavailableError(f"{service!r} needs a gateway, and none is attached")
        try:
            body = encode_value(payload)
        except ResultNotSerializable as exc:
            raise TypeError(f"data of {service!r} is not JSON-serializable: {exc}") from None
        self._send({"op": "request", "id": "", "service": service, "noreply": True}, [body])

    def request(self, service: str, payload: dict[str, Any], timeout: float | None = None) -> Any:
        if not self.can_request():
            raise GatewayUnavailableError(
                f"{service!r} cannot wait for the gateway on the main thread of this kernel "
                "(no service subshell); use the async form"
            )
        req_id, fut = self._new_request(service, payload)
        wait = timeout if timeout is not None else DEFAULT_REQUEST_TIMEOUT
        try:
            answer = fut.result(wait)
            self._record_given(service, payload)
            return answer
        except concurrent.futures.TimeoutError:
            self._record_given(service, payload)  # its answer may have come too late
            raise RemoteCallError(
                f"{service} got no answer within {wait:g} s", "CALL_TIMEOUT"
            ) from None
        finally:
            self._pending.pop(req_id, None)

    async def arequest(
        self, service: str, payload: dict[str, Any], timeout: float | None = None
    ) -> Any:
        req_id, fut = self._new_request(service, payload)
        wait = timeout if timeout is not None else DEFAULT_REQUEST_TIMEOUT
        try:
            answer = await asyncio.wait_for(asyncio.wrap_future(fut), wait)
            self._record_given(service, payload)
            return answer
        except asyncio.TimeoutError:
            self._record_given(service, payload)  # its answer may have come too late
            raise RemoteCallError(
                f"{service} got no answer within {wait:g} s", "CALL_TIMEOUT"
            ) from None
        finally:
            self._pending.pop(req_id, None)
