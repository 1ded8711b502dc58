"""``python -m rawproof_train``: dataset preparation, training, evaluation and reports.

Each subcommand lives in the module that does the work; that module exposes
``register(subparsers)`` which adds its parser (argument groups, ``--help`` text) and
sets ``func``. Listed here in the order ``--help`` shows them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

_COMMAND_MODULES: list[str] = [
    "rawproof_train.prepare",
    "rawproof_train.train",
    "rawproof_train.evaluate",
    "rawproof_train.report",
    "rawproof_train.forensic_eval",
    "rawproof_train.origin",
    "rawproof_train.image_eval",
    "rawproof_train.prnu_experiment",
    "rawproof_train.jpeg_report",
    "rawproof_train.onnx_import",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rawproof_train",
        description="Prepare data, train the NIP and FAN (alone and jointly), evaluate, report.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
