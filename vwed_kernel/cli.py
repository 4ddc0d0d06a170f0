"""``vwed-kernel``: install the kernelspec, or run a kernel."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["launch"]:
        from .launch import main as launch

        launch(argv[1:])
        return 0
    parser = argparse.ArgumentParser(prog="vwed-kernel", description="The VWED script kernel.")
    sub = parser.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install", help='install the "Python 3 (VWED)" kernelspec for Jupyter')
    where = inst.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for the current user")
    where.add_argument("--sys-prefix", action="store_true", help="install into sys.prefix (venv)")
    where.add_argument("--prefix", metavar="P", help="install under prefix P")
    where.add_argument(
        "--data-dir",
        metavar="D",
        help="write it into a gateway's data directory (D/kernels/NAME), for --kernel-name",
    )
    inst.add_argument("--name", default="vwed", help="the kernelspec's name (default: vwed)")
    inst.add_argument("--display-name", metavar="TEXT", help="the name shown in JupyterLab")
    remote = inst.add_argument_group(
        "remote kernels",
        "kernels started on other hosts over SSH by gateway_provisioners' "
        "DistributedProvisioner (docs/scaling.md)",
    )
    remote.add_argument(
        "--remote-host",
        metavar="HOST",
        action="append",
        default=[],
        help="a host to start kernels on (repeat, or comma-separated; in turn)",
    )
    remote.add_argument(
        "--remote-python",
        metavar="PATH",
        help="the Python on those hosts with vwed_kernel and gateway_provisioners "
        "(default: this one's path)",
    )
    remote.add_argument(
        "--launcher",
        metavar="PATH",
        help="gateway_provisioners' launch_ipykernel.py on those hosts "
        "(default: its path under this Python)",
    )
    docker = inst.add_argument_group(
        "Docker kernels",
        "kernels started in Docker containers by gateway_provisioners' DockerProvisioner "
        "(docs/scaling.md, Docker)",
    )
    docker.add_argument(
        "--docker-image",
        metavar="IMAGE",
        help="the image to start kernels in (deploy/docker/build-kernel-image.sh builds one)",
    )
    sub.add_parser("launch", help="run a kernel: vwed-kernel launch -f CONNECTION_FILE")
    args = parser.parse_args(argv)
    if args.command == "install":
        return _install(args)
    return 0


def _install(args: argparse.Namespace) -> int:
    from .install import Docker, Remote, install, write_kernelspec

    hosts = tuple(h.strip() for arg in args.remote_host for h in arg.split(",") if h.strip())
    remote: Remote | Docker | None = (
        Remote(hosts, args.remote_python, args.launcher) if hosts else None
    )
    if not hosts and (args.remote_python or args.launcher):
        print("vwed-kernel: --remote-python and --launcher need --remote-host", file=sys.stderr)
        return 2
    if args.docker_image is not None:
        if hosts:
            print("vwed-kernel: --docker-image or --remote-host, not both", file=sys.stderr)
            return 2
        remote = Docker(args.docker_image)
    try:
        if args.data_dir:
            folder = Path(args.data_dir).resolve() / "kernels" / args.name
            dest = str(write_kernelspec(folder, remote=remote, display_name=args.display_name))
        else:
            dest = install(
                user=args.user,
                prefix=args.prefix,
                sys_prefix=args.sys_prefix,
                name=args.name,
                remote=remote,
                display_name=args.display_name,
            )
    except (RuntimeError, ValueError) as exc:
        print(f"vwed-kernel: {exc}", file=sys.stderr)
        return 2
    where = f" (kernels on {', '.join(hosts)})" if hosts else ""
    if args.docker_image is not None:
        where = f" (kernels in Docker containers of {args.docker_image})"
    print(f"Installed kernelspec {args.name}{where} in {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
