"""Sensor fingerprint (PRNU): enrol a camera from its images, then test whether an image came from it.

Photo-response non-uniformity is a per-pixel gain ``1 + K`` that every sensor multiplies
into its signal. It survives demosaicing, colour processing and (weakened) JPEG, so an
image's noise residual ``W ~ I K`` correlates with the fingerprint ``K`` of its own
sensor and with no other. The methods follow Lukáš, Fridrich & Goljan, "Digital camera
identification from sensor pattern noise" (IEEE TIFS 2006) and Goljan, Fridrich & Filler,
"Large scale test of sensor fingerprint camera identification" (SPIE 2009):

1. :func:`noise_residual`: ``W = I - F(I)`` with the wavelet denoiser ``F`` of Mihçak et
   al.: db8, 4 levels, each detail subband shrunk by a local Wiener filter whose signal
   variance is the minimum of the local estimates in 3x3, 5x5, 7x7 and 9x9 windows, noise
   ``sigma0 = 3`` (8-bit units).
2. :func:`estimate_fingerprint`: the maximum-likelihood estimate
   ``K = sum(W_i I_i) / sum(I_i^2)`` over N images (saturated pixels excluded).
3. :func:`zero_mean` (rows and columns, separately for each 2x2 CFA phase) and
   :func:`wiener_dft` (Wiener filtering of the fingerprint's Fourier spectrum) remove the
   non-unique artefacts that every camera of a model shares (demosaicing lattice, JPEG
   blocks, row/column readout patterns).
4. :func:`pce`: peak-to-correlation energy of the circular cross-correlation between the
   test residual (cleaned by the same zero-mean and DFT Wiener steps, :func:`query_residual`)
   and ``I K``: ``sign(p) p^2 / mean(xc^2)`` over all shifts outside an
   11x11 neighbourhood of the peak. The peak is taken at zero shift (the image is assumed
   neither cropped nor shifted against the fingerprint). Decision: match when
   ``PCE > 60`` (:data:`PCE_THRESHOLD`), Goljan et al.'s threshold, which gave a false
   alarm rate of about 2.4e-5 on over a million Flickr images.

Everything works on the luminance ``Y = 0.299 R + 0.587 G + 0.114 B`` (Rec. 601, the
weights of Goljan's ``rgb2gray1``), in 8-bit units [0, 255]. Goljan extracts the residual
per colour channel and then combines them with the same weights; denoising the luminance
once is three times cheaper and, the residual being linear in the image for small
noise, nearly equivalent.

High level: :func:`enroll` -> :class:`Fingerprint` (``save``/``load``, a versioned,
checksummed file) -> :func:`match` (or ``rawproof.verify(image, fingerprint=...)``).
Command line: ``rawproof enroll IMAGES... -o device.fp``. See ``docs/fingerprint.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import struct
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pywt

from rawproof.errors import FingerprintError
from rawproof.imageio import MAX_PIXELS, ImageSource, decode_rgb
from rawproof.untrusted import loads_strict, read_regular

__all__ = [
    "PCE_THRESHOLD",
    "LUMA_WEIGHTS",
    "FORMAT_VERSION",
    "Fingerprint",
    "DeviceMatch",
    "luminance",
    "noise_residual",
    "estimate_fingerprint",
    "zero_mean",
    "wiener_dft",
    "downscale_fingerprint",
    "align_fingerprint",
    "pce",
    "query_residual",
    "enroll",
    "match",
    "register",
]

PCE_THRESHOLD = 60.0
"""Decision threshold on the PCE (Goljan et al. 2009): a match when PCE > 60."""

LUMA_WEIGHTS = (0.299, 0.587, 0.114)
"""R, G, B weights of the luminance the fingerprint is computed on (Rec. 601)."""

FORMAT_VERSION = 1
"""Version of the fingerprint file format written by :meth:`Fingerprint.save`."""

SIGMA0 = 3.0
"""Noise standard deviation assumed by the denoiser, 8-bit units (Lukáš et al. 2006)."""

WAVELET = "db8"
LEVELS = 4
WINDOWS = (3, 5, 7, 9)
NEIGHBOURHOOD = 11
SATURATION = 250.0
"""Luminance (8-bit units) at and above which an enrolment pixel is treated as clipped and ignored."""

_MAGIC = b"RPFP"
# magic, version, dtype code, reserved, height, width, frames, metadata length, SHA-256 of (metadata + payload)
_HEADER = struct.Struct("<4sHBBIIII32s")
_DTYPES = {1: np.dtype("<f2"), 2: np.dtype("<f4")}

MAX_META_BYTES = 16 << 20
"""Largest metadata block accepted in a fingerprint file, bytes."""

MAX_ABS_K = 65536.0
"""Largest ``|K|`` a fingerprint may hold. By Cauchy-Schwarz, :func:`estimate_fingerprint`
gives ``|K| <= max|W| sqrt(N) / 2`` for residuals of 8-bit images (``|W|`` well under 512)
and N images, and the zero-mean and Wiener steps at most double it, so this is only
exceeded by a file that was not enrolled (it would overflow float32 arithmetic in
:func:`match`)."""
_DTYPE_CODES = {"float16": 1, "float32": 2}


# ---------------------------------------------------------------------------------- signal


def luminance(image: ImageSource | np.ndarray, *, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """The luminance the fingerprint works on.

    Args:
        image: An encoded image (path, bytes, file object; decoded by
            :func:`rawproof.imageio.decode_rgb`), or an array: uint8 H x W x 3 (sRGB) or
            H x W (grey), 8-bit code values; float H x W x 3 or H x W in [0, 1].
        max_pixels: Decompression-bomb bound for encoded images.

    Returns:
        float32, H x W, ``0.299 R + 0.587 G + 0.114 B`` in 8-bit units [0, 255]; a new array.

    Raises:
        FingerprintError: an array of another shape or dtype.
        ImageFormatError: an undecodable encoded image.
    """
    if not isinstance(image, np.ndarray):
        image = decode_rgb(image, max_pixels=max_pixels).rgb
    x = image
    if x.dtype == np.uint8:
        scale = 1.0
    elif np.issubdtype(x.dtype, np.floating):
        scale = 255.0
    else:
        raise FingerprintError(f"image array must be uint8 or float, got {x.dtype}")
    if x.ndim == 3 and x.shape[2] == 3:
        y = x.astype(np.float32) @ np.asarray(LUMA_WEIGHTS, np.float32)
    elif x.ndim == 2:
        y = x.astype(np.float32)
    else:
        raise FingerprintError(f"image array must be H x W x 3 or H x W, got shape {x.shape}")
    if scale != 1.0:
        y *= np.float32(scale)
    return np.ascontiguousarray(y)


def _wiener_shrink(coef: np.ndarray, noise_var: float) -> np.ndarray:
    """Goljan's ``WaveNoise``: the noise-like part ``c * s^2 / (v + s^2)`` of coefficients ``c``,
    with the local signal variance ``v`` the minimum over the 3..9 windows of ``max(mean(c^2) - s^2, 0)``.

    Window means use symmetric edge extension (scipy's ``uniform_filter`` with mode
    ``reflect``), from one integral image of the padded squares.
    """
    big = WINDOWS[-1] // 2
    padded = np.pad(np.asarray(coef, np.float64) ** 2, big, mode="symmetric")
    integral = np.zeros((padded.shape[0] + 1, padded.shape[1] + 1))
    np.cumsum(np.cumsum(padded, axis=0), axis=1, out=integral[1:, 1:])
    h, w = coef.shape
    var = None
    for size in WINDOWS:
        o = big - size // 2
        a, b = integral[o:o + h, o:o + w], integral[o:o + h, o + size:o + size + w]
        c, d = integral[o + size:o + size + h, o:o + w], integral[o + size:o + size + h, o + size:o + size + w]
        est = np.maximum((d - b - c + a) / (size * size) - noise_var, 0.0)
        var = est if var is None else np.minimum(var, est, out=var)
    return (coef * (noise_var / (var + noise_var))).astype(coef.dtype, copy=False)


def noise_residual(image: ImageSource | np.ndarray, *, sigma0: float = SIGMA0) -> np.ndarray:
    """Noise residual ``W = I - F(I)`` of an image's luminance (wavelet Wiener denoiser).

    The luminance is padded symmetrically to a multiple of 16, decomposed with db8 in 4
    levels (periodic extension; fewer for images under 240 px on the short side, as many as
    the filter length allows); each detail subband is replaced by its noise-like part
    (:func:`_wiener_shrink` with variance ``sigma0^2``), the approximation by zeros, and
    the inverse transform is the residual (as Goljan's ``NoiseExtract``).

    Args:
        image: As :func:`luminance`.
        sigma0: Noise standard deviation assumed by the denoiser, 8-bit units.

    Returns:
        float32, H x W, 8-bit units, zero-mean-ish; a new array.

    Raises:
        FingerprintError: the image is smaller than 30 x 30 or not a supported array.
    """
    return _residual_of_luma(luminance(image), sigma0)


def _residual_of_luma(y: np.ndarray, sigma0: float = SIGMA0) -> np.ndarray:
    """:func:`noise_residual` of a float32 H x W luminance in 8-bit units."""
    h, w = y.shape
    # Fewer levels below ~240 px, where the db8 filter would span a whole coarsest subband.
    levels = min(LEVELS, pywt.dwt_max_level(min(h, w), pywt.Wavelet(WAVELET).dec_len))
    if levels < 1:
        raise FingerprintError(f"image of {w}x{h} is too small for the wavelet denoiser (30x30 at least)")
    ph, pw = (-h) % 2**levels, (-w) % 2**levels
    padded = np.pad(y, ((0, ph), (0, pw)), mode="symmetric") if ph or pw else y
    coeffs = pywt.wavedec2(padded, WAVELET, mode="periodization", level=levels)
    nv = float(sigma0) ** 2
    out: list[Any] = [np.zeros_like(coeffs[0])]
    for details in coeffs[1:]:
        out.append(tuple(_wiener_shrink(d, nv) for d in details))
    res = pywt.waverec2(out, WAVELET, mode="periodization")
    return np.ascontiguousarray(res[:h, :w], dtype=np.float32)


def zero_mean(k: np.ndarray) -> np.ndarray:
    """Remove row and column means from each of the four 2x2 CFA phases (Goljan's ``ZeroMeanTotal``).

    Args:
        k: float, H x W.

    Returns:
        float32, H x W; a new array whose every row and column of every phase sums to ~0.
    """
    out = np.array(k, dtype=np.float32, copy=True)
    for dy in (0, 1):
        for dx in (0, 1):
            sub = out[dy::2, dx::2]
            sub -= sub.mean(axis=0, keepdims=True)
            sub -= sub.mean(axis=1, keepdims=True)
    return out


def wiener_dft(k: np.ndarray) -> np.ndarray:
    """Suppress the fingerprint's spectral peaks (periodic, non-unique artefacts): Goljan's ``WienerInDFT``.

    The magnitude of the 2-D DFT (scaled by ``1/sqrt(HW)``) is passed through the same local
    Wiener shrinkage as the denoiser, with the noise variance set to ``var(k)``; peaks well
    above the flat spectrum of a white PRNU are attenuated, the phase is kept.

    Args:
        k: float, H x W (zero-mean).

    Returns:
        float32, H x W; a new array.
    """
    k64 = np.asarray(k, dtype=np.float64)
    f = np.fft.fft2(k64)
    mag = np.abs(f) / np.sqrt(k64.size)
    var = float(k64.var())
    if var == 0.0:
        return np.zeros_like(k64, dtype=np.float32)
    mag1 = _wiener_shrink(mag, var)
    zero = mag == 0
    gain = np.where(zero, 0.0, mag1 / np.where(zero, 1.0, mag))
    return np.ascontiguousarray(np.fft.ifft2(f * gain).real, dtype=np.float32)


def downscale_fingerprint(k: np.ndarray, factor: int) -> np.ndarray:
    """Downscale a fingerprint as the distribution channel downscales images (``factor x factor`` box average).

    For factor 2 this is the bilinear half-pixel-centre resize of
    :func:`rawproof_train.channel.downscale`. The result is re-zero-meaned.

    Args:
        k: float, H x W.
        factor: Integer >= 1; trailing rows/columns that do not fill a box are dropped.

    Returns:
        float32, (H // factor) x (W // factor); a new array.
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
    h, w = k.shape[0] // factor, k.shape[1] // factor
    boxes = np.asarray(k, np.float32)[: h * factor, : w * factor].reshape(h, factor, w, factor)
    return zero_mean(boxes.mean(axis=(1, 3)))


def estimate_fingerprint(residuals: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, int]:
    """Maximum-likelihood PRNU ``K = sum(W_i I_i) / sum(I_i^2)`` (Chen, Fridrich, Goljan & Lukáš 2008).

    Args:
        residuals: Pairs (residual ``W_i``, luminance ``I_i``), float32 H x W each, 8-bit
            units, all of one size. Pixels with ``I_i >= SATURATION`` are left out (clipped
            highlights carry no PRNU).

    Returns:
        (K, N): float32 H x W, dimensionless relative gain deviation (no zero-mean or
        Wiener step yet), and the number of images.

    Raises:
        FingerprintError: no images, or images of different sizes.
    """
    num = den = None
    n = 0
    for w_i, i_i in residuals:
        i64 = np.where(i_i < SATURATION, i_i, 0.0).astype(np.float64)
        if num is None:
            num, den = np.zeros(i64.shape), np.zeros(i64.shape)
        elif i64.shape != num.shape:
            raise FingerprintError(f"all enrolment images must have one size: {num.shape[::-1]} then {i64.shape[::-1]} (W x H)")
        num += w_i * i64
        den += i64 * i64
        n += 1
    if num is None or den is None:
        raise FingerprintError("enrolment needs at least one image")
    return (num / (den + 1.0)).astype(np.float32), n


def pce(residual: np.ndarray, signal: np.ndarray, *, neighbourhood: int = NEIGHBOURHOOD) -> float:
    """Peak-to-correlation energy at zero shift.

    ``xc`` is the circular cross-correlation of the mean-removed ``residual`` and ``signal``
    (via FFT); PCE = ``sign(xc[0,0]) xc[0,0]^2 / mean(xc^2)``, the mean over all shifts
    outside the ``neighbourhood x neighbourhood`` square around (0, 0).

    Args:
        residual: float, H x W, the test image's noise residual.
        signal: float, H x W, the expected PRNU term ``I K`` (test luminance times fingerprint).
        neighbourhood: Odd side of the excluded square.

    Returns:
        The PCE (dimensionless, negative when the peak is negative).
    """
    if residual.shape != signal.shape:
        raise FingerprintError(f"residual {residual.shape} and signal {signal.shape} differ in shape")
    a = np.asarray(residual, np.float64)
    b = np.asarray(signal, np.float64)
    a = a - a.mean()
    b = b - b.mean()
    # PCE does not change when a or b is scaled; unit peak magnitude keeps xc^2 finite for
    # any finite input (huge finite fingerprint values overflowed it to inf, and PCE to NaN).
    for v in (a, b):
        top = np.max(np.abs(v)) if v.size else 0.0
        if not np.isfinite(top):
            raise FingerprintError("non-finite values in the residual or the fingerprint signal")
        if top > 0:
            v /= top
    xc = np.fft.irfft2(np.fft.rfft2(a) * np.conj(np.fft.rfft2(b)), s=a.shape)
    peak = float(xc[0, 0])
    r = neighbourhood // 2
    sq = xc * xc
    mask = np.ones(xc.shape, bool)
    rows = np.arange(-r, r + 1) % xc.shape[0]
    cols = np.arange(-r, r + 1) % xc.shape[1]
    mask[np.ix_(rows, cols)] = False
    energy = float(sq[mask].mean())
    if energy == 0.0:
        return 0.0
    return float(np.sign(peak) * peak * peak / energy)


# ---------------------------------------------------------------------------------- fingerprint object


@dataclass(frozen=True)
class Fingerprint:
    """A camera's PRNU fingerprint.

    Attributes:
        k: float32, H x W (the developed image's size), the processed fingerprint
            (ML estimate, zero-meaned per CFA phase, Wiener-filtered in the DFT domain),
            dimensionless gain deviation. Read-only by convention.
        frames: Number of enrolment images.
        meta: Free-form facts saved with it (camera, settings); JSON-compatible.
    """

    k: np.ndarray = field(repr=False)
    frames: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def height(self) -> int:
        """Fingerprint height in pixels."""
        return int(self.k.shape[0])

    @property
    def width(self) -> int:
        """Fingerprint width in pixels."""
        return int(self.k.shape[1])

    def save(self, path: str | os.PathLike[str], *, dtype: str = "float32") -> Path:
        """Write the versioned, checksummed file (format in ``docs/fingerprint.md``).

        Args:
            path: Output file (conventionally ``*.fp``).
            dtype: Payload type, ``"float32"`` or ``"float16"`` (half the size; relative
                error ~5e-4, negligible for PCE).

        Returns:
            The path written.
        """
        if dtype not in _DTYPE_CODES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPE_CODES)}, got {dtype!r}")
        code = _DTYPE_CODES[dtype]
        payload = np.ascontiguousarray(self.k, dtype=_DTYPES[code]).tobytes()
        meta = json.dumps(self.meta, sort_keys=True).encode()
        digest = hashlib.sha256(meta + payload).digest()
        header = _HEADER.pack(_MAGIC, FORMAT_VERSION, code, 0, self.height, self.width, self.frames, len(meta), digest)
        p = Path(path)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_bytes(header + meta + payload)
        os.replace(tmp, p)
        return p

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "<bytes>") -> Fingerprint:
        """Parse a fingerprint file's bytes; refuse anything not exactly as written by :meth:`save`.

        Raises:
            FingerprintError: truncated, wrong magic, unknown version or dtype, bad
                dimensions, trailing bytes, checksum mismatch, or non-finite values.
        """
        if len(data) < _HEADER.size:
            raise FingerprintError(f"{source}: truncated ({len(data)} bytes, header needs {_HEADER.size})")
        magic, version, code, _, h, w, frames, meta_len, digest = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise FingerprintError(f"{source}: not a rawproof fingerprint (magic {magic!r})")
        if version != FORMAT_VERSION:
            raise FingerprintError(f"{source}: unsupported fingerprint format version {version} (this SDK reads {FORMAT_VERSION})")
        if code not in _DTYPES:
            raise FingerprintError(f"{source}: unknown payload dtype code {code}")
        if h < 1 or w < 1 or h * w > MAX_PIXELS:
            raise FingerprintError(f"{source}: implausible dimensions {w}x{h}")
        if meta_len > MAX_META_BYTES:
            raise FingerprintError(f"{source}: metadata block of {meta_len} bytes, above {MAX_META_BYTES}")
        expected = _HEADER.size + meta_len + h * w * _DTYPES[code].itemsize
        if len(data) != expected:
            kind = "truncated" if len(data) < expected else "has trailing bytes"
            raise FingerprintError(f"{source}: {kind} ({len(data)} bytes, expected {expected})")
        body = data[_HEADER.size:]
        if hashlib.sha256(body).digest() != digest:
            raise FingerprintError(f"{source}: checksum mismatch (file corrupt)")
        try:
            meta = loads_strict(body[:meta_len].decode()) if meta_len else {}
        except (UnicodeDecodeError, ValueError) as e:
            raise FingerprintError(f"{source}: unreadable metadata: {e}") from e
        k = np.frombuffer(body, dtype=_DTYPES[code], offset=meta_len).reshape(h, w).astype(np.float32)
        if not np.all(np.isfinite(k)):
            raise FingerprintError(f"{source}: non-finite values in the payload")
        if k.size and float(np.max(np.abs(k))) > MAX_ABS_K:
            raise FingerprintError(f"{source}: fingerprint values beyond +-{MAX_ABS_K:g} cannot come from enrolment")
        return cls(k=k, frames=int(frames), meta=meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Fingerprint:
        """Read a file written by :meth:`save` (see :meth:`from_bytes` for what is refused)."""
        try:
            data = read_regular(Path(path), _HEADER.size + MAX_META_BYTES + MAX_PIXELS * 4)
        except OSError as e:
            raise FingerprintError(f"cannot read fingerprint {path}: {e}") from e
        return cls.from_bytes(data, source=str(path))


@dataclass(frozen=True)
class DeviceMatch:
    """Result of :func:`match`.

    Attributes:
        pce: Peak-to-correlation energy at zero shift.
        threshold: The decision threshold used (default :data:`PCE_THRESHOLD`).
        match: ``pce > threshold``: the image was taken by the enrolled sensor.
        alignment: How the fingerprint was brought to the image size: ``"same size"``,
            ``"downscaled xF"`` (the image is the fingerprint's size divided by an integer
            F, as after the distribution channel) or ``"centre crop"``.
        fingerprint_frames: Number of enrolment images behind the fingerprint.
        width, height: Size the correlation ran at, pixels.
    """

    pce: float
    threshold: float
    match: bool
    alignment: str
    fingerprint_frames: int
    width: int
    height: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form."""
        return {"pce": self.pce, "threshold": self.threshold, "match": self.match, "alignment": self.alignment,
                "fingerprint_frames": self.fingerprint_frames, "width": self.width, "height": self.height}


def align_fingerprint(k: np.ndarray, h: int, w: int) -> tuple[np.ndarray, str]:
    """Bring a fingerprint (float32 H x W) to an image's h x w under :func:`match`'s size policy.

    Returns:
        (float32 h x w fingerprint, a view or a new array; the alignment text of :class:`DeviceMatch`).

    Raises:
        FingerprintError: the image is larger than the fingerprint.
    """
    kh, kw = k.shape
    if (kh, kw) == (h, w):
        return k, "same size"
    if h > kh or w > kw:
        raise FingerprintError(f"image of {w}x{h} is larger than the fingerprint ({kw}x{kh}); it cannot come "
                               "from this sensor without upscaling")
    for f in range(2, 9):
        if kh // f == h and kw // f == w:
            return downscale_fingerprint(k, f), f"downscaled x{f}"
    y0, x0 = (kh - h) // 2, (kw - w) // 2
    # Keep the CFA phase: an odd offset would swap the lattice the zero-mean step was done on.
    y0, x0 = y0 & ~1, x0 & ~1
    return zero_mean(k[y0:y0 + h, x0:x0 + w]), "centre crop"


def match(image: ImageSource | np.ndarray, fingerprint: Fingerprint | str | os.PathLike[str], *,
          threshold: float = PCE_THRESHOLD) -> DeviceMatch:
    """Test whether ``image`` was taken by the sensor of ``fingerprint``.

    Size policy: same size -> as is. Image exactly ``1/F`` of the fingerprint (integer
    F in 2..8, sizes rounded down) -> the fingerprint is box-downscaled by F
    (:func:`downscale_fingerprint`), as the distribution channel downscales images. Any
    other smaller image -> the fingerprint's centre crop (even offsets, so the CFA phase
    is kept); a crop elsewhere is not searched for, so an off-centre crop will not
    match. An image larger than the fingerprint in either dimension raises. Rotated
    (portrait) images are not turned.

    Args:
        image: As :func:`luminance`.
        fingerprint: A :class:`Fingerprint` or the path of a saved one.
        threshold: PCE decision threshold.

    Returns:
        :class:`DeviceMatch`.

    Raises:
        FingerprintError: a corrupt fingerprint file, or an image larger than the fingerprint.
    """
    fp = fingerprint if isinstance(fingerprint, Fingerprint) else Fingerprint.load(fingerprint)
    w_test, y = query_residual(image)
    h, w = y.shape
    k, how = align_fingerprint(fp.k, h, w)
    value = pce(w_test, y * k)
    return DeviceMatch(pce=value, threshold=float(threshold), match=bool(value > threshold), alignment=how,
                       fingerprint_frames=fp.frames, width=w, height=h)


def query_residual(image: ImageSource | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The test side of :func:`match`: residual of the image to check, cleaned as the fingerprint is.

    Goljan's detector zero-means the test residual (rows/columns per CFA phase) and
    Wiener-filters it in the DFT domain too, which strips the periodic artefacts (JPEG 8x8
    grid, demosaicing lattice) that would otherwise correlate with any fingerprint.

    Args:
        image: As :func:`luminance`.

    Returns:
        (residual, luminance): float32 H x W each, 8-bit units. Correlate the residual with
        ``luminance * K`` (:func:`pce`).
    """
    y = luminance(image)
    return wiener_dft(zero_mean(_residual_of_luma(y))), y


