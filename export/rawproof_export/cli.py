"""``python -m rawproof_export``: checkpoint -> shipped ONNX model + JSON, with parity check.

Examples::

    # a model pair (what ships): NIP + the FAN trained with it, each naming the other by SHA-256
    python -m rawproof_export pair --nip-checkpoint runs/joint/nip.pt --fan-checkpoint runs/fanft/fan.pt \\
        --name mysensor --tier cpu --out-dir models/
    # one model
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


def build_pair_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m rawproof_export pair`` (see :mod:`rawproof_export.pair`)."""
    p = argparse.ArgumentParser(
        prog="python -m rawproof_export pair",
        description="Export a NIP and the FAN trained with it as one model pair: <out-dir>/<name>.onnx and "
                    "<out-dir>/fan_<name>.onnx, each naming the other by SHA-256, with tier, patch size, trained "
                    "channel and input layout in their metadata. Give both checkpoints, or both ONNX files to re-pair.",
    )
    src = p.add_argument_group("source (checkpoints, or models already exported)")
    src.add_argument("--nip-checkpoint", help="the NIP's nip.pt")
    src.add_argument("--fan-checkpoint", help="the FAN's fan.pt (trained with that NIP)")
    src.add_argument("--nip-onnx", help="an exported NIP .onnx (with its .json), instead of --nip-checkpoint")
    src.add_argument("--fan-onnx", help="an exported FAN .onnx (with its .json), instead of --fan-checkpoint")
    o = p.add_argument_group("pair")
    o.add_argument("--name", required=True, help="pair name: the NIP file is NAME.onnx, the FAN fan_NAME.onnx")
    o.add_argument("--tier", required=True, choices=["cpu", "full"], help="cpu: fast, default on CPU; full: most accurate, for accelerators")
    o.add_argument("--out-dir", required=True, help="folder to write the pair into (e.g. a vendor's models folder)")
    o.add_argument("--default", action="store_true", help="mark the pair default within its tier")
    o.add_argument("--nip-metadata", nargs="*", default=[], metavar="K=V", help="extra/overriding NIP metadata (V parsed as JSON if valid)")
    o.add_argument("--fan-metadata", nargs="*", default=[], metavar="K=V", help="extra/overriding FAN metadata, e.g. patch_size=64")
    o.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset for checkpoints (default {DEFAULT_OPSET})")
    o.add_argument("--exporter", choices=["auto", "dynamo", "torchscript"], default="auto",
                   help="torch exporter for checkpoints; auto tries dynamo, then TorchScript")
    o.add_argument("--fp16", action="store_true", help="ship float16 compute (float32 I/O) for both models, e.g. a full pair")
    o.add_argument("--tolerance", type=float, default=1e-4, help="max abs diff allowed vs torch (default 1e-4)")
    p.add_argument("--json", action="store_true", help="print the pair report as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    return p


def _main_pair(argv: list[str]) -> int:
    from rawproof_export.pair import export_pair, pair_exported

    parser = build_pair_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ckpts, onnxs = (args.nip_checkpoint, args.fan_checkpoint), (args.nip_onnx, args.fan_onnx)
    if not (all(ckpts) and not any(onnxs)) and not (all(onnxs) and not any(ckpts)):
        parser.error("give --nip-checkpoint and --fan-checkpoint, or --nip-onnx and --fan-onnx")
    try:
        nip_meta, fan_meta = _parse_kv(args.nip_metadata), _parse_kv(args.fan_metadata)
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))
    common = {"name": args.name, "tier": args.tier, "nip_metadata": nip_meta, "fan_metadata": fan_meta, "default": args.default}
    try:
        if all(ckpts):
            rep = export_pair(args.nip_checkpoint, args.fan_checkpoint, args.out_dir, opset=args.opset, tolerance=args.tolerance,
                              exporter=args.exporter, fp16=args.fp16, **common)
        else:
            rep = pair_exported(args.nip_onnx, args.fan_onnx, args.out_dir, **common)
    except ExportError as e:
        print(f"rawproof_export pair: error: {e}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(rep.to_dict(), indent=2))
    else:
        print(f"pair {rep.name} (tier {rep.tier}) in {rep.nip.path.parent}")
        print(f"  NIP {rep.nip.path.name} sha256 {rep.nip.sha256}")
        print(f"  FAN {rep.fan.path.name} sha256 {rep.fan.sha256}, {rep.fan.metadata['patch_size']} px patches, "
              f"trained channel {json.dumps(rep.fan.metadata['trained_channel'])}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["pair"]:
        return _main_pair(argv[1:])
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
