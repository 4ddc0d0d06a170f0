"""``vwed-kernel``: install the kernelspec, or run a kernel."""

from __future__ import annotations

import argparse
import sys


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
    sub.add_parser("launch", help="run a kernel: vwed-kernel launch -f CONNECTION_FILE")
    args = parser.parse_args(argv)
    if args.command == "install":
        from .install import install

        dest = install(user=args.user, prefix=args.prefix, sys_prefix=args.sys_prefix)
        print(f"Installed kernelspec vwed (Python 3 (VWED)) in {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
