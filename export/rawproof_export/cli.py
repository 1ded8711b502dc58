"""``python -m rawproof_export``: checkpoint -> shipped ONNX model + JSON, with parity check.

Example::

    python -m rawproof_export --kind nip --arch unet --checkpoint runs/unet/best.pt \\
        --out sdk/rawproof/models/unet.onnx --fp16 --metadata default=true

Exit codes: 0 exported and parity passed, 2 usage error, 3 export/parity failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from rawproof_export.onnx_export import DEFAULT_OPSET, ExportError, export_checkpoint

__all__ = ["build_parser", "main"]


def _parse_kv(items: list[str]) -> dict[str, Any]:
    """``k=v`` pairs; ``v`` is parsed as JSON when it is valid JSON, else kept as a string."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--metadata expects key=value, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rawproof_export",
        description="Export a training checkpoint to a shipped ONNX model + JSON, with a parity check.",
    )
    g = p.add_argument_group("model")
    g.add_argument("--kind", choices=["nip", "fan"], required=True, help="model kind (must match the checkpoint)")
    g.add_argument("--arch", required=True, help="architecture name (must match the checkpoint's 'arch')")
    g.add_argument("--checkpoint", required=True, help="training checkpoint (.pt) in the rawproof_export format")
    o = p.add_argument_group("output")
    o.add_argument("--out", required=True, help="target .onnx path; NAME.json is written beside it")
    o.add_argument("--fp16", action="store_true", help="also write NAME_fp16.onnx (fp16 compute, fp32 I/O)")
    o.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset, >= 17 (default {DEFAULT_OPSET})")
    o.add_argument("--exporter", choices=["auto", "dynamo", "torchscript"], default="auto",
                   help="torch exporter; auto tries dynamo, then TorchScript")
    o.add_argument("--metadata", nargs="*", default=[], metavar="K=V", help="extra/overriding metadata (V parsed as JSON if valid)")
    o.add_argument("--tolerance", type=float, default=1e-4, help="max abs diff allowed vs torch, fp32 (default 1e-4)")
    p.add_argument("--json", action="store_true", help="print the export report as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        meta = _parse_kv(args.metadata)
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))
    try:
        rep = export_checkpoint(
            args.checkpoint, args.out, kind=args.kind, arch=args.arch, metadata=meta,
            opset=args.opset, fp16=args.fp16, exporter=args.exporter, tolerance=args.tolerance,
        )
    except ExportError as e:
        print(f"rawproof_export: error: {e}", file=sys.stderr)
        return 3
    summary = {
        "path": str(rep.path), "sha256": rep.sha256, "exporter": rep.exporter, "opset": rep.opset,
        "max_abs_diff": rep.max_abs_diff,
        "parity": [{"input": c.label, "shape": list(c.shape), "max_abs_diff": c.max_abs_diff} for c in rep.parity],
        "fp16_path": None if rep.fp16_path is None else str(rep.fp16_path), "fp16_max_abs_diff": rep.fp16_max_abs_diff,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"wrote {rep.path} ({rep.exporter}, opset {rep.opset}), sha256 {rep.sha256}")
        print(f"parity vs torch: max abs diff {rep.max_abs_diff:.3g} over {len(rep.parity)} inputs")
        if rep.fp16_path is not None:
            print(f"wrote {rep.fp16_path}: fp16 max abs diff {rep.fp16_max_abs_diff:.3g}")
    return 0
