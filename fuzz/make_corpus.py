"""Seed corpora and fixtures for the fuzz targets (``fuzz/fuzz_{native,verify,structure}.py``).

Writes under ``cache/fuzz/`` (git-ignored) unless ``--out`` says otherwise::

    cache/fuzz/pki/          test root CA + device key (rawproof.keygen.generate_test_pki)
    cache/fuzz/models/       tiny FAN (.onnx + .json) built with onnx.helper, for verify()
    cache/fuzz/seeds/verify/ signed PNG/JPEG (C2PA), unsigned, CMYK, 16-bit, animated,
                             truncated and bit-flipped variants, huge declared sizes
    cache/fuzz/seeds/native/ byte strings the native harness decodes into calls
    cache/fuzz/seeds/structure/ byte strings the structure harness decodes into builds

Usage: ``python fuzz/make_corpus.py [--out DIR]``. Idempotent; takes ~1 s.
"""

from __future__ import annotations

import argparse
import io
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "cache" / "fuzz"

FAN_PATCH = 16
"""Patch side of the fuzzing FAN: small, so tiny fuzzed images still reach the ONNX run."""


def build_fan(models_dir: Path) -> Path:
    """Write a tiny FAN (``tests/_onnx_models.make_fan``, classes native + 4) with patch 16, downscale 2."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from _onnx_models import make_fan, write_model

    path = models_dir / "fuzz_fan.onnx"
    if not path.with_suffix(".json").is_file():
        write_model(make_fan(5), path, {"name": "fuzz_fan", "kind": "fan", "classes": ["native", "a", "b", "c", "d"],
                                        "patch_size": FAN_PATCH, "trained_channel": {"downscale": 2}})
    return path


def build_pki(pki_dir: Path):
    """The ES256 test PKI in ``pki_dir`` (created once; reused afterwards)."""
    from rawproof.keygen import KeyAlg, TestPki, generate_test_pki

    paths = TestPki(pki_dir / "root.pem", pki_dir / "root_key.pem", pki_dir / "device_chain.pem",
                    pki_dir / "device_key.pem", KeyAlg.ES256)
    if all(p.is_file() for p in (paths.root_cert, paths.device_chain, paths.device_key)):
        return paths
    return generate_test_pki(pki_dir, alg="es256")


def _encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_with_size(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR declaring width x height RGB8, one tiny IDAT, IEND."""
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _jpeg_with_size(width: int, height: int) -> bytes:
    """A small JPEG whose SOF0 frame header is patched to declare width x height."""
    data = bytearray(_encode(Image.new("RGB", (16, 16), (90, 120, 200)), "JPEG", quality=80))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def verify_seeds(pki) -> dict[str, bytes]:
    """name -> encoded image: the verify() seed corpus (see the module docstring)."""
    from rawproof.provenance import CaptureInfo, ModelRef, Signer, sign_image

    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    im = Image.fromarray(rgb)
    capture = CaptureInfo(camera_make="Fuzz", camera_model="Cam", device_id="fuzz-1", raw_sha256="a" * 64,
                          nip=ModelRef("nip", "b" * 64), capture_time="2025-01-31T12:00:00+00:00",
                          develop={"format": "jpeg", "width": 48, "height": 40})
    png, jpeg = _encode(im, "PNG"), _encode(im, "JPEG", quality=90)
    with Signer.from_files(pki.device_chain, pki.device_key, alg="es256") as signer:
        signed_png = sign_image(png, "image/png", capture, signer)
        signed_jpeg = sign_image(jpeg, "image/jpeg", capture, signer)
    frames = [Image.fromarray(np.roll(rgb, k, axis=1)) for k in range(3)]
    seeds = {
        "signed.png": signed_png,
        "signed.jpg": signed_jpeg,
        "plain.png": png,
        "plain.jpg": jpeg,
        "tiny_1x1.png": _encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"),
        "wide_300x1.jpg": _encode(Image.new("RGB", (300, 1), (9, 9, 9)), "JPEG"),
        "cmyk.jpg": _encode(im.convert("CMYK"), "JPEG", quality=90),
        "gray16.png": _encode(Image.fromarray(rng.integers(0, 65536, (20, 24), dtype=np.uint16)), "PNG"),
        "rgba.png": _encode(im.convert("RGBA"), "PNG"),
        "palette.png": _encode(im.convert("P"), "PNG"),
        "anim.gif": _encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "anim.png": _encode(frames[0], "PNG", save_all=True, append_images=frames[1:]),
        "anim.webp": _encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True),
        "huge_decl.png": _png_with_size(65535, 65535),
        "huge_decl.jpg": _jpeg_with_size(65535, 65535),
        "zero_decl.png": _png_with_size(0, 0),
    }
    # Regression inputs of earlier findings: a CBOR text string in the capture assertion whose
    # header declares 0x70000000 bytes (c2pa grew by ~2 GB), and a 48 x 4648 JPEG whose
    # heatmap preview rounds its short side up by 0.43 px.
    key = signed_jpeg.index(b"dmake")
    seeds["regress_cbor_length.jpg"] = signed_jpeg[:key] + b"\x7a\x70\x00\x00\x00" + signed_jpeg[key + 5:]
    seeds["regress_thin.jpg"] = _encode(Image.new("RGB", (48, 4648), (120, 130, 140)), "JPEG")
    # Issue 21: the same CBOR bomb behind stray bytes before the APP11 (c2pa walks past them, the
    # old pre-flight stopped there), and a progressive JPEG with 300 empty scans.
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from _hostile_inputs import insert_before_marker, progressive_jpeg_with_scans

    seeds["regress_stray_app11.jpg"] = insert_before_marker(seeds["regress_cbor_length.jpg"], 0xEB, b"\x00\x00\x00")
    seeds["regress_scans.jpg"] = progressive_jpeg_with_scans(256, 256, 300)
    for name in ("signed.png", "signed.jpg"):
        base = seeds[name]
        stem, ext = name.split(".")
        for frac in (0.25, 0.5, 0.9):
            seeds[f"{stem}_trunc{int(frac * 100)}.{ext}"] = base[: int(len(base) * frac)]
        for k in range(4):
            flipped = bytearray(base)
            for pos in rng.integers(0, len(base), 1 + k):
                flipped[pos] ^= 1 << int(rng.integers(0, 8))
            seeds[f"{stem}_flip{k}.{ext}"] = bytes(flipped)
    return seeds


