"""The ``madnis-mg5`` console script: dispatches to the built-in demo and the plugin installer."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="madnis-mg5", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    from . import demo, install

    demo.add_arguments(commands.add_parser("demo", help="train MadNIS on the built-in Drell-Yan process and write LHE"))
    install.add_arguments(commands.add_parser("install-plugin", help="install this plugin into MG5aMC's PLUGIN/"))
    args = parser.parse_args(argv)
    handlers = {"demo": demo.run, "install-plugin": install.run}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
