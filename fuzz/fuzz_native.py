"""Coverage-guided fuzzing (atheris) of the native kernels and RawFrame.from_buffer.

Each input is decoded by ``atheris.FuzzedDataProvider`` into one call: ``unpack``,
``mosaic_to_rggb``, ``rggb_to_mosaic`` or ``dct8x8`` of ``rawproof._native`` with random
sizes, strides, formats (valid names and junk), CFA strings, levels and gains (NaN/Inf
included), buffer kinds (bytes, bytearray, memoryview, uint8/int8/2-D/strided arrays)
and thread counts; or ``RawFrame.from_buffer`` / ``RawFrame.to_stack`` with the same.

Contract checked (a violation is a finding and makes atheris stop with a crash file):

- ``rawproof._native`` raises only ``ValueError`` or ``TypeError``;
- ``RawFrame`` raises only :class:`rawproof.errors.RawproofError` subclasses;
- every successful call matches an independent numpy reference (bit unpacking,
  level/WB normalisation, clipped inverse, orthonormal 8x8 DCT).

Python-level coverage is of ``rawproof`` (instrumented on import); the C++ is exercised
but not instrumented (see docs/hardening.md, and ``native/sanitize.sh`` for ASan/UBSan).

Usage: ``python fuzz/fuzz_native.py [corpus_dir ...] [libFuzzer flags]``; ``fuzz/run.sh``
runs it with the seed corpus of ``fuzz/make_corpus.py``.
"""

from __future__ import annotations

import math
import sys

import atheris
import numpy as np

with atheris.instrument_imports(include=["rawproof"]):
    from rawproof import _native
    from rawproof.errors import RawproofError
    from rawproof.raw import RawFrame

FORMATS = ["raw10", "raw12", "raw14", "u16le", "u8"]
CFAS = ["RGGB", "BGGR", "GRBG", "GBRG"]
_GROUP = {"raw10": (4, 5), "raw12": (2, 3), "raw14": (4, 7), "u16le": (1, 2), "u8": (1, 1)}
_CFA_INDEX = {  # cfa -> canonical channel (R, Gr, Gb, B) at (row parity, col parity)
    "RGGB": ((0, 1), (2, 3)), "BGGR": ((3, 2), (1, 0)), "GRBG": ((1, 0), (3, 2)), "GBRG": ((2, 3), (0, 1)),
}
_SPECIAL = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-300, 1e300, 65535.0, 65536.0, -1.0]


def _float(fdp: atheris.FuzzedDataProvider, lo: float, hi: float) -> float:
    """Mostly a float in [lo, hi]; sometimes a special value (NaN, Inf, 0, huge, negative)."""
    if fdp.ConsumeIntInRange(0, 31) == 31:
        return fdp.PickValueInList(_SPECIAL)
    return fdp.ConsumeFloatInRange(lo, hi)


