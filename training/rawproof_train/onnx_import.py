"""Shipped ONNX model -> training checkpoint, so a run can continue from what the SDK ships.

The exporter keeps each ``state_dict`` key as the name of its ONNX initializer, and writes the
architecture, kind, classes and training config into ``metadata_props``. This reads them back into
the checkpoint format of :mod:`rawproof_export.onnx_export` (``nip.pt`` / ``fan.pt``), loads the
weights into the training module with ``strict=True`` (a renamed or missing tensor is an error,
never a silently re-initialised layer) and checks that torch and the ONNX file agree on a probe
input.

    python -m rawproof_train import-onnx sdk/rawproof/models/inetplus_joint.onnx -o runs/shipped/nip.pt
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from rawproof.models import load_model_info
from rawproof.runtime import Session

__all__ = ["checkpoint_from_onnx", "register"]


def _module(ckpt: dict[str, Any], load: bool = True) -> torch.nn.Module:
    """The training module of ``ckpt`` (weights loaded strictly, eval mode), or a fresh one when not ``load``."""
    from rawproof_train.fan import FAN
    from rawproof_train.nip import create_nip

    module = create_nip(ckpt["arch"], **ckpt["arch_kwargs"]) if ckpt["kind"] == "nip" else FAN(n_classes=len(ckpt["classes"]))
    if load:
        module.load_state_dict(ckpt["state_dict"], strict=True)
    return module.eval()


def checkpoint_from_onnx(path: str | os.PathLike[str], *, atol: float = 1e-4) -> dict[str, Any]:
    """The training checkpoint (dict, documented format) of an exported NIP or FAN ``.onnx`` file.

    Raises:
        ValueError: the file lacks the exporter's metadata, its initializers do not fill the
            architecture's ``state_dict`` exactly, or torch and onnxruntime disagree by more than ``atol``.
    """
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get("kind") not in ("nip", "fan") or "architecture" not in meta:
        raise ValueError(f"{path}: not a rawproof export (metadata lacks kind/architecture)")
    config = json.loads(meta.get("config", "{}"))
    arch_kwargs = {"base_filters": config["nip_width"]} if meta["kind"] == "nip" and config.get("nip_width") else {}
    inits = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in model.graph.initializer}
    ckpt: dict[str, Any] = {
        "arch": meta["architecture"], "arch_kwargs": arch_kwargs, "kind": meta["kind"],
        "classes": json.loads(meta.get("classes", "[]")), "config": config,
        "metrics": json.loads(meta.get("metrics", "{}")), "trained_on": meta.get("trained_on", "unknown"),
        "git_commit": meta.get("git_commit"), "imported_from": Path(path).name,
    }
    wanted = _module(ckpt, load=False).state_dict()
    # The exporter drops an all-zero bias (the Conv node then has no third input): restore it as zeros.
    biasless = {n.input[1] for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose") and len(n.input) == 2}
    for k, v in wanted.items():
        if k not in inits and k.endswith(".bias") and k[:-len("bias")] + "weight" in biasless:
            inits[k] = torch.zeros_like(v)
    missing = [k for k in wanted if k not in inits]
    if missing:
        raise ValueError(f"{path}: initializers missing for {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    ckpt["state_dict"] = {k: inits[k].reshape(v.shape).float() for k, v in wanted.items()}
    module = _module(ckpt)
    x = np.random.default_rng(0).random((1, 4, 48, 64) if ckpt["kind"] == "nip" else (1, 3, 64, 64), dtype=np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    with Session(load_model_info(path)) as sess:
        got = sess.run(x)
    diff = float(np.abs(ref - got).max())
    if diff > atol:
        raise ValueError(f"{path}: torch and onnxruntime differ by {diff:.3g} (> {atol}) after import")
    return ckpt


def _run(args: argparse.Namespace) -> int:
    ckpt = checkpoint_from_onnx(args.model)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out)
    print(json.dumps({"wrote": str(out), "kind": ckpt["kind"], "arch": ckpt["arch"], "tensors": len(ckpt["state_dict"])}))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("import-onnx", help="turn a shipped NIP/FAN .onnx back into a training checkpoint (to continue training it)",
                              description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("model", help="exported .onnx file (its sibling .json must be there)")
    p.add_argument("-o", "--out", required=True, help="checkpoint to write (nip.pt / fan.pt format)")
    p.set_defaults(func=_run)
