"""Argument binding and invocation of script callables.

One module, shared by every kind of call (route handlers, functions, task-flow
steps), so the rules are the same everywhere:

* a ``dict`` becomes keyword arguments, except that a callable with exactly one
  parameter receives the dict itself; a function registered with ``params=[...]``
  whose dict's keys are all among those names gets them as keyword arguments
  (:func:`bind_function`; the table of cases is in docs/vwed.md);
* a ``list`` (or tuple) becomes positional arguments;
* a ``str`` is parsed as JSON, else as a Python literal (``ast.literal_eval``),
  else passed through as the string, and the parsed value is bound by the rules
  above (a string that parses to a scalar is one positional argument);
* ``None`` means no arguments;
* anything else is one positional argument.

Outside input is never given to ``eval``.

:func:`run_to_completion` is how a blocking call (``VWED.function.call``, a local
event) gets the result of a coroutine handler.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import inspect
import json
import threading
from collections.abc import Callable, Sequence
from typing import Any

from .registrations import FunctionSpec

__all__ = [
    "BindError",
    "bind_arguments",
    "bind_function",
    "declared_names",
    "single_key_mistake",
    "parse_string_argument",
    "is_async_callable",
    "run_to_completion",
]


class BindError(TypeError):
    """The arguments cannot be bound to the callable's signature."""


_MISSING = object()


def parse_string_argument(text: str) -> Any:
    """Parse a string argument: JSON first, then a Python literal, else the string itself."""
    stripped = text.strip()
    if not stripped:
        return text
    try:
        return json.loads(stripped)
    except (ValueError, RecursionError):  # "[" * 100000 is too deep, not a crash
        pass
    try:
        # literal_eval only accepts literals (numbers, strings, containers, ...):
        # no names, calls or attribute access, so it is safe on outside input.
        return ast.literal_eval(stripped)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _signature(func: Callable[..., Any]) -> inspect.Signature | None:
    """``inspect.signature(func)`` (None if it has none), kept for the next call of the
    same handler: it is asked on every call and costs more than the call itself."""
    try:
        return _cached_signature(func)
    except TypeError:  # an unhashable callable
        return _uncached_signature(func)


