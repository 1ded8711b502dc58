"""The ``rawproof`` command line.

Each subcommand lives in the module that does the work; that module exposes
``register(subparsers)`` which adds its parser and sets ``func``. Exit codes: 0 success,
2 usage error (argparse), 3 a rawproof error; ``verify`` documents its own verdict codes.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from rawproof._version import __version__
from rawproof.errors import RawproofError

# Modules that contribute subcommands, in the order --help lists them.
_COMMAND_MODULES = ["rawproof.demo", "rawproof.develop", "rawproof.verify", "rawproof.fingerprint", "rawproof.batch", "rawproof.keygen", "rawproof.repo.cli", "rawproof.bench"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rawproof",
        description="Develop Bayer RAW through a neural imaging pipeline, sign it (C2PA), verify it.",
    )
    parser.add_argument("--version", action="version", version=f"rawproof {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except RawproofError as e:
        print(f"rawproof {args.command}: error: {e}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
