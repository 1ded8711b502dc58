"""``rawproof demo``: the whole data path on the bundled sample RAW, top to bottom.

1. develop the sample (Canon PowerShot G2 CRW) with the default shipped NIP;
2. sign it at capture with freshly generated *test* credentials (C2PA, ES256);
3. verify the signed file with the test root as device trust anchor;
4. simulate a sharing platform (strip metadata, 2x bilinear downscale, JPEG q50) and
   verify again: no provenance left, so the report rests on the learned traces.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from importlib.resources import files
from pathlib import Path

import numpy as np
from PIL import Image

from rawproof.develop import develop
from rawproof.errors import ModelError
from rawproof.keygen import generate_test_pki
from rawproof.provenance import Signer
from rawproof.untrusted import dumps_strict
from rawproof.verify import format_report, verify

__all__ = ["sample_raw_path", "run_demo", "register"]


def sample_raw_path() -> Path:
    """Path of the bundled sample RAW (see ``rawproof/samples/NOTICE.md`` for its source and licence)."""
    return Path(str(files("rawproof") / "samples" / "canon_powershot_g2_colorchecker.crw"))


def platform_reencode(jpeg: bytes, *, downscale: int = 2, quality: int = 50) -> bytes:
    """What a sharing platform does: decode, bilinear downscale, re-encode as JPEG (metadata dropped)."""
    img = Image.open(io.BytesIO(jpeg)).convert("RGB")
    small = img.resize((img.width // downscale, img.height // downscale), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def run_demo(out_dir: Path, *, as_json: bool = False) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = sample_raw_path()
    with tempfile.TemporaryDirectory(prefix="rawproof-demo-pki-") as tmp:
        pki = generate_test_pki(tmp, device_id="rawproof-demo-device")
        print("WARNING: signing with throw-away TEST credentials; production devices need a vendor CA.", file=sys.stderr)
        try:
            with Signer.from_files(pki.device_chain, pki.device_key, alg=pki.alg.value) as signer:
                result = develop(raw, signer=signer, quality=92)
        except ModelError as e:
            print(f"rawproof demo: develop() is not available yet: {e}", file=sys.stderr)
            return 0
        signed_path = result.save(out_dir / "demo_signed.jpg")
        shared_path = out_dir / "demo_shared.jpg"
        shared_path.write_bytes(platform_reencode(result.signed))
        signed_report = verify(signed_path, device_anchors=pki.root_cert)
        shared_report = verify(shared_path, device_anchors=pki.root_cert)
    timings = {k: round(v, 1) for k, v in result.timings.as_dict().items()}
    if as_json:
        print(dumps_strict({
            "raw": raw.name, "model": {"name": result.model_name, "sha256": result.model_sha256},
            "provider": result.provider, "size": [result.width, result.height], "timings_ms": timings,
            "signed": {"path": str(signed_path), **signed_report.to_dict()},
            "shared": {"path": str(shared_path), **shared_report.to_dict()},
        }, indent=2, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)))
        return 0
    print(f"developed {raw.name}: {result.width}x{result.height} with NIP {result.model_name} "
          f"({result.model_sha256[:12]}) on {result.provider}")
    print("  timings [ms]: " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    print(f"signed -> {signed_path}")
    print(format_report(signed_report, signed_path.name))
    print(f"after a platform re-encode (2x downscale, JPEG q50, metadata stripped) -> {shared_path}")
    print(format_report(shared_report, shared_path.name))
    return 0


def _run(args: argparse.Namespace) -> int:
    return run_demo(Path(args.out), as_json=args.json)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="develop, sign and verify the bundled sample RAW", description=(__doc__ or "").strip())
    p.add_argument("-o", "--out", default="rawproof-demo", help="folder for the demo images (default ./rawproof-demo)")
    p.add_argument("--json", action="store_true", help="print a machine-readable report")
    p.set_defaults(func=_run)