def _dim(fdp: atheris.FuzzedDataProvider, hi: int, multiple: int = 2) -> int:
    """A size: mostly a multiple of ``multiple`` in 2..hi, sometimes any, negative or far too large."""
    k = fdp.ConsumeIntInRange(0, 15)
    if k == 15:
        return fdp.PickValueInList([-1, -2, 0, 1, 2**31, 2**31 + 1, 2**32 + 4, 2**62, 65536, 65535])
    if k == 14:
        return fdp.ConsumeIntInRange(0, hi)
    return multiple * fdp.ConsumeIntInRange(1, max(1, hi // multiple))


def _cfa(fdp: atheris.FuzzedDataProvider) -> str:
    if fdp.ConsumeIntInRange(0, 31) == 31:
        return fdp.ConsumeUnicodeNoSurrogates(6)
    c = fdp.PickValueInList(CFAS)
    return c.lower() if fdp.ConsumeBool() else c


def _fmt(fdp: atheris.FuzzedDataProvider) -> str:
    if fdp.ConsumeIntInRange(0, 31) == 31:
        return fdp.ConsumeUnicodeNoSurrogates(6)
    return fdp.PickValueInList(FORMATS)


def _levels(fdp: atheris.FuzzedDataProvider) -> tuple[list[float], float, list[float] | None]:
    white = _float(fdp, 1.0, 70000.0)
    black = [_float(fdp, 0.0, max(white - 1.0, 0.0) if math.isfinite(white) else 100.0) for _ in range(4)]
    if fdp.ConsumeIntInRange(0, 15) == 15:
        black = black[: fdp.ConsumeIntInRange(0, 5)]
    wb = None if fdp.ConsumeBool() else [_float(fdp, 0.1, 8.0) for _ in range(4)]
    return black, white, wb


def _threads(fdp: atheris.FuzzedDataProvider) -> int:
    if fdp.ConsumeIntInRange(0, 31) == 31:
        return fdp.PickValueInList([1024, 1025, -1, 2**40])
    return fdp.ConsumeIntInRange(0, 4)


def _buffer(fdp: atheris.FuzzedDataProvider, raw: bytes) -> object:
    kind = fdp.ConsumeIntInRange(0, 23)
    if kind == 0:
        return bytearray(raw)
    if kind == 1:
        return memoryview(raw)
    if kind == 2:
        return np.frombuffer(raw, np.uint8).copy()
    if kind == 3:
        return np.frombuffer(raw, np.int8)  # wrong signedness: TypeError
    if kind == 4 and len(raw) >= 2:
        return np.frombuffer(raw, np.uint8)[::2]  # strided view: TypeError
    if kind == 5 and len(raw) % 2 == 0 and raw:
        return np.frombuffer(raw, np.uint8).reshape(2, -1)  # 2-D: ValueError
    if kind == 6 and len(raw) % 2 == 0:
        return np.frombuffer(raw, np.uint16)  # itemsize 2: TypeError
    return raw


def _ref_unpack(data: np.ndarray, width: int, height: int, fmt: str, pitch: int) -> np.ndarray:
    row_bytes = width * _GROUP[fmt][1] // _GROUP[fmt][0]
    padded = np.zeros(pitch * height, np.uint8)
    padded[: data.size] = data
    rows = padded.reshape(height, pitch)[:, :row_bytes].astype(np.uint32)
    if fmt == "u8":
        return rows.astype(np.uint16)
    if fmt == "u16le":
        return (rows[:, 0::2] | (rows[:, 1::2] << 8)).astype(np.uint16)
    n, b = _GROUP[fmt]
    g = rows.reshape(height, -1, b)
    if fmt == "raw10":
        px = [(g[..., i] << 2) | ((g[..., 4] >> (2 * i)) & 3) for i in range(4)]
    elif fmt == "raw12":
        px = [(g[..., 0] << 4) | (g[..., 2] & 0xF), (g[..., 1] << 4) | (g[..., 2] >> 4)]
    else:
        low = g[..., 4] | (g[..., 5] << 8) | (g[..., 6] << 16)
        px = [(g[..., i] << 6) | ((low >> (6 * i)) & 63) for i in range(4)]
    return np.stack(px, axis=-1).reshape(height, width).astype(np.uint16)


def _planes(mosaic: np.ndarray, cfa: str) -> list[np.ndarray]:
    out: list[np.ndarray] = [np.empty(0)] * 4
    for dy in (0, 1):
        for dx in (0, 1):
            out[_CFA_INDEX[cfa][dy][dx]] = mosaic[dy::2, dx::2]
    return out


def _ref_rggb(mosaic: np.ndarray, cfa: str, black: list[float], white: float, wb: list[float] | None) -> np.ndarray:
    gains = np.ones(4) if wb is None else np.asarray(wb, np.float64)
    b = np.asarray(black, np.float32).astype(np.float64)
    planes = _planes(mosaic.astype(np.float64), cfa)
    return np.stack([np.clip((planes[c] - b[c]) * (gains[c] / (float(np.float32(white)) - b[c])), 0, 1) for c in range(4)])


def _dct_matrix() -> np.ndarray:
    k = np.arange(8)
    d = np.sqrt(2 / 8) * np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / 16)
    d[0] /= np.sqrt(2)
    return d


_D = _dct_matrix()


def _buffer_size(fdp: atheris.FuzzedDataProvider, fmt: str, width: int, height: int, stride: int) -> int:
    """Mostly an exact length for the declared frame (padded or unpadded last row), sometimes any."""
    if fmt in _GROUP and 0 < width <= 4096 and 0 < height <= 4096 and fdp.ConsumeIntInRange(0, 7) != 7:
        row = -(-width * _GROUP[fmt][1] // _GROUP[fmt][0])
        pitch = stride if stride >= row else row
        return fdp.PickValueInList([pitch * height, pitch * (height - 1) + row, pitch * height + 1, max(0, pitch * height - 1)])
    return fdp.ConsumeIntInRange(0, 8192)


def _stride(fdp: atheris.FuzzedDataProvider) -> int:
    k = fdp.ConsumeIntInRange(0, 7)
    return -1 if k == 7 else fdp.ConsumeIntInRange(0, 400) if k > 4 else 0


def fuzz_unpack(fdp: atheris.FuzzedDataProvider) -> None:
    fmt = _fmt(fdp)
    width, height = _dim(fdp, 64, _GROUP.get(fmt, (4,))[0]), _dim(fdp, 24, 1)
    stride = _stride(fdp)
    threads = _threads(fdp)
    n = _buffer_size(fdp, fmt, width, height, stride)
    raw = fdp.ConsumeBytes(n).ljust(n, b"\0")
    buf = _buffer(fdp, raw)
    try:
        out = _native.unpack(buf, width, height, fmt, stride, threads)
    except (ValueError, TypeError):
        return
    assert out.dtype == np.uint16 and out.shape == (height, width), (out.dtype, out.shape)
    row_bytes = width * _GROUP[fmt][1] // _GROUP[fmt][0]
    seen = buf.tobytes() if isinstance(buf, np.ndarray) else bytes(buf)  # a 1-element strided view is accepted
    ref = _ref_unpack(np.frombuffer(seen, np.uint8), width, height, fmt, stride or row_bytes)
    assert np.array_equal(out, ref), f"unpack {fmt} {width}x{height} stride {stride} differs from numpy"


def fuzz_mosaic_to_rggb(fdp: atheris.FuzzedDataProvider) -> None:
    h, w = _dim(fdp, 40), _dim(fdp, 40)
    cfa = _cfa(fdp)
    black, white, wb = _levels(fdp)
    threads = _threads(fdp)
    n = max(0, min(h, 64)) * max(0, min(w, 64))
    vals = np.frombuffer(fdp.ConsumeBytes(2 * n).ljust(2 * n, b"\0"), "<u2")
    mosaic: object = vals.reshape(min(max(h, 0), 64), min(max(w, 0), 64)) if n else np.zeros((0, 0), np.uint16)
    variant = fdp.ConsumeIntInRange(0, 31)
    if variant == 31:
        mosaic = mosaic.astype(np.int32)  # type: ignore[union-attr]
    elif variant == 30:
        mosaic = np.asfortranarray(mosaic) if min(mosaic.shape) > 1 else mosaic[None]  # type: ignore[union-attr,index]
    elif variant == 29:
        mosaic = mosaic.tolist()  # type: ignore[union-attr]
    try:
        out = _native.mosaic_to_rggb(mosaic, cfa, black, white, wb, threads)
    except (ValueError, TypeError):
        return
    assert isinstance(mosaic, np.ndarray) and out.dtype == np.float32
    ref = _ref_rggb(mosaic, cfa.upper(), black, white, wb)
    assert np.all(np.isfinite(out)) and np.abs(out - ref).max() <= 1e-5, f"mosaic_to_rggb {cfa} differs from numpy"


def fuzz_rggb_to_mosaic(fdp: atheris.FuzzedDataProvider) -> None:
    c, h, w = fdp.PickValueInList([4, 4, 4, 3, 0]), _dim(fdp, 20), _dim(fdp, 20)
    cfa = _cfa(fdp)
    black, white, wb = _levels(fdp)
    threads = _threads(fdp)
    hh, ww = min(max(h, 0), 32), min(max(w, 0), 32)
    n = c * hh * ww
    vals = np.frombuffer(fdp.ConsumeBytes(4 * n).ljust(4 * n, b"\0"), "<f4").reshape(c, hh, ww).copy()
    if fdp.ConsumeBool():  # mostly sane pixel values, with the raw bit patterns (NaN, Inf) otherwise
        vals = np.abs(np.remainder(np.nan_to_num(vals, posinf=2.0, neginf=-1.0), 1.5)).astype(np.float32)
    stack: object = vals.astype(np.float64) if fdp.ConsumeIntInRange(0, 9) == 9 else vals
    try:
        out = _native.rggb_to_mosaic(stack, cfa, black, white, wb, threads)
    except (ValueError, TypeError):
        return
    assert not np.isnan(vals).any(), "rggb_to_mosaic accepted NaN"
    assert out.dtype == np.uint16 and out.shape == (2 * hh, 2 * ww)
    gains = np.ones(4) if wb is None else np.asarray(wb, np.float32).astype(np.float64)
    b = np.asarray(black, np.float32).astype(np.float64)
    wf = float(np.float32(white))
    planes = _planes(out.astype(np.float64), cfa.upper())
    for ch in range(4):
        ref = np.clip(vals[ch].astype(np.float64) / gains[ch], 0, 1) * (wf - b[ch]) + b[ch]
        assert np.abs(planes[ch] - ref).max() <= 0.5 + 1e-3 * wf, f"rggb_to_mosaic channel {ch} differs from numpy"


def fuzz_dct(fdp: atheris.FuzzedDataProvider) -> None:
    ndim = fdp.PickValueInList([2, 2, 2, 3, 3, 3, 1, 4])
    shape = [fdp.PickValueInList([8, 16, 24, 32, 8, 16, 0, 7, 9, -8]) for _ in range(min(ndim, 2))]
    if ndim >= 3:
        shape.append(fdp.PickValueInList([1, 3, 3, 2, 64, 65, 0]))
    if ndim == 4:
        shape.append(1)
    shape = [max(s, 0) for s in shape]
    n = int(np.prod(shape))
    raw = np.frombuffer(fdp.ConsumeBytes(4 * n).ljust(4 * n, b"\0"), "<f4").reshape(shape).copy()
    finite = fdp.ConsumeBool()
    img = np.clip(np.nan_to_num(raw), -1e4, 1e4).astype(np.float32) if finite else raw
    inverse, threads = fdp.ConsumeBool(), _threads(fdp)
    if fdp.ConsumeIntInRange(0, 9) == 9:
        img = img.astype(np.float64)
    try:
        out = _native.dct8x8(img, inverse, threads)
    except (ValueError, TypeError):
        return
    assert out.shape == img.shape and out.dtype == np.float32
    if not finite:
        return
    x = img if img.ndim == 3 else img[..., None]
    hb, wb_ = x.shape[0] // 8, x.shape[1] // 8
    blocks = x.astype(np.float64).reshape(hb, 8, wb_, 8, -1)
    d = _D.T if inverse else _D
    ref = np.einsum("ua,iajbc,vb->iujvc", d, blocks, d).reshape(x.shape)
    tol = 1e-4 * max(1.0, float(np.abs(x).max()))
    assert np.abs(out.reshape(x.shape) - ref).max() <= tol, "dct8x8 differs from numpy"


def fuzz_rawframe(fdp: atheris.FuzzedDataProvider) -> None:
    fmt = _fmt(fdp)
    width, height = _dim(fdp, 48, 2 * _GROUP.get(fmt, (2,))[0]), _dim(fdp, 16)
    stride = _stride(fdp)
    black, white, wb = _levels(fdp)
    single_black = fdp.ConsumeBool()
    shift = fdp.PickValueInList([0, 0, 0, 0, 0, 1, 2, 4, 8, 9, -1])
    cfa = _cfa(fdp)
    n = _buffer_size(fdp, fmt, width, height, stride)
    raw = fdp.ConsumeBytes(n).ljust(n, b"\0")
    try:
        frame = RawFrame.from_buffer(_buffer(fdp, raw), width, height, fmt, cfa, black[0] if single_black and black else black,
                                     white, stride=stride, wb=wb, shift=shift, threads=_threads(fdp))
        stack = frame.to_stack(white_balance=fdp.ConsumeBool(), threads=_threads(fdp))
    except RawproofError:
        return
    assert stack.shape == (4, frame.height // 2, frame.width // 2) and stack.dtype == np.float32
    assert np.all((stack >= 0) & (stack <= 1)), "to_stack left [0, 1]"


TARGETS = [fuzz_unpack, fuzz_mosaic_to_rggb, fuzz_rggb_to_mosaic, fuzz_dct, fuzz_rawframe]


def test_one_input(data: bytes) -> None:
    """atheris entry: the first byte chooses the operation, the rest feeds its arguments."""
    fdp = atheris.FuzzedDataProvider(data)
    TARGETS[fdp.ConsumeIntInRange(0, len(TARGETS) - 1)](fdp)


def main() -> None:
    """Run atheris with the command-line libFuzzer flags."""
    for fn in [*TARGETS, _ref_unpack, _ref_rggb, _levels, _buffer, _dim, _float, _cfa, _fmt]:
        globals()[fn.__name__] = atheris.instrument_func(fn)
    TARGETS[:] = [globals()[fn.__name__] for fn in TARGETS]
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
