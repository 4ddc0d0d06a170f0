"""Task-flow steps in a worker kernel: run a function of a script file, or the
whole file (``RUN``, the old runner's convention), with output captured.

Modules are cached by ``(path, mtime, size)``: a file's import-time side effects
happen once per worker per version of the file, and an edited file is loaded
again. The gateway sends the source only when the worker does not have that
version (docs/protocol.md, "Steps").

Every answer, ok or failed, carries the step's ``usage`` (``usage.py``): the
worker's CPU time and peak memory during the step.
"""

from __future__ import annotations

import builtins
import contextvars
import inspect
import io
import json
import os
import sys
import tempfile
import types
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from . import importer, progress
from .calling import BindError, bind_arguments
from .replies import Send, error_payload, reply_error
from .usage import Usage

__all__ = ["StepRunner", "StepFailed"]

MAX_CACHED = 64
_capture: contextvars.ContextVar[tuple[io.StringIO, io.StringIO] | None] = contextvars.ContextVar(
    "vwed_step_capture", default=None
)


class StepFailed(Exception):
    """A non-zero ``SystemExit`` of a ``RUN`` script."""

    def __init__(self, message: str, exit_code: Any = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _Tee:
    """Stands in for ``sys.stdout``/``sys.stderr``: writes go to the kernel's stream as
    always, and also to the capture buffer of the step running in this context."""

    def __init__(self, stream: Any, index: int) -> None:
        self._stream = stream
        self._index = index

    def write(self, text: str) -> int:
        captured = _capture.get()
        if captured is not None:
            captured[self._index].write(text)
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _install_tee() -> None:
    if not isinstance(sys.stdout, _Tee):
        sys.stdout = _Tee(sys.stdout, 0)  # type: ignore[assignment]
    if not isinstance(sys.stderr, _Tee):
        sys.stderr = _Tee(sys.stderr, 1)  # type: ignore[assignment]


Run = Callable[[str, str, Callable[[], Any], Send], None]


class StepRunner:
    """Runs ``step`` calls: ``run`` is the call runner's (``dispatch.Calls.run``), so a
    step is run, cancelled and answered like any other call."""

    def __init__(self, run: Run, vwed: Callable[[], Any]) -> None:
        self._run = run
        self._vwed = vwed
        self._modules: OrderedDict[tuple[Any, ...], types.ModuleType] = OrderedDict()
        self._code: OrderedDict[tuple[Any, ...], types.CodeType] = OrderedDict()

    def run(self, data: dict[str, Any], send: Send) -> None:
        call_id = data["id"]
        key = tuple(data.get("key") or ())
        modules = data.get("modules")
        if isinstance(modules, dict) and modules.get("drop"):
            self.drop_modules(modules.get("missing") or [])
        mode = data.get("mode", "SCRIPT")
        _install_tee()
        usage = Usage()  # loading the file is part of the step
        out, err = io.StringIO(), io.StringIO()
        answer = _wrap_errors(send, out, err, usage, progress.CURRENT.get())
        token = _capture.set((out, err))
        try:
            prepared = (
                self._prepare_run(data, key)
                if mode == "RUN"
                else self._prepare_function(data, key, answer)
            )
            if prepared is None:
                return
            produce: Callable[[], Any] = prepared
        except _CacheMiss:
            reply_error(
                send, call_id, LookupError("the worker does not have this version"), "cache_miss"
            )
            return
        except BaseException as exc:  # the module raised while loading
            self._finish_error(call_id, exc, answer)
            return
        finally:
            _capture.reset(token)

        def step() -> Any:
            token = _capture.set((out, err))
            try:
                value = produce()
            finally:
                _capture.reset(token)
            if hasattr(value, "__await__"):
                return _captured(value, out, err, usage)
            return _package(value, out, err, usage)

        self._run(call_id, "step", step, answer)

    def drop_modules(self, missing: list[str]) -> None:
        """A module of the scripts root changed: drop every root module and every step
        module loaded so far, so this step imports them fresh (the gateway sends the step
        source again); forget the ``missing`` names, which now exist."""
        importer.drop(str(name) for name in missing)
        self._modules.clear()
        self._code.clear()

    def _finish_error(self, call_id: str, exc: BaseException, answer: Send) -> None:
        answer(
            {
                "op": "result",
                "id": call_id,
                "ok": False,
                "error": error_payload(
                    exc, "interrupted" if isinstance(exc, KeyboardInterrupt) else "handler"
                ),
            },
            None,
        )

    # -- SCRIPT / SET_TASK_VARIABLES: a function of the file -------------------------------
    def _module(self, data: dict[str, Any], key: tuple[Any, ...]) -> types.ModuleType:
        module = self._modules.get(key)
        if module is not None:
            self._modules.move_to_end(key)
            return module
        source = data.get("source")
        if source is None:
            raise _CacheMiss()
        path = data["file"]
        name = "vwed_step_" + os.path.splitext(os.path.basename(path))[0].replace("-", "_")
        module = types.ModuleType(name)
        module.__file__ = path
        module.__dict__["VWED"] = self._vwed()
        exec(compile(source, path, "exec"), module.__dict__)  # noqa: S102 - the script is the product
        # drop older versions of the same file
        for old in [k for k in self._modules if k[:1] == key[:1]]:
            del self._modules[old]
        self._modules[key] = module
        while len(self._modules) > MAX_CACHED:
            self._modules.popitem(last=False)
        return module

    def _prepare_function(
        self, data: dict[str, Any], key: tuple[Any, ...], send: Send
    ) -> Callable[[], Any] | None:
        module = self._module(data, key)
        name = data.get("function")
        func = _step_function(module, name)
        if func is None:
            available = sorted(
                n for n, v in vars(module).items() if _is_step_function(module, n, v)
            )
            send(
                {
                    "op": "result",
                    "id": data["id"],
                    "ok": False,
                    "error": {
                        "type": "AttributeError",
                        "kind": "function_missing",
                        "available": available,
                        "message": f"{data.get('file')} has no function {name!r}",
                        "traceback": "",
                    },
                },
                None,
            )
            return None
        try:
            args, kwargs = bind_arguments(func, data.get("args"))
        except (BindError, RecursionError, MemoryError, ValueError) as exc:
            send(
                {
                    "op": "result",
                    "id": data["id"],
                    "ok": False,
                    "error": error_payload(exc, "arguments"),
                },
                None,
            )
            return None
        return lambda: func(*args, **kwargs)

    # -- RUN: the whole file as __main__ ----------------------------------------------------
    def _prepare_run(self, data: dict[str, Any], key: tuple[Any, ...]) -> Callable[[], Any]:
        code = self._code.get(key)
        if code is None:
            source = data.get("source")
            if source is None:
                raise _CacheMiss()
            code = compile(source, data["file"], "exec")
            self._code[key] = code
            while len(self._code) > MAX_CACHED:
                self._code.popitem(last=False)
        path = data["file"]
        variables = data.get("args")
        if not isinstance(variables, dict):
            variables = {} if variables is None else {"args": variables}
        vwed = self._vwed()

        def run_main() -> Any:
            namespace: dict[str, Any] = {
                "__name__": "__main__",
                "__file__": path,
                "__builtins__": builtins,
                "variables": variables,
                "VWED": vwed,
            }
            fd, var_file = tempfile.mkstemp(prefix="vwed-vars-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(variables, f, ensure_ascii=False)
            saved_argv = sys.argv
            sys.argv = [path, "--variables-file", var_file]
            try:
                try:
                    exec(code, namespace)  # noqa: S102 - the script is the product
                except SystemExit as exc:
                    if exc.code not in (None, 0):
                        raise StepFailed(
                            f"the script exited with code {exc.code}", exc.code
                        ) from None
                execute = namespace.get("execute")
                if callable(execute):
                    return execute()
                return _NO_RESULT
            finally:
                sys.argv = saved_argv
                os.unlink(var_file)

        return run_main


_NO_RESULT = object()


class _CacheMiss(Exception):
    pass


def _is_step_function(module: types.ModuleType, name: str, value: Any) -> bool:
    """Whether a caller may run ``name``: a public function *defined in* the step file.

    Security: a step's ``function_name`` comes from a caller token. A plain ``getattr``
    would reach anything the module holds: a name it imported (``check_output``), or the
    module's own ``__getattribute__``/``__setattr__`` (read or rewrite any global). Only
    functions written in the file qualify (``functools.wraps`` decorations keep their
    ``__module__``, so decorated functions still do); classes, instances, imports, dunder and
    underscore names do not."""
    if not name or name.startswith("_") or not name.isidentifier():
        return False
    if not (inspect.isfunction(value) or hasattr(value, "__wrapped__")) or isinstance(value, type):
        return False
    return callable(value) and getattr(value, "__module__", None) == module.__name__


def _step_function(module: types.ModuleType, name: Any) -> Callable[..., Any] | None:
    """The step function ``name`` of ``module`` (see ``_is_step_function``), else None."""
    if not isinstance(name, str):
        return None
    value = vars(module).get(name)
    return value if _is_step_function(module, name, value) else None


async def _captured(awaitable: Any, out: io.StringIO, err: io.StringIO, usage: Usage) -> Any:
    token = _capture.set((out, err))
    try:
        value = await awaitable
    finally:
        _capture.reset(token)
    return _package(value, out, err, usage)


def _package(value: Any, out: io.StringIO, err: io.StringIO, usage: Usage) -> dict[str, Any]:
    stdout = out.getvalue()
    if value is _NO_RESULT:
        # the old runner's rule: the last line of stdout as JSON, else the whole stdout
        lines = stdout.strip().splitlines()
        try:
            value = json.loads(lines[-1]) if lines else {"result": ""}
        except ValueError:
            value = {"result": stdout.strip()}
    return {
        "value": value,
        "stdout": stdout,
        "stderr": err.getvalue(),
        "usage": usage.measure(),
    }


def _wrap_errors(
    send: Send,
    out: io.StringIO,
    err: io.StringIO,
    usage: Usage,
    reporter: progress.Reporter | None = None,
) -> Send:
    """Attach the captured output and the step's usage to failed steps too. A step that
    printed has its output sent before its answer: the kernel's streams are flushed (they
    publish every 0.2 s by themselves) and the answer goes on the comm, behind the output
    on the same IOPub socket (``reporter.sent``, as after progress: ``dispatch.py``), so
    whoever follows the step (``/script-engine/execute/ws``, an asynchronous execution's
    events) gets its last lines before its result."""

    def wrapped(reply: dict[str, Any], buffers: list[bytes] | None) -> None:
        if not reply.get("ok"):
            error = dict(reply.get("error") or {})
            error["stdout"], error["stderr"] = out.getvalue(), err.getvalue()
            error["usage"] = usage.measure()
            reply = {**reply, "error": error}
        printed = False
        for buffer, stream in ((out, sys.stdout), (err, sys.stderr)):
            if buffer.tell():
                printed = True
                try:
                    stream.flush()
                except Exception:  # a stream replaced by the script: its output may come late
                    pass
        if printed and reporter is not None:
            reporter.sent = True
        send(reply, buffers)

    return wrapped