def _uncached_signature(func: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


_cached_signature = functools.lru_cache(maxsize=512)(_uncached_signature)


def _positional_count(sig: inspect.Signature) -> tuple[int, bool]:
    """Number of named parameters, and whether ``*args``/``**kwargs`` are accepted."""
    named = 0
    variadic = False
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            variadic = True
        else:
            named += 1
    return named, variadic


def bind_arguments(
    func: Callable[..., Any], args: Any, params: Sequence[str] | None = None
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Turn a call's ``args`` value into ``(positional, keyword)`` for ``func``.

    ``params`` are the names a function was registered with (``params=[...]``): a
    non-empty dict whose keys are all among them becomes keyword arguments, even
    for a one-parameter function. Any other dict follows the default rule.

    Raises :class:`BindError` with a readable message when the result would not
    fit the signature (checked with ``Signature.bind`` before the call, so the
    error is about the arguments, not a ``TypeError`` from deep in user code).
    """
    if isinstance(args, str):
        args = parse_string_argument(args)
    sig = _signature(func)
    positional: tuple[Any, ...]
    keywords: dict[str, Any] = {}
    if args is None:
        positional = ()
    elif isinstance(args, dict):
        named = _positional_count(sig)[0] if sig is not None else 0
        declared = params is not None and bool(args) and all(k in params for k in args)
        single = (
            not declared
            and sig is not None
            and named == 1
            and not any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
        )
        if single:
            positional = (args,)
        else:
            positional = ()
            keywords = {str(k): v for k, v in args.items()}
    elif isinstance(args, (list, tuple)):
        positional = tuple(args)
    else:
        positional = (args,)
    if sig is not None:
        try:
            sig.bind(*positional, **keywords)
        except TypeError as exc:
            raise BindError(f"arguments do not match {_describe(func, sig)}: {exc}") from None
    return positional, keywords


def single_key_mistake(func: Callable[..., Any], args: Any) -> str | None:
    """The parameter's name when the default rule gives ``func`` (one parameter) the
    whole dict although the dict's only key is that very name: ``reserve(goods)``
    called with ``{"goods": "pallet"}`` gets the dict, probably not what was meant."""
    if isinstance(args, str):
        args = parse_string_argument(args)
    if not isinstance(args, dict) or len(args) != 1:
        return None
    sig = _signature(func)
    if sig is None or any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    names = [
        p.name for p in sig.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    return names[0] if len(names) == 1 and names[0] in args else None


def declared_names(params: Sequence[Any] | None) -> list[str] | None:
    """The parameter names of a ``params=[...]`` declaration (strings, or dicts with a
    ``"name"``, as the platform's documents write them); ``None`` when not declared."""
    if params is None:
        return None
    names = []
    for p in params:
        name = p.get("name") if isinstance(p, dict) else p
        if isinstance(name, str) and name:
            names.append(name)
    return names


def bind_function(
    spec: FunctionSpec, args: Any, log: Callable[[str, str, str], None]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Bind the arguments of a call of a registered function (a ``FunctionSpec``).

    With ``params`` declared at registration, :func:`bind_arguments` uses them;
    without, the default rule applies and, the first time a call looks like the
    mistake of :func:`single_key_mistake`, one WARNING goes to the script's log
    (``log(level, tag, text)``) saying how to declare the parameter instead."""
    declared = declared_names(spec.params) if spec.declared else None
    bound = bind_arguments(spec.handler, args, declared)
    if declared is None and not spec.warned:
        name = single_key_mistake(spec.handler, args)
        if name is not None:
            spec.warned = True
            log(
                "WARNING",
                "function",
                f"function {spec.name!r}: {_describe(spec.handler, _signature(spec.handler))} "
                f"was called with {{{name!r}: ...}} and received the whole dict (a function "
                f"of one parameter gets the dict itself). If {name} should be the value, "
                f"register it with params=[{name!r}]: "
                f"VWED.function.register({spec.name!r}, ..., params=[{name!r}]). "
                "(logged once per function)",
            )
    return bound


def _describe(func: Callable[..., Any], sig: inspect.Signature | None) -> str:
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)
    return f"{name}{sig if sig is not None else '(...)'}"


def is_async_callable(func: Callable[..., Any]) -> bool:
    """True for ``async def`` functions (and callables whose ``__call__`` is one)."""
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004
    return call is not None and inspect.iscoroutinefunction(call)


def call_handler_with_request(handler: Callable[..., Any], request: Any) -> Any:
    """Call a route handler: with the request if it takes a parameter, else bare."""
    sig = _signature(handler)
    if sig is not None:
        named, variadic = _positional_count(sig)
        if named == 0 and not variadic:
            return handler()
    return handler(request)


def call_event_handler(handler: Callable[..., Any], event_name: str, data: Any) -> Any:
    """Call a listener: ``handler(data)``, ``handler(event_name, data)`` or ``handler()``."""
    sig = _signature(handler)
    if sig is not None:
        named, variadic = _positional_count(sig)
        if named == 0 and not variadic:
            return handler()
        if named >= 2 or variadic:
            return handler(event_name, data)
    return handler(data)


def call_with_arity(handler: Callable[..., Any], *args: Any) -> Any:
    """Call ``handler`` with as many of ``args`` (from the last) as it takes: a handler of
    one parameter gets the last one, of two the last two, of none nothing."""
    sig = _signature(handler)
    if sig is None:
        return handler(args[-1])
    named, variadic = _positional_count(sig)
    if variadic:
        return handler(*args)
    return handler(*args[len(args) - min(named, len(args)) :]) if named else handler()


def call_tcp_handler(handler: Callable[..., Any], data: bytes, peer: Any) -> Any:
    """``handler(data)`` or ``handler(data, peer)``."""
    sig = _signature(handler)
    if sig is not None and _positional_count(sig)[0] >= 2:
        return handler(data, peer)
    return handler(data)


def run_to_completion(value: Any) -> Any:
    """Return ``value``, or its result if it is awaitable (used by blocking calls).

    Inside a running event loop (the kernel's main thread) the awaitable runs on
    a private loop in a helper thread, because the running loop cannot be
    re-entered from synchronous code.
    """
    if not inspect.isawaitable(value):
        return value

    async def wrap() -> Any:
        return await value

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wrap())
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            box["value"] = asyncio.run(wrap())
        except BaseException as exc:  # handed back to the caller's thread
            box["error"] = exc

    t = threading.Thread(target=runner, name="vwed-call", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")
