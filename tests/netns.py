"""Extra "hosts" on this machine for the remote-kernel tests and bench: network
namespaces the helper creates, each joined to the root namespace by a veth pair and
running its own sshd (own config, host key and authorized key, in a temp folder).

Only addresses inside namespaces made here are used (/30 links in 10.77.0.0/24,
blocks no other run holds);
the gateway's end of each link is in the root namespace. The namespaces share the
file system, so the repository's venv Python runs the VWED kernel there. Everything
made is removed by ``close()`` (also after a partial setup).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Host", "Hosts", "why_not"]

SSHD = "/usr/sbin/sshd"


def why_not() -> str | None:
    """Why namespaces with sshd cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root (ip netns add)"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    if not os.path.exists(SSHD):
        return "needs openssh-server (apt-get install -y openssh-server)"
    if shutil.which("ssh-keygen") is None:
        return "needs ssh-keygen (openssh-client)"
    return None


def _run(*cmd: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _free_blocks(count: int) -> list[int]:
    """``count`` /30 blocks of 10.77.0.0/24 that no link of this machine uses yet
    (another test or bench run may hold some: the same address twice would route
    to the wrong "host")."""
    used = _run("ip", "-o", "-4", "addr", "show")
    free = [b for b in range(64) if f" 10.77.0.{4 * b + 1}/" not in used]
    if len(free) < count:
        raise RuntimeError("no free 10.77.0.0/24 blocks left for test namespaces")
    return free[:count]


@dataclass
class Host:
    """One namespace: its name, its address, the gateway's address on its link."""

    netns: str
    address: str
    gateway_address: str
    veth: str
    sshd: subprocess.Popen[bytes] | None = None

    def run(self, *cmd: str) -> str:
        """Run a command inside the namespace."""
        return _run("ip", "netns", "exec", self.netns, *cmd)


@dataclass
class Hosts:
    """``count`` namespaces with sshd on ``port``; the gateway's SSH client files
    (private key, known_hosts) under ``home/.ssh``, for a gateway run with HOME=home."""

    folder: Path
    count: int = 2
    port: int = 22
    hosts: list[Host] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return self.folder / "home"

    def open(self) -> Hosts:
        tag = uuid.uuid4().hex[:6]
        ssh_dir = self.home / ".ssh"
        ssh_dir.mkdir(parents=True, mode=0o700)
        os.chmod(self.folder, 0o700)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh_dir / "id_ed25519"))
        host_key = self.folder / "ssh_host_ed25519_key"
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key))
        authorized = self.folder / "authorized_keys"
        shutil.copy(ssh_dir / "id_ed25519.pub", authorized)
        os.chmod(authorized, 0o600)
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
        public = host_key.with_suffix(".pub").read_text().split()
        known = []
        blocks = _free_blocks(self.count)
        for i, block in enumerate(blocks):
            base = 4 * block  # /30 links: .1 gateway, .2 host; .5/.6; ...
            host = Host(
                netns=f"vwedns{tag}{i}",
                address=f"10.77.0.{base + 2}",
                gateway_address=f"10.77.0.{base + 1}",
                veth=f"vwv{tag}{i}",
            )
            self.hosts.append(host)  # before it exists: close() removes a partial one
            self._make(host)
            host.sshd = self._sshd(host, host_key, authorized)
            known.append(f"{host.address} {public[0]} {public[1]}")
        (ssh_dir / "known_hosts").write_text("\n".join(known) + "\n")
        for host in self.hosts:
            self._wait_ssh(host)
        return self

    def _make(self, host: Host) -> None:
        _run("ip", "netns", "add", host.netns)
        _run("ip", "link", "add", host.veth, "type", "veth", "peer", "name", host.veth + "p")
        _run("ip", "link", "set", host.veth + "p", "netns", host.netns)
        _run("ip", "addr", "add", f"{host.gateway_address}/30", "dev", host.veth)
        _run("ip", "link", "set", host.veth, "up")
        host.run("ip", "addr", "add", f"{host.address}/30", "dev", host.veth + "p")
        host.run("ip", "link", "set", host.veth + "p", "up")
        host.run("ip", "link", "set", "lo", "up")
        # the gateway's response address may be any of the root namespace's addresses
        host.run("ip", "route", "add", "default", "via", host.gateway_address)

    def _sshd(self, host: Host, host_key: Path, authorized: Path) -> subprocess.Popen[bytes]:
        config = self.folder / f"sshd_config_{host.netns}"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {host.address}",
                    f"Port {self.port}",
                    f"HostKey {host_key}",
                    f"AuthorizedKeysFile {authorized}",
                    f"PidFile {self.folder}/sshd_{host.netns}.pid",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        log = open(self.folder / f"sshd_{host.netns}.log", "wb")  # noqa: SIM115
        try:
            return subprocess.Popen(
                ["ip", "netns", "exec", host.netns, SSHD, "-D", "-e", "-f", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()

    def _wait_ssh(self, host: Host, timeout: float = 20.0) -> None:
        """Until the sshd in ``host`` answers with its banner (from the root namespace)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if host.sshd is not None and host.sshd.poll() is not None:
                log = (self.folder / f"sshd_{host.netns}.log").read_text()
                raise RuntimeError(f"sshd in {host.netns} exited: {log[-1000:]}")
            try:
                with socket.create_connection((host.address, self.port), timeout=1) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return
            except OSError as exc:
                last = exc
            time.sleep(0.05)
        raise RuntimeError(f"sshd in {host.netns} did not answer: {last}")

    def env(self) -> dict[str, str]:
        """What a gateway needs in its environment to start kernels on these hosts."""
        return {
            "HOME": str(self.home),  # paramiko reads ~/.ssh: the key and known_hosts made here
            "GP_SSH_PORT": str(self.port),
            "GP_REMOTE_USER": "root",
            # gateway_provisioners refuses kernels of user root by default; these
            # "hosts" are namespaces of this machine, run by the test as root
            "GP_UNAUTHORIZED_USERS": "nobody",
        }

    def close(self) -> None:
        """Stop every sshd and remove every namespace and link made (idempotent)."""
        for host in self.hosts:
            if host.sshd is not None and host.sshd.poll() is None:
                host.sshd.terminate()
                try:
                    host.sshd.wait(5)
                except subprocess.TimeoutExpired:
                    host.sshd.kill()
                    host.sshd.wait(5)
            # processes still in the namespace (kernels) die with it
            pids = subprocess.run(
                ["ip", "netns", "pids", host.netns], capture_output=True, text=True
            ).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (OSError, ValueError):
                    pass
            subprocess.run(["ip", "link", "del", host.veth], capture_output=True)
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True)
        self.hosts = []
