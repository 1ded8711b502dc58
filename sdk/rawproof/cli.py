"""The ``rawproof`` command line.

Each subcommand lives in the module that does the work; that module exposes
``register(subparsers)`` which adds its parser and sets ``func``. Exit codes: 0 success,
2 usage error (argparse), 3 any error (a ``RawproofError``, any other exception, or a
reader that closed stdout early: a message on stderr, never a traceback unless ``-v``);
``verify`` documents its own verdict codes.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from rawproof._version import __version__
from rawproof.errors import RawproofError

# Modules that contribute subcommands, in the order --help lists them.
_COMMAND_MODULES = ["rawproof.demo", "rawproof.develop", "rawproof.verify", "rawproof.fingerprint", "rawproof.batch", "rawproof.keygen", "rawproof.stamp", "rawproof.web.serve", "rawproof.bench"]


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
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
        return code
    except BrokenPipeError:
        _silence_stdout()
        print(f"rawproof {args.command}: error: standard output closed before the report was written", file=sys.stderr)
        return 3
    except RawproofError as e:
        print(f"rawproof {args.command}: error: {e}", file=sys.stderr)
        return 3
    except Exception as e:  # noqa: BLE001 - any failure is an error (exit 3), never a verdict code
        if args.verbose:
            logging.getLogger("rawproof").exception("unexpected error")
        print(f"rawproof {args.command}: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 3


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise BrokenPipeError again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # stdout is not a file descriptor (e.g. captured by a test): nothing left to flush


if __name__ == "__main__":
    sys.exit(main())
