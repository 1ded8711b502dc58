"""Compare dJPEG (hard rounding) with Pillow's libjpeg on real photos and write a Markdown report.

``python -m rawproof_train.jpeg_report [-o docs/djpeg_vs_libjpeg.md] [--photos DIR] [--limit N]``

For each photo, quality and chroma subsampling it encodes the 8-bit image with Pillow
(``quality=q``, ``subsampling=0`` for 4:4:4 or ``2`` for 4:2:0, default quantisation tables),
decodes it with Pillow, and compares:

* PSNR between dJPEG's output (``rounding="hard"``, rounded to 8 bits) and Pillow's decoded image;
* the quantised DCT coefficients: libjpeg's are read straight from the JPEG file's entropy-coded
  data by :func:`read_jpeg_coefficients` (a small baseline Huffman decoder, independent of
  dJPEG and of any decoder's inverse DCT), dJPEG's come from
  :func:`rawproof_train.jpeg.jpeg_coefficients`; the report gives their mean absolute
  difference and the share of coefficients that agree exactly;
* that the quantisation tables in the file equal :func:`rawproof_train.jpeg.quality_qtable`.

Photos default to the Kodak set under ``$RAWPROOF_DATA/photos/kodak`` (``RAWPROOF_DATA``
defaults to ``shared/data`` beside the repository).
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from rawproof.imageio import PILLOW_SUBSAMPLING
from rawproof_train.jpeg import (
    ZIGZAG,
    Subsampling,
    block_dct,
    block_idct,
    djpeg,
    jpeg_coefficients,
    quality_qtable,
    rgb_to_ycbcr,
    ycbcr_to_rgb,
)

__all__ = [
    "JpegCoefficients",
    "ImageComparison",
    "read_jpeg_coefficients",
    "image_blocks",
    "pillow_jpeg",
    "compare_image",
    "run_report",
    "render_markdown",
    "register",
    "main",
]

log = logging.getLogger(__name__)

QUALITIES = (30, 50, 80, 95)
SUBSAMPLINGS = (Subsampling.S444, Subsampling.S420)
COMMAND = "python -m rawproof_train.jpeg_report -o docs/djpeg_vs_libjpeg.md"


@dataclass(frozen=True)
class JpegCoefficients:
    """Quantised DCT coefficients of a baseline JPEG file, as stored (before dequantisation).

    Attributes:
        qtables: quantisation table id -> int64 8x8 table in natural order.
        sampling: per component (Y, Cb, Cr), its (horizontal, vertical) sampling factors.
        table_ids: per component, the id of its quantisation table.
        blocks: per component, int64 array (blocks_y, blocks_x, 8, 8) in natural order, covering the
            MCU-padded component plane.
    """

    qtables: dict[int, np.ndarray]
    sampling: tuple[tuple[int, int], ...]
    table_ids: tuple[int, ...]
    blocks: tuple[np.ndarray, ...]


def _huffman_lookup(counts: list[int], symbols: bytes) -> tuple[np.ndarray, np.ndarray]:
    """16-bit-peek lookup tables: (code length, symbol) for every 16-bit window."""
    lengths = np.zeros(1 << 16, dtype=np.int64)
    values = np.zeros(1 << 16, dtype=np.int64)
    code, k = 0, 0
    for length in range(1, 17):
        for _ in range(counts[length - 1]):
            lo = code << (16 - length)
            hi = (code + 1) << (16 - length)
            lengths[lo:hi] = length
            values[lo:hi] = symbols[k]
            code += 1
            k += 1
        code <<= 1
    return lengths, values


def _windows16(scan: bytes) -> np.ndarray:
    """For every bit position of the unstuffed scan, the next 16 bits as an integer (1-padded)."""
    data = scan.replace(b"\xff\x00", b"\xff")
    bits = np.unpackbits(np.frombuffer(data + b"\xff\xff\xff", dtype=np.uint8)).astype(np.int64)
    n = len(bits) - 16
    win = np.zeros(n, dtype=np.int64)
    for j in range(16):
        win = (win << 1) | bits[j : j + n]
    return win


def read_jpeg_coefficients(data: bytes) -> JpegCoefficients:
    """Read the quantised DCT coefficients of a baseline (SOF0), single-scan, Huffman JPEG.

    Handles what libjpeg writes by default (Pillow without ``progressive``/``optimize``): 8-bit
    samples, any sampling factors, restart intervals.

    Args:
        data: the JPEG file's bytes.

    Returns:
        The coefficients, tables and sampling factors.

    Raises:
        ValueError: not a JPEG, or a feature outside baseline sequential Huffman coding.
    """
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG file (no SOI marker)")
    qtables: dict[int, np.ndarray] = {}
    huff: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    comps: list[tuple[int, int, int, int]] = []
    height = width = 0
    restart = 0
    pos = 2
    while True:
        if data[pos] != 0xFF:
            raise ValueError(f"expected a marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xD9:
            raise ValueError("no scan before EOI")
        seg_len = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        seg = data[pos + 4 : pos + 2 + seg_len]
        pos += 2 + seg_len
        if marker == 0xDB:
            i = 0
            while i < len(seg):
                precision, tid = seg[i] >> 4, seg[i] & 15
                n = 128 if precision else 64
                raw = np.frombuffer(seg[i + 1 : i + 1 + n], dtype=">u2" if precision else np.uint8).astype(np.int64)
                table = np.zeros(64, dtype=np.int64)
                table[ZIGZAG] = raw
                qtables[tid] = table.reshape(8, 8)
                i += 1 + n
        elif marker == 0xC4:
            i = 0
            while i < len(seg):
                cls, tid = seg[i] >> 4, seg[i] & 15
                counts = list(seg[i + 1 : i + 17])
                total = sum(counts)
                huff[(cls, tid)] = _huffman_lookup(counts, seg[i + 17 : i + 17 + total])
                i += 17 + total
        elif marker == 0xC0:
            if seg[0] != 8:
                raise ValueError(f"only 8-bit samples are supported, got {seg[0]}")
            height, width = struct.unpack(">HH", seg[1:5])
            comps = [(seg[6 + 3 * c], seg[7 + 3 * c] >> 4, seg[7 + 3 * c] & 15, seg[8 + 3 * c]) for c in range(seg[5])]
        elif marker in (0xC1, 0xC2, 0xC3) or 0xC5 <= marker <= 0xCF and marker not in (0xC8, 0xCC):
            raise ValueError(f"unsupported JPEG process (SOF marker 0x{marker:02X}); only baseline is read")
        elif marker == 0xDD:
            restart = struct.unpack(">H", seg[:2])[0]
        elif marker == 0xDA:
            break
    ns = seg[0]
    scan_tables = {seg[1 + 2 * k]: (seg[2 + 2 * k] >> 4, seg[2 + 2 * k] & 15) for k in range(ns)}
    if ns != len(comps):
        raise ValueError("only single-scan (interleaved) files are supported")
    end = data.find(b"\xff\xd9", pos)
    scan = data[pos : end if end >= 0 else len(data)]

    hmax = max(c[1] for c in comps)
    vmax = max(c[2] for c in comps)
    mcux = -(-width // (8 * hmax))
    mcuy = -(-height // (8 * vmax))
    blocks = [np.zeros((mcuy * v, mcux * h, 8, 8), dtype=np.int64) for _, h, v, _ in comps]
    segments = [scan]
    if restart:
        segments = [s[1:] if k else s for k, s in enumerate(_split_restarts(scan))]
    mcu_index = 0
    for segment in segments:
        win = _windows16(segment)
        bit = 0
        pred = [0] * len(comps)
        n_mcus = restart if restart else mcux * mcuy
        for _ in range(min(n_mcus, mcux * mcuy - mcu_index)):
            my, mx = divmod(mcu_index, mcux)
            for ci, (cid, h, v, _) in enumerate(comps):
                dc_len, dc_val = huff[(0, scan_tables[cid][0])]
                ac_len, ac_val = huff[(1, scan_tables[cid][1])]
                for by in range(v):
                    for bx in range(h):
                        zz = np.zeros(64, dtype=np.int64)
                        w = int(win[bit])
                        bit += int(dc_len[w])
                        s = int(dc_val[w])
                        diff = 0
                        if s:
                            diff = int(win[bit]) >> (16 - s)
                            bit += s
                            if diff < (1 << (s - 1)):
                                diff -= (1 << s) - 1
                        pred[ci] += diff
                        zz[0] = pred[ci]
                        k = 1
                        while k < 64:
                            w = int(win[bit])
                            bit += int(ac_len[w])
                            rs = int(ac_val[w])
                            r, s = rs >> 4, rs & 15
                            if s == 0:
                                if r != 15:
                                    break
                                k += 16
                                continue
                            k += r
                            val = int(win[bit]) >> (16 - s)
                            bit += s
                            if val < (1 << (s - 1)):
                                val -= (1 << s) - 1
                            zz[k] = val
                            k += 1
                        nat = np.zeros(64, dtype=np.int64)
                        nat[ZIGZAG] = zz
                        blocks[ci][my * v + by, mx * h + bx] = nat.reshape(8, 8)
            mcu_index += 1
    return JpegCoefficients(
        qtables=qtables,
        sampling=tuple((h, v) for _, h, v, _ in comps),
        table_ids=tuple(t for *_, t in comps),
        blocks=tuple(blocks),
    )


def _split_restarts(scan: bytes) -> list[bytes]:
    """Split entropy-coded data at RSTn markers; each piece after the first starts with the marker's second byte."""
    pieces, start, i = [], 0, 0
    while i < len(scan) - 1:
        if scan[i] == 0xFF and 0xD0 <= scan[i + 1] <= 0xD7:
            pieces.append(scan[start:i])
            start = i + 1
            i += 2
        else:
            i += 1
    pieces.append(scan[start:])
    return pieces


