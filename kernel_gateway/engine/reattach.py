"""Reattaching to remote script kernels that outlived their gateway (a kill -9, a
crash, a failover takeover): what is kept of them, and how a restore finds them again.

A kernel that runs on another host (gateway_provisioners' remote provisioners) keeps
running when the gateway that started it dies. What its provisioner knows (host,
pid, the launcher's listener port, the kernel's ports and message key) is kept with
the desired script (``vwed_desired_scripts.options``, key ``attach``), sealed with the
gateway's secrets key (AES-256-GCM, secrets/crypto.py; the script's path as associated
data): the kernel's HMAC key is a secret. A restore (at start, or at a takeover with
``--ha``) rebuilds a manager from it (``remote.reattach``), checks the kernel answers
(its channels and a new ``vwed`` comm, whose ``hello`` is the ping), asks it for its
registrations and routes from them: ``boot()`` does not run again, the script's
globals are as they were, and its run goes on (the same run id, reopened). A kernel
that is gone (or does not answer: it is then ended through its listener) is started
again as before. Local kernels never outlive their gateway and are started again."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager

from .. import remote
from ..kernels import KernelStartError, ScriptKernel
from ..registrations import ScriptRegistrations, parse_registrations
from ..secrets.crypto import SecretsKey, Undecryptable
from .given import GivenAgain
from .model import RunningScript

__all__ = ["RemoteKernels", "ATTACH_KEY", "ORPHANS"]

log = logging.getLogger("kernel_gateway.engine")

ATTACH_KEY = "attach"  # the key of the sealed state in a desired script's options
ORPHANS = "orphans"  # the key, in a sealed state, of old kernels not yet ended


def _name(script_path: str) -> str:
    """The associated data of a sealed state: it does not open under another path."""
    return f"kernel-state:{script_path}"


class RemoteKernels:
    """Seals what a restarted gateway needs to reconnect to a script's remote kernels,
    and reconnects."""

    def __init__(
        self,
        ksm: KernelSpecManager,
        key: SecretsKey | None,
        *,
        fast_path: bool = True,
        timeout: float = 20.0,
        given_again: GivenAgain | None = None,
    ) -> None:
        self.ksm = ksm
        self.key = key
        self.fast_path = fast_path
        self.timeout = timeout  # per kernel: its listener's answer, then its channels
        # the values a reattached kernel was given before, to the redactor again (given.py)
        self.given_again = given_again
        # script path -> stored states of its old kernels that may still run and could
        # not be ended (their host unreachable): sealed with its state, retried at restore
        self.orphans: dict[str, list[dict[str, Any]]] = {}

    async def state(self, script: RunningScript) -> str | None:
        """The sealed state of ``script``'s kernels, or None when one of them is local
        (nothing to reattach to: local kernels end with their gateway) or there is no key.
        Old kernels of the script that could not be ended (``orphans``) are kept in it
        too, to be ended at the next restore."""
        if self.key is None:
            return None
        orphans = self.orphans.get(script.path, [])
        kernels: list[dict[str, Any]] = []
        for kernel in script.kernels:
            state = None if kernel.host is None else await remote.remote_state(kernel.km)
            if state is None:
                kernels = []
                break
            kernels.append({"replica": kernel.replica, **state})
        if not kernels and not orphans:
            return None
        plain = {
            "script_id": script.script_id,
            "run_id": script.run_id,
            "started_at": script.started_at,
            "kernels": kernels,
            ORPHANS: orphans,
        }
        return self.key.seal(_name(script.path), json.dumps(plain))

    def open(self, script_path: str, sealed: Any) -> dict[str, Any] | None:
        """The state sealed by ``state``; None (said) if it cannot be read."""
        if self.key is None or not isinstance(sealed, str):
            return None
        try:
            state = json.loads(self.key.open(_name(script_path), sealed))
        except (Undecryptable, ValueError):
            log.error(
                "the remote kernels of %s cannot be reattached: their stored state does not "
                "decrypt with the secrets key (%s); they are started again, and the old ones, "
                "if they still run, must be ended on their host",
                script_path,
                self.key.source,
            )
            return None
        if not isinstance(state, dict) or not isinstance(state.get("kernels"), list):
            return None
        return state

    async def kernel(self, script_path: str, stored: dict[str, Any]) -> ScriptKernel | None:
        """The kernel ``stored`` describes, connected, if it still runs and answers;
        None when it is gone. One that runs but does not answer is ended (through its
        launcher's listener): a new one takes its place, never two. One whose state
        is not known (its host unreachable, no answer in time) is ended too, over SSH
        if need be; if that fails it is kept in ``orphans`` (retried at the next
        restore) and its script is started anew all the same."""
        try:
            km = await asyncio.wait_for(remote.reattach(self.ksm, stored), self.timeout)
        except Exception as exc:  # its host unreachable, no answer in time, bad state
            host, pid = remote.describe(stored)
            log.warning(
                "the remote kernel (pid %s) on %s cannot be asked whether it runs (%r): "
                "ending it before its script is started again",
                pid,
                host,
                exc,
            )
            if not await self.end(stored):
                self.orphans.setdefault(script_path, []).append(stored)
            return None
        if km is None:
            return None
        try:
            return await ScriptKernel.attach(km, timeout=self.timeout, fast_path=self.fast_path)
        except KernelStartError as exc:
            log.warning("a remote kernel was found but does not answer (%s): ending it", exc)
            await remote.end_remote(km.provisioner)
            try:
                await asyncio.wait_for(km.shutdown_kernel(now=True), self.timeout)
            except Exception:
                log.debug("shutdown of an unanswering remote kernel failed", exc_info=True)
            return None

    async def end(self, stored: dict[str, Any]) -> bool:
        """End a kernel that may still run; True when it is known ended."""
        try:
            return await remote.end_unreachable(self.ksm, stored, self.timeout)
        except Exception:
            log.exception("ending a remote kernel failed")
            return False

    async def end_orphans(self, script_path: str, stored: Any) -> list[dict[str, Any]]:
        """Try again to end the old kernels of ``script_path`` a previous gateway could
        not end; those still not ended are kept (in ``orphans``) and returned."""
        left = [s for s in (stored if isinstance(stored, list) else []) if isinstance(s, dict)]
        ended = await asyncio.gather(*(self.end(s) for s in left))
        kept = [s for s, done in zip(left, ended, strict=True) if not done]
        if kept:
            self.orphans.setdefault(script_path, []).extend(kept)
        return kept


async def registrations_of(
    kernel: ScriptKernel, script_id: str, timeout: float
) -> tuple[ScriptRegistrations, dict[str, Any]]:
    """What a reattached kernel has registered (the ``registrations`` op), and what it
    was given before (``given``: the names of the secrets it read, whether it got the
    MQTT settings; never values): a restarted gateway redacts those values again."""
    reply = await kernel.bridge.call({"op": "registrations"}, timeout=timeout)
    if not reply.ok:
        raise KernelStartError(f"the kernel did not give its registrations: {reply.error}")
    snapshot = reply.value()
    given = snapshot.get("given") if isinstance(snapshot, dict) else None
    return parse_registrations(script_id, snapshot), given if isinstance(given, dict) else {}