def _residual_pair(image: ImageSource | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = luminance(image)
    return _residual_of_luma(y), y


def enroll(images: Sequence[ImageSource | np.ndarray], *, threads: int | None = None,
           meta: dict[str, Any] | None = None) -> Fingerprint:
    """Estimate a camera's fingerprint from its images.

    Flat, bright, unsaturated frames (sky, a white wall, out of focus) give the best
    fingerprint per frame; textured scenes work but need more of them. 20 or more is usual.

    Args:
        images: Encoded images or arrays (see :func:`luminance`), all of one size.
        threads: Images denoised concurrently (``None``: ``os.cpu_count()``); numpy and
            pywt release the GIL in their loops, so threads help.
        meta: Saved with the fingerprint (e.g. ``{"camera": ...}``); the denoiser settings
            are added under ``"settings"``.

    Returns:
        :class:`Fingerprint` of the images' size.

    Raises:
        FingerprintError: no images, or images of different sizes.
        ImageFormatError: an undecodable image.
    """
    n_threads = max(1, threads or os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        k, n = estimate_fingerprint(pool.map(_residual_pair, images))
    k = wiener_dft(zero_mean(k))
    settings = {"wavelet": WAVELET, "levels": LEVELS, "windows": list(WINDOWS), "sigma0": SIGMA0,
                "luma_weights": list(LUMA_WEIGHTS), "saturation": SATURATION, "zero_mean": "rows+cols per 2x2 phase",
                "wiener_dft": True}
    return Fingerprint(k=k, frames=n, meta={**(meta or {}), "settings": settings})


# ---------------------------------------------------------------------------------- CLI


def _run_enroll(args: argparse.Namespace) -> int:
    meta = {"camera": args.camera} if args.camera else {}
    fp = enroll(args.images, threads=args.threads, meta=meta)
    path = fp.save(args.output, dtype=args.dtype)
    print(f"{path}: fingerprint {fp.width}x{fp.height} from {fp.frames} images ({args.dtype})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``rawproof enroll IMAGES... -o device.fp [--camera NAME] [--dtype float32|float16] [--threads N]``."""
    p = subparsers.add_parser(
        "enroll", help="estimate a camera's sensor fingerprint (PRNU) from its images",
        description="Estimate the PRNU fingerprint of one camera from images it took (all of one size; "
                    "flat, bright frames are best, 20 or more) and write it to a checksummed file for "
                    "`rawproof verify --fingerprint`.",
    )
    p.add_argument("images", nargs="+", help="JPEG/PNG/WebP files from the camera, all of one size")
    p.add_argument("-o", "--output", required=True, metavar="DEVICE_FP", help="fingerprint file to write")
    p.add_argument("--camera", default="", help="camera name stored in the file")
    p.add_argument("--dtype", choices=sorted(_DTYPE_CODES), default="float32", help="payload type (default float32)")
    p.add_argument("--threads", type=int, default=None, help="images denoised concurrently (default: all cores)")
    p.set_defaults(func=_run_enroll)
