"""``VWED.function``: named functions that task flows and other scripts call."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..calling import bind_function, declared_names, run_to_completion
from ..errors import GatewayUnavailableError, RegistrationError
from ..registrations import FunctionSpec, check_name
from ..remote import from_environment

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["FunctionModule"]


class FunctionModule:
    """Register functions by name, list them, and call them (here or in another script).

    ``args`` follow one rule everywhere: a dict becomes keyword arguments (a
    function with exactly one parameter gets the dict itself, unless it was
    registered with ``params=[...]`` and the dict's keys are among those names),
    a list becomes positional arguments, a string is parsed as JSON or a Python
    literal. The table of cases is in docs/vwed.md.
    """

    def __init__(self, context: Context) -> None:
        self._context = context

    def register(
        self,
        name: str,
        handler: Callable[..., Any] | None = None,
        description: str = "",
        params: list[Any] | None = None,
    ) -> Any:
        """Register ``handler`` as function ``name``; without a handler, return a decorator.

        ``VWED.function.register("allocate_storage", allocate, "pick a free location",
        params=["goods_type", "quantity"])``

        ``params`` declares the parameters: a caller's dict whose keys are all among
        them is passed as keyword arguments, so ``register("reserve", reserve,
        params=["goods"])`` makes ``{"goods": "box"}`` call ``reserve(goods="box")``
        (without ``params``, a function of one parameter receives the whole dict).
        """
        check_name("function", name)
        if handler is None:
            return lambda h: self.register(name, h, description, params) or h
        if not callable(handler):
            raise RegistrationError(f"handler of function {name!r} is not callable")
        declared = params is not None
        if params is None:
            params = _param_names(handler)
        elif isinstance(params, (str, bytes)) or not isinstance(params, (list, tuple)):
            raise RegistrationError(
                f"params of function {name!r} must be a list of parameter names, "
                f"e.g. params=[{params!r}]"
            )
        else:
            _check_declared(name, handler, params)
        spec = FunctionSpec(
            name,
            handler,
            description or (handler.__doc__ or "").strip().split("\n")[0],
            list(params),
            declared=declared,
        )
        self._context.registrations.functions[name] = spec
        self._context.link.notify_register("function", spec.describe())
        return None

    def unregister(self, name: str) -> bool:
        """Remove a function of this script; returns whether it was registered."""
        spec = self._context.registrations.functions.pop(name, None)
        if spec is not None:
            self._context.link.notify_unregister("function", spec.describe())
        return spec is not None

    def list_all(self) -> list[dict[str, Any]]:
        """Every registered function: of all running scripts when a gateway is attached,
        else of this kernel."""
        link = self._context.link
        if link.can_request():
            return list(link.request("function.list", {}))
        local = [f.describe() for f in self._context.registrations.functions.values()]
        remote = from_environment() if not link.attached else None
        return local + remote.list_functions() if remote is not None else local

    def call(self, name: str, args: Any = None, timeout: float | None = None) -> Any:
        """Call function ``name`` and return its result (blocking).

        A function of this script runs here directly; any other goes through the
        gateway to the script that owns it.
        """
        spec = self._context.registrations.functions.get(name)
        if spec is not None:
            a, kw = bind_function(spec, args, self._context.log)
            return run_to_completion(spec.handler(*a, **kw))
        link = self._context.link
        if not link.attached:
            remote = from_environment()
            if remote is not None:
                return remote.call_function(name, args, timeout)
            raise GatewayUnavailableError(
                f"function {name!r} is not registered in this kernel and no gateway is attached "
                "(set VWED_GATEWAY_URL to call a running gateway)"
            )
        return link.request("function.call", {"name": name, "args": args}, timeout=timeout)

    async def acall(self, name: str, args: Any = None, timeout: float | None = None) -> Any:
        """``await`` form of :meth:`call`, for ``async`` handlers."""
        spec = self._context.registrations.functions.get(name)
        if spec is not None:
            a, kw = bind_function(spec, args, self._context.log)
            value = spec.handler(*a, **kw)
            return await value if inspect.isawaitable(value) else value
        link = self._context.link
        if not link.attached:
            remote = from_environment()
            if remote is not None:
                return await asyncio.to_thread(remote.call_function, name, args, timeout)
            raise GatewayUnavailableError(
                f"function {name!r} is not registered in this kernel and no gateway is attached"
            )
        return await link.arequest("function.call", {"name": name, "args": args}, timeout=timeout)


def _param_names(handler: Callable[..., Any]) -> list[str]:
    try:
        sig = inspect.signature(handler)
    except (TypeError, ValueError):
        return []
    return [
        p.name for p in sig.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _check_declared(name: str, handler: Callable[..., Any], params: Any) -> None:
    """Every declared name must be a parameter of ``handler`` (or it takes ``**kwargs``):
    a dict of those names is passed as keyword arguments."""
    try:
        sig = inspect.signature(handler)
    except (TypeError, ValueError):
        return
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    accepted = {
        p.name
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    unknown = [n for n in declared_names(params) or [] if n not in accepted]
    if unknown:
        raise RegistrationError(
            f"params of function {name!r} name {', '.join(map(repr, unknown))}, which "
            f"{'is not a parameter' if len(unknown) == 1 else 'are not parameters'} "
            f"of its handler {getattr(handler, '__name__', handler)}{sig}"
        )
