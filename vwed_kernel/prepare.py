"""What the ``prepare`` op does before a script's source runs, besides naming it: where
its own packages go on ``sys.path``, and its name under the scripts root."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from .policy import Policy
from .policy_hook import install

__all__ = ["add_site_dirs", "install_policy", "script_name"]


def script_name(data: dict[str, Any], path: str) -> str:
    """The script's path under the scripts root (``prepare``'s ``path``; older
    gateways send only the script id, ``<path>_<milliseconds>``)."""
    name = data.get("path")
    if isinstance(name, str) and name:
        return name
    script_id = str(data.get("script_id") or "")
    head, _, tail = script_id.rpartition("_")
    if head and tail.isdigit() and head.endswith(os.path.basename(path)):
        return head
    return path


def add_site_dirs(folders: list[Any]) -> None:
    """The script's own packages (issue 16): each folder added with ``site.addsitedir``,
    which appends it (and its ``.pth`` entries) AFTER the kernel's own paths, so the
    engine's packages (ipykernel, pyzmq, tornado, the VWED runtime) win any name clash."""
    import importlib
    import site

    own = list(sys.path)
    for folder in folders:
        if isinstance(folder, str) and folder and folder not in sys.path and os.path.isdir(folder):
            site.addsitedir(folder)
    if sys.path != own:
        # A package's .pth file may insert its folder at the front (``import sys;
        # sys.path.insert(0, ...)``): whatever was added goes behind the kernel's own paths.
        added = [entry for entry in sys.path if entry not in own]
        sys.path[:] = own + added
        importlib.invalidate_caches()


def install_policy(
    data: Any,
    folder: str | None,
    vwed: Any,
    attached: Callable[[], bool],
    send: Callable[[dict[str, Any]], None],
) -> None:
    """The script's policy, as an audit hook (vwed_kernel/policy.py); ``PolicyError``
    when it cannot be understood. Its refusals are also logged as ``policy`` WARNING
    lines, so one a script catches is seen."""

    def report(message: str) -> None:
        if not attached():
            vwed.log.warning("policy", message)
            return
        # a log line the gateway also counts (vwed_policy_refusals_total)
        send(
            {
                "op": "log",
                "level": "WARNING",
                "tag": "policy",
                "message": message,
                "refusal": True,
            }
        )

    install(Policy.parse(data, folder or None), report)