def image_blocks(coefs: JpegCoefficients, height: int, width: int) -> list[tuple[int, int]]:
    """Per component, the (rows, cols) of blocks that cover image pixels.

    Blocks beyond these only fill the last MCU; libjpeg writes them as DC-only "dummy" blocks,
    which an edge-replicating model does not reproduce and which no decoder shows.
    """
    hmax = max(h for h, _ in coefs.sampling)
    vmax = max(v for _, v in coefs.sampling)
    return [(-(-(-(-height * v // vmax)) // 8), -(-(-(-width * h // hmax)) // 8)) for h, v in coefs.sampling]


def pillow_jpeg(image: np.ndarray, quality: int, subsampling: Subsampling | str) -> tuple[bytes, np.ndarray]:
    """Encode an HxWx3 uint8 image with Pillow and decode it; returns (file bytes, decoded HxWx3 uint8)."""
    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format="JPEG", quality=quality, subsampling=PILLOW_SUBSAMPLING[Subsampling(subsampling).value])
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        decoded = np.asarray(im.convert("RGB"))
    return data, decoded


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def _djpeg_420_nearest(x: torch.Tensor, quality: int) -> torch.Tensor:
    """4:2:0 dJPEG with nearest-neighbour chroma upsampling instead of fancy (for the comparison column)."""
    h, w = x.shape[-2:]
    xp = F.pad(x, (0, (-w) % 16, 0, (-h) % 16), mode="replicate")
    ycc = rgb_to_ycbcr(255.0 * xp) - 128.0
    ql = torch.as_tensor(quality_qtable(quality), dtype=x.dtype)
    qc = torch.as_tensor(quality_qtable(quality, chroma=True), dtype=x.dtype)
    luma = block_idct(torch.round(block_dct(ycc[:, 0]) / ql) * ql)
    chroma = block_idct(torch.round(block_dct(F.avg_pool2d(ycc[:, 1:], 2)) / qc) * qc)
    chroma = F.interpolate(chroma, scale_factor=2, mode="nearest")
    rgb = ycbcr_to_rgb(torch.cat([luma.unsqueeze(1), chroma], dim=1) + 128.0) / 255.0
    return rgb[..., :h, :w].clamp(0, 1)


@dataclass(frozen=True)
class ImageComparison:
    """dJPEG vs libjpeg on one image at one setting.

    Attributes:
        quality: IJG quality.
        subsampling: ``"444"`` or ``"420"``.
        psnr_db: PSNR (dB, peak 255) of dJPEG-hard (rounded to 8 bits) against Pillow's decoded image.
        psnr_nearest_db: the same with nearest-neighbour chroma upsampling (4:2:0 only, else NaN).
        coef_mad: mean absolute difference of quantised DCT coefficients (all components, blocks that
            cover image pixels, see :func:`image_blocks`).
        coef_equal: share of quantised coefficients that are identical, in [0, 1].
        qtables_match: the file's quantisation tables equal :func:`quality_qtable`.
    """

    quality: int
    subsampling: str
    psnr_db: float
    psnr_nearest_db: float
    coef_mad: float
    coef_equal: float
    qtables_match: bool


def compare_image(image: np.ndarray, quality: int, subsampling: Subsampling | str) -> ImageComparison:
    """Compare dJPEG with Pillow's libjpeg on one HxWx3 uint8 image (see the module docstring)."""
    sub = Subsampling(subsampling)
    data, decoded = pillow_jpeg(image, quality, sub)
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).unsqueeze(0).double() / 255.0
    with torch.no_grad():
        ours = (djpeg(x, quality, "hard", sub)[0].permute(1, 2, 0).numpy() * 255.0).round()
        nearest = float("nan")
        if sub is Subsampling.S420:
            nearest = _psnr((_djpeg_420_nearest(x, quality)[0].permute(1, 2, 0).numpy() * 255.0).round(), decoded)
        luma, chroma = jpeg_coefficients(x, quality, sub)
    ref = read_jpeg_coefficients(data)
    ours_blocks = [luma[0].numpy(), chroma[0, 0].numpy(), chroma[0, 1].numpy()]
    diffs = np.concatenate([np.abs(o - r)[: by, : bx].ravel() for o, r, (by, bx) in zip(ours_blocks, ref.blocks, image_blocks(ref, *image.shape[:2]))])
    tables_ok = np.array_equal(ref.qtables[ref.table_ids[0]], quality_qtable(quality)) and all(
        np.array_equal(ref.qtables[t], quality_qtable(quality, chroma=True)) for t in ref.table_ids[1:]
    )
    return ImageComparison(
        quality=quality,
        subsampling=sub.value,
        psnr_db=_psnr(ours, decoded),
        psnr_nearest_db=nearest,
        coef_mad=float(diffs.mean()),
        coef_equal=float((diffs == 0).mean()),
        qtables_match=bool(tables_ok),
    )


def _default_photos() -> Path:
    root = Path(os.environ.get("RAWPROOF_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))
    return root / "photos" / "kodak"


def run_report(photos: list[Path]) -> list[ImageComparison]:
    """Run :func:`compare_image` for every photo, quality and subsampling (with a tqdm bar)."""
    results = []
    with tqdm(total=len(photos) * len(QUALITIES) * len(SUBSAMPLINGS), desc="dJPEG vs libjpeg") as bar:
        for path in photos:
            with Image.open(path) as im:
                image = np.asarray(im.convert("RGB"))
            for q in QUALITIES:
                for sub in SUBSAMPLINGS:
                    results.append(compare_image(image, q, sub))
                    bar.update()
    return results


def render_markdown(results: list[ImageComparison], photos: list[Path]) -> str:
    """The report as Markdown: one row per quality and subsampling."""
    sizes = sorted({Image.open(p).size for p in photos})
    lines = [
        "# dJPEG vs libjpeg (Pillow)",
        "",
        f"Generated by `{COMMAND}`.",
        "",
        f"Photos: {len(photos)} ({', '.join(p.name for p in photos[:3])}{', ...' if len(photos) > 3 else ''}), "
        f"full size ({', '.join(f'{w}x{h}' for w, h in sizes)}). Pillow {Image.__version__}, "
        "encoder defaults (baseline, IJG tables scaled by quality, islow DCT, box chroma downsampling), "
        "decoder defaults (islow IDCT, fancy chroma upsampling).",
        "",
        "* **PSNR**: dJPEG with `rounding=\"hard\"`, rounded to 8 bits, against Pillow's decoded image (dB, peak 255).",
        "* **PSNR nearest**: the same, but 4:2:0 chroma upsampled by nearest neighbour instead of libjpeg's "
        "fancy (triangle) upsampling, which dJPEG uses.",
        "* **coef MAD / equal**: quantised DCT coefficients of dJPEG vs those libjpeg stored in the file "
        "(read from the entropy-coded data by `read_jpeg_coefficients`, not through any decoder): mean absolute "
        "difference and share of exactly equal coefficients, over all components and all blocks that cover image "
        "pixels (libjpeg fills the rest of the last MCU with DC-only dummy blocks).",
        "* **tables**: the file's quantisation tables equal dJPEG's for every image.",
        "",
        "| quality | subsampling | mean PSNR (dB) | min PSNR (dB) | mean PSNR nearest (dB) | coef MAD | coef equal | tables |",
        "|---:|:---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for q in QUALITIES:
        for sub in SUBSAMPLINGS:
            rows = [r for r in results if r.quality == q and r.subsampling == sub.value]
            psnr = np.array([r.psnr_db for r in rows])
            near = np.array([r.psnr_nearest_db for r in rows])
            near_s = f"{near.mean():.2f}" if sub is Subsampling.S420 else "—"
            lines.append(
                f"| {q} | {sub.value[0]}:{sub.value[1]}:{sub.value[2]} | {psnr.mean():.2f} | {psnr.min():.2f} | {near_s} | "
                f"{np.mean([r.coef_mad for r in rows]):.4f} | {100 * np.mean([r.coef_equal for r in rows]):.2f}% | "
                f"{'yes' if all(r.qtables_match for r in rows) else 'NO'} |"
            )
    lines += [
        "",
        "Remaining differences come from libjpeg's integer arithmetic: it rounds YCbCr to 8-bit samples "
        "before the DCT, uses a fixed-point DCT/IDCT and rounds the decoder's intermediate values, while "
        "dJPEG computes in floating point throughout.",
        "",
    ]
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    photos = sorted(Path(args.photos).glob("*.png"))
    if args.limit:
        photos = photos[: args.limit]
    if not photos:
        log.error("no PNG photos in %s (set RAWPROOF_DATA or pass --photos)", args.photos)
        return 1
    results = run_report(photos)
    text = render_markdown(results, photos)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
        log.info("wrote %s", args.output)
    else:
        sys.stdout.write(text)
    return 0


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", help="write the Markdown report here (default: stdout)")
    parser.add_argument("--photos", default=str(_default_photos()), help="folder of PNG photos (default: $RAWPROOF_DATA/photos/kodak)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N photos (0: all)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``jpeg-report`` subcommand to ``python -m rawproof_train``."""
    parser = subparsers.add_parser("jpeg-report", help="compare dJPEG with libjpeg and write docs/djpeg_vs_libjpeg.md", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(parser)
    parser.set_defaults(func=_run)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m rawproof_train.jpeg_report``."""
    parser = argparse.ArgumentParser(prog="python -m rawproof_train.jpeg_report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return _run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