def native_seeds(seed: int = 11) -> dict[str, bytes]:
    """Byte strings for a FuzzedDataProvider harness (native, structure): the first bytes pick the operation."""
    rng = np.random.default_rng(seed)
    return {f"seed{i:02d}": rng.integers(0, 256, n, dtype=np.uint8).tobytes()
            for i, n in enumerate((16, 64, 64, 256, 256, 1024, 1024, 4096, 4096, 16384))}


def make_all(out: Path = DEFAULT_OUT) -> dict[str, Path]:
    """Write fixtures and seeds; returns the folders (``pki``, ``models``, ``seeds_*`` per target)."""
    dirs = {"pki": out / "pki", "models": out / "models", "seeds_verify": out / "seeds" / "verify",
            "seeds_native": out / "seeds" / "native", "seeds_structure": out / "seeds" / "structure"}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    build_fan(dirs["models"])
    pki = build_pki(dirs["pki"])
    for name, data in verify_seeds(pki).items():
        (dirs["seeds_verify"] / name).write_bytes(data)
    for name, data in native_seeds().items():
        (dirs["seeds_native"] / name).write_bytes(data)
    for name, data in native_seeds(21).items():
        (dirs["seeds_structure"] / name).write_bytes(data)
    return dirs


def main(argv: list[str] | None = None) -> int:
    """CLI entry: ``python fuzz/make_corpus.py [--out DIR]``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: cache/fuzz)")
    args = p.parse_args(argv)
    dirs = make_all(args.out)
    for k, d in dirs.items():
        print(f"{k:<13} {d} ({sum(1 for _ in d.iterdir())} files)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
