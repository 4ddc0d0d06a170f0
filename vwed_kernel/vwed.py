"""The ``VWED`` object preloaded in every script kernel."""

from __future__ import annotations

from typing import Any

from . import progress as _progress
from .context import Context, DetachedLink, Link
from .errors import GatewayUnavailableError
from .modules.api import ApiModule
from .modules.device import DeviceModule
from .modules.event import EventModule
from .modules.function import FunctionModule
from .modules.http import HttpModule
from .modules.log import LogModule
from .modules.mail import MailModule
from .modules.mqtt import MqttModule
from .modules.robot import RobotModule
from .modules.secrets import SecretsModule
from .modules.storage import StorageModule
from .modules.task import TaskModule
from .modules.timer import TimerModule
from .plugins import Plugins
from .registrations import Registrations

__all__ = ["VWED"]


class VWED:
    """Everything a script uses to talk to the platform.

    - ``VWED.api``: HTTP routes (``register_route``, ``route``, ``Response``, ``call_local``,
      ``clear_all``)
    - ``VWED.function``: named functions (``register``, ``list_all``, ``call``, ``acall``)
    - ``VWED.log``: ``debug/info/warning/error(tag, message)``
    - ``VWED.event``: ``listen``, ``emit``, ``aemit``, ``unlisten``, ``clear_all``
    - ``VWED.timer``: ``schedule``, ``delay``, ``cron``, ``cancel``, ``list``, ``clear_all``
    - ``VWED.http``: ``get/post/put/delete/request`` (and ``a...`` async forms)
    - ``VWED.mail``: ``send``, ``send_with_attachment``
    - ``VWED.secrets``: ``get``, ``aget`` (secrets the admin set, by name, within their scope)
    - ``VWED.device``: ``modbus``, ``modbus_client``, ``opc``, ``plc``
    - ``VWED.mqtt``: ``publish``, ``apublish``, ``subscribe``, ``unsubscribe`` (the gateway's broker)
    - ``VWED.storage`` / ``VWED.task`` / ``VWED.robot``: the platform's locations, tasks, robots

    - ``VWED.progress(0.4)`` / ``VWED.progress(2, total=5, message="row 2")``: how far
      the running call got, shown to its caller

    - ``VWED.deploy(path)``: from a notebook on the gateway's kernel (a draft), save it as a
      script and start it

    Register everything in your script's ``boot()``; the gateway commits the
    registrations when ``boot()`` returns.
    """

    def __init__(
        self, link: Link | None = None, *, registrations: Registrations | None = None
    ) -> None:
        # module plugins (vwed_kernel/plugins.py): attached by ``self._plugin_loader.discover()``
        self._plugins: dict[str, Any] = {}
        # ``registrations`` is given by the kernel, whose comm end looks handlers up in it
        context = Context(
            registrations if registrations is not None else Registrations(),
            link if link is not None else DetachedLink(),
        )
        self._context = context
        self._plugin_loader = Plugins(self, context)
        self.api = ApiModule(context)
        self.function = FunctionModule(context)
        self.log = LogModule(context)
        self.event = EventModule(context)
        self.timer = TimerModule(context)
        self.http = HttpModule()
        self.mail = MailModule(context)
        self.secrets = SecretsModule(context)
        self.device = DeviceModule()
        self.storage = StorageModule(context)
        self.task = TaskModule(context)
        self.robot = RobotModule(context)
        self.mqtt = MqttModule(context, "mqtt")

    @property
    def script_id(self) -> str | None:
        """The id of the running script in the gateway (``None`` in a plain notebook)."""
        return self._context.link.script_id

    @property
    def replica(self) -> int:
        """This kernel's replica index (0 to ``replicas - 1``) when a script runs in several
        kernels; 0 otherwise. Work that must run once (a timer) can check ``VWED.replica == 0``."""
        return self._context.link.replica

    @property
    def replicas(self) -> int:
        """How many kernels run this script (``POST /script-engine/start {"replicas": N}``)."""
        return self._context.link.replicas

    def progress(self, fraction_or_done: Any, total: Any = None, message: str = "") -> bool:
        """Report how far the running call (a step, a route, a function) got; the
        gateway shows it to the caller while the call runs (docs/vwed.md, "Progress").

        ``VWED.progress(0.4)`` (a fraction, 0 to 1), ``VWED.progress(2, total=5,
        message="row 2")`` (done of total), ``VWED.progress(None, message="waiting for
        the PLC")`` (a message only; at most 500 characters are kept). Numbers are
        finite and >= 0; a bad value raises ``TypeError`` or ``ValueError``. Call it as
        often as you like: at most one update every 0.2 s is sent, the newest, and
        the last one before the call's result. Returns True inside a call; False
        outside one (boot, a notebook cell, a thread started without the call's
        context), where nothing is sent.
        """
        return _progress.report(fraction_or_done, total, message)

    def deploy(
        self,
        path: str,
        source: str | None = None,
        *,
        replicas: int = 1,
        install: bool = False,
        timeout: float = 120.0,
    ) -> dict[str, Any] | None:
        """From a notebook on the gateway's VWED kernel (a draft): save it as a script
        and start it, or reload it if it runs (docs/vwed.md, "Drafts").

        ``deploy("warehouse/new.ipynb")`` exports the saved notebook to
        ``warehouse/new.py`` (``skip``-tagged cells left out) and starts that;
        ``deploy("warehouse/new.py", source)`` writes ``source`` there first;
        ``deploy("warehouse/new.py")`` starts the file as it is. A script that declares
        packages not installed yet is refused (``RemoteCallError``, code
        ``DEPENDENCIES_NOT_READY``) with the list: ``install=True`` installs them (their
        code runs) and starts it. Outside a draft (the
        deployed script itself runs this line) it does nothing and returns ``None``.
        """
        link = self._context.link
        if not (link.script_id or "").startswith("drafts/"):
            if link.attached:
                self._context.log("WARNING", "deploy", "VWED.deploy runs in drafts only; ignored")
                return None
            raise GatewayUnavailableError(
                "VWED.deploy needs a notebook on the gateway's VWED kernel (a draft)"
            )
        payload = {"path": path, "source": source, "replicas": replicas, "install": install}
        return dict(link.request("draft.deploy", payload, timeout=timeout))

    def registrations(self) -> dict[str, Any]:
        """What this kernel registered: ``{"apis", "functions", "events", "timers"}``."""
        return self._context.registrations.snapshot()

    def __repr__(self) -> str:
        where = f"script {self.script_id}" if self.script_id else "no gateway attached"
        regs = self._context.registrations
        return (
            f"<VWED {where}: {len(regs.routes)} routes, {len(regs.functions)} functions, "
            f"{len(regs.listeners)} listeners, {len(regs.timers)} timers>"
        )

    def __dir__(self) -> list[str]:
        return self._builtin_dir() + sorted(self._plugins)

    def _builtin_dir(self) -> list[str]:
        return [
            "api",
            "function",
            "log",
            "event",
            "timer",
            "http",
            "mail",
            "secrets",
            "device",
            "storage",
            "task",
            "robot",
            "mqtt",
            "script_id",
            "replica",
            "replicas",
            "registrations",
            "progress",
            "deploy",
        ]
