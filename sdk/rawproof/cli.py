"""The ``rawproof`` command line.

Each subcommand lives in the module that does the work; that module exposes
``register(subparsers)`` which adds its parser and sets ``func``. Exit codes: 0 success,
2 usage error (argparse), 3 any failure; ``verify`` documents its own verdict codes (and
takes 3 for usage errors, since its 2 means "no provenance").

A failure prints one line to stderr and exits 3: ``rawproof COMMAND: error: MESSAGE`` for a
:class:`RawproofError` or one of the documented built-ins (``ValueError`` for an invalid
option, ``OSError`` for a path that cannot be read or written, ``TypeError``), and
``rawproof COMMAND: unexpected error (TYPE): MESSAGE`` for anything else (a bug to
report). ``--debug`` (before or after the command) adds the traceback. A reader that closes
stdout early (``| head``) gets exit 3 and a message, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback

from rawproof._version import __version__
from rawproof.errors import RawproofError

# Modules that contribute subcommands, in the order --help lists them.
_COMMAND_MODULES = ["rawproof.demo", "rawproof.develop", "rawproof.verify", "rawproof.fingerprint", "rawproof.batch", "rawproof.keygen", "rawproof.stamp", "rawproof.repo.cli", "rawproof.web.serve", "rawproof.bench", "rawproof.pairs", "rawproof.sensor"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rawproof",
        description="Develop Bayer RAW through a neural imaging pipeline, sign it (C2PA), verify it.",
    )
    parser.add_argument("--version", action="version", version=f"rawproof {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    parser.add_argument("--debug", action="store_true", help="on a failure, print the Python traceback too")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for p in sub.choices.values():
        # Also accepted after the command; SUPPRESS keeps a flag given before it.
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="on a failure, print the traceback")
    return parser


def _one_line(e: BaseException, limit: int = 500) -> str:
    text = " ".join(str(e).split()) or repr(e)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    except Exception as e:  # every failure exits 3 with one line; --debug shows where it came from
        if args.debug:
            traceback.print_exc()
        expected = isinstance(e, (RawproofError, ValueError, OSError, TypeError))
        kind = "error" if expected else f"unexpected error ({type(e).__name__})"
        print(f"rawproof {args.command}: {kind}: {_one_line(e)}", file=sys.stderr)
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
