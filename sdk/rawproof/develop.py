"""develop(): RAW -> NIP (ONNX Runtime, tiled) -> uint8 sRGB -> JPEG/PNG -> C2PA signature.

The high-level call of the data path::

    result = rawproof.develop("photo.dng")                  # default shipped NIP
    result.save("photo.jpg", quality=95)
    signed = rawproof.develop(frame, signer=signer).signed   # JPEG with a C2PA manifest

Low-level steps stay public: :meth:`RawFrame.to_stack`, :func:`rawproof.runtime.get_session`,
:func:`rawproof.tiling.run_nip`, :func:`rawproof.provenance.sign_image`.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import io
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from rawproof.errors import RawFormatError, SigningError
from rawproof.models import ModelInfo, ModelKind, list_models
from rawproof.pairs import choose_nip, find_in_dirs, paired_fan
from rawproof.raw import CFA, PixelFormat, RawFrame
from rawproof.runtime import get_session, resolve_providers
from rawproof.tiling import run_nip
from rawproof.untrusted import dumps_strict

if TYPE_CHECKING:
    from rawproof.provenance import CaptureInfo, Signer
    from rawproof.repo.client import Publisher, PublishResult

__all__ = [
    "ImageEncoding",
    "SensorBuffer",
    "DevelopTimings",
    "DevelopResult",
    "develop",
    "encode_image",
    "capture_exif",
    "stretch_to_square",
    "square_size",
    "bench_develop",
    "default_publish_queue",
    "register",
]


class ImageEncoding(str, enum.Enum):
    """Output file formats (Pillow: libjpeg / libpng)."""

    JPEG = "jpeg"
    """Baseline JPEG, Pillow's default 4:2:0 chroma subsampling, ``quality`` 1..95."""
    PNG = "png"
    """Lossless 8-bit RGB PNG."""

    @property
    def mime(self) -> str:
        """MIME type, as :func:`rawproof.provenance.sign_image` takes it."""
        return f"image/{self.value}"

    @classmethod
    def parse(cls, value: str | ImageEncoding) -> ImageEncoding:
        """A member from itself, its name (``"jpg"`` too) or a file suffix; ``ValueError`` otherwise."""
        if isinstance(value, ImageEncoding):
            return value
        v = str(value).lower().lstrip(".")
        v = {"jpg": "jpeg", "jpe": "jpeg"}.get(v, v)
        try:
            return cls(v)
        except ValueError:
            raise ValueError(f"unsupported image format {value!r}; use jpeg or png") from None

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> ImageEncoding:
        """Format from a file name's suffix (``.jpg``, ``.jpeg``, ``.png``)."""
        return cls.parse(Path(path).suffix)


@dataclass(frozen=True)
class SensorBuffer:
    """A packed sensor readout plus what is needed to decode it (see :meth:`RawFrame.from_buffer`).

    Attributes:
        data: The raw bytes (not copied; read once by the native unpacker).
        width, height: Mosaic size in pixels, both even.
        fmt: Byte layout (:class:`rawproof.raw.PixelFormat` or its value, e.g. ``"raw10"``).
        cfa: Pattern of the top-left 2x2 block.
        black: Black level, buffer DN: one value or (R, Gr, Gb, B).
        white: Saturation level, buffer DN.
        stride: Bytes per row; 0 = tightly packed.
        wb: (R, G, B) or (R, Gr, Gb, B) white-balance gains; ``"auto"`` for grey-world gains
            estimated from the frame; ``None`` for no white balance (raw sensor colour: usually
            a strong green cast).
        ccm: Camera RGB -> linear sRGB 3x3, or ``None`` (identity).
        shift: Right-shift for data stored shifted up (see :meth:`RawFrame.from_buffer`).
        pixel_aspect: Pixel width / height, 1 = square.
        camera, device_id: Free text for the capture assertion.
        capture_time: When the sensor was exposed (ISO 8601, with a UTC offset if the
            firmware knows its zone), as the firmware read its clock; ``None`` if unknown.
    """

    data: bytes | bytearray | memoryview | np.ndarray
    width: int
    height: int
    fmt: str | PixelFormat
    cfa: str | CFA
    black: float | tuple[float, float, float, float]
    white: float
    stride: int = 0
    wb: tuple[float, ...] | str | None = None
    ccm: np.ndarray | tuple[tuple[float, ...], ...] | None = None
    shift: int = 0
    pixel_aspect: float = 1.0
    camera: str = ""
    device_id: str = ""
    capture_time: str | None = None


@dataclass(frozen=True)
class DevelopTimings:
    """Wall time per stage of one :func:`develop` call, milliseconds.

    Attributes:
        model_ms: Finding the model and getting its session (opening and checking it on the
            first call; a cache hit afterwards).
        unpack_ms: Reading/unpacking the RAW into a :class:`RawFrame` (0 if one was given).
        stack_ms: ``RawFrame.to_stack(colour=True)`` (native CFA -> RGGB, levels, WB; colour matrix per quad).
        hash_ms: SHA-256 of the mosaic.
        nip_ms: Inside onnxruntime, summed over tiles.
        quantize_ms: Clip, round to uint8 and place the tiles.
        encode_ms: JPEG/PNG encoding (0 without ``signer``).
        softbind_ms: Soft-binding codes of the developed pixels (0 without ``signer``).
        sign_ms: C2PA signing (0 without ``signer``).
        publish_ms: Publishing the manifest store, or queueing it (0 without ``publish``).
        total_ms: The whole call.
    """

    model_ms: float
    unpack_ms: float
    stack_ms: float
    hash_ms: float
    nip_ms: float
    quantize_ms: float
    encode_ms: float
    sign_ms: float
    total_ms: float
    softbind_ms: float = 0.0
    publish_ms: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """The fields as a plain dict."""
        return dataclasses.asdict(self)


def encode_image(rgb: np.ndarray, fmt: str | ImageEncoding = ImageEncoding.JPEG, quality: int = 95, *,
                 subsampling: str = "420", exif: bytes | None = None) -> bytes:
    """Encode a uint8 H x W x 3 sRGB image with Pillow (libjpeg/libpng).

    Args:
        rgb: uint8, H x W x 3, sRGB.
        fmt: JPEG or PNG.
        quality: JPEG quality 1..95 (ignored for PNG).
        subsampling: JPEG chroma subsampling, ``"444"``, ``"422"`` or ``"420"`` (Pillow's
            default; ignored for PNG).
        exif: An EXIF block (``Image.Exif().tobytes()``, e.g. from :func:`capture_exif`) to
            embed: APP1 in a JPEG, ``eXIf`` in a PNG.

    Raises:
        ValueError: bad array, quality or subsampling.
    """
    from rawproof.imageio import PILLOW_SUBSAMPLING

    enc = ImageEncoding.parse(fmt)
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be uint8 H x W x 3, got {getattr(rgb, 'dtype', None)} {getattr(rgb, 'shape', None)}")
    if enc is ImageEncoding.JPEG and not 1 <= int(quality) <= 95:
        raise ValueError(f"JPEG quality must be in 1..95, got {quality}")
    if subsampling not in PILLOW_SUBSAMPLING:
        raise ValueError(f"subsampling must be one of {list(PILLOW_SUBSAMPLING)}, got {subsampling!r}")
    buf = io.BytesIO()
    img = Image.fromarray(rgb, "RGB")
    extra = {} if exif is None else {"exif": exif}
    if enc is ImageEncoding.JPEG:
        img.save(buf, "JPEG", quality=int(quality), subsampling=PILLOW_SUBSAMPLING[subsampling], **extra)
    else:
        img.save(buf, "PNG", **extra)
    return buf.getvalue()


def capture_exif(capture: CaptureInfo) -> bytes:
    """The EXIF block of a capture: Make, Model, Software (rawproof version),
    DateTimeOriginal and, when the capture time has one, OffsetTimeOriginal.

    Returns:
        EXIF bytes (``Exif\\0\\0`` + TIFF) for :func:`encode_image`.
    """
    exif = Image.Exif()
    exif[0x010F] = capture.camera_make
    exif[0x0110] = capture.camera_model
    exif[0x0131] = f"rawproof {capture.sdk_version}"
    when = capture.capture_datetime
    if when is not None:
        ifd = exif.get_ifd(0x8769)
        ifd[0x9003] = when.strftime("%Y:%m:%d %H:%M:%S")
        if when.utcoffset() is not None:
            ifd[0x9011] = when.isoformat()[-6:]
    return exif.tobytes()


@dataclass(frozen=True)
class DevelopResult:
    """Output of :func:`develop`.

    Attributes:
        rgb: uint8, H x W x 3 (mosaic size), sRGB, read-only; rounded from the NIP output
            clipped to [0, 1].
        model_name, model_sha256: Identity of the NIP (its metadata name and file hash).
        provider: onnxruntime execution provider that ran the NIP.
        timings: Per-stage wall times.
        raw_sha256: SHA-256 of the mosaic as C-order little-endian uint16 bytes (the C2PA
            ``raw_sha256``; equals :func:`rawproof.provenance.mosaic_sha256`).
        tiles: Number of NIP runs (tiles).
        signed: The encoded image with its C2PA manifest when ``signer`` was given, else ``None``.
        signed_format: Format of ``signed``.
        quality: JPEG quality used for ``signed``; ``None`` for PNG or unsigned.
        capture: The :class:`rawproof.provenance.CaptureInfo` that was signed, or ``None``.
        published: What ``publish=`` did (published with its manifest id, or queued), or ``None``.
    """

    rgb: np.ndarray
    model_name: str
    model_sha256: str
    provider: str
    timings: DevelopTimings
    raw_sha256: str
    tiles: int = 1
    signed: bytes | None = None
    signed_format: ImageEncoding | None = None
    quality: int | None = None
    capture: CaptureInfo | None = None
    published: PublishResult | None = None

    @property
    def height(self) -> int:
        """Image height, pixels."""
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        """Image width, pixels."""
        return int(self.rgb.shape[1])

    def encode(self, fmt: str | ImageEncoding = ImageEncoding.JPEG, quality: int = 95) -> bytes:
        """The image encoded as JPEG or PNG (unsigned; the signed bytes are :attr:`signed`)."""
        return encode_image(self.rgb, fmt, quality)

    def save(self, path: str | os.PathLike[str], quality: int | None = None) -> Path:
        """Write the image; the format follows the suffix (``.jpg``/``.jpeg``/``.png``).

        A signed result writes its :attr:`signed` bytes unchanged, so the suffix must
        match :attr:`signed_format` and ``quality`` (if given) the signed quality.
        Unsigned: encodes with ``quality`` (default 95).

        Raises:
            ValueError: unknown suffix, or a request a signed result cannot honour.
        """
        p = Path(path)
        enc = ImageEncoding.from_path(p)
        if self.signed is not None:
            if enc is not self.signed_format:
                raise ValueError(f"this result was signed as {self.signed_format.value}; save it as such or use encode()")
            if quality is not None and self.signed_format is ImageEncoding.JPEG and quality != self.quality:
                raise ValueError(f"this result was signed at quality {self.quality}, not {quality}")
            p.write_bytes(self.signed)
        else:
            p.write_bytes(self.encode(enc, 95 if quality is None else quality))
        return p


def _to_frame(raw: RawFrame | SensorBuffer | str | os.PathLike[str], threads: int) -> RawFrame:
    if isinstance(raw, RawFrame):
        return raw
    if isinstance(raw, SensorBuffer):
        frame = RawFrame.from_buffer(
            raw.data, raw.width, raw.height, raw.fmt, raw.cfa, raw.black, raw.white,
            stride=raw.stride, wb=raw.wb, ccm=None if raw.ccm is None else np.asarray(raw.ccm, np.float32),
            camera=raw.camera, device_id=raw.device_id, shift=raw.shift, pixel_aspect=raw.pixel_aspect, threads=threads,
        )
        return frame if raw.capture_time is None else dataclasses.replace(frame, capture_time=raw.capture_time)
    if isinstance(raw, (str, os.PathLike)):
        return RawFrame.from_file(raw)
    raise TypeError(f"develop() takes a RawFrame, SensorBuffer or file path, got {type(raw).__name__}")


def square_size(height: int, width: int, pixel_aspect: float) -> tuple[int, int]:
    """(height, width) of an image of ``pixel_aspect`` (width / height) pixels resampled to square ones, as LibRaw sizes it."""
    if pixel_aspect < 1:
        return int(height / pixel_aspect + 0.5), width
    return height, int(width * pixel_aspect + 0.5)


def stretch_to_square(rgb: np.ndarray, pixel_aspect: float) -> np.ndarray:
    """Resample an image of non-square pixels to square ones, as LibRaw's ``stretch()`` does.

    ``pixel_aspect`` < 1 (tall pixels) adds rows: new height ``round(h / aspect)``; > 1 (wide
    pixels) adds columns: new width ``round(w * aspect)``. Each new row (column) interpolates
    linearly between the two source rows (columns) at ``i * aspect`` (``i / aspect``), the
    last one repeated past the edge, rounded half up.

    Args:
        rgb: uint8 H x W x 3.
        pixel_aspect: Pixel width / height.

    Returns:
        uint8 image, a new array (``rgb`` itself when the aspect is 1).
    """
    if pixel_aspect == 1:
        return rgb
    axis = 0 if pixel_aspect < 1 else 1
    n = rgb.shape[axis]
    new = square_size(rgb.shape[0], rgb.shape[1], pixel_aspect)[axis]
    step = pixel_aspect if axis == 0 else 1.0 / pixel_aspect
    pos = np.arange(new, dtype=np.float64) * step
    i0 = np.minimum(pos.astype(np.int64), n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    frac = (pos - i0).reshape((-1, 1, 1) if axis == 0 else (1, -1, 1)).astype(np.float32)
    a, b = np.take(rgb, i0, axis=axis).astype(np.float32), np.take(rgb, i1, axis=axis).astype(np.float32)
    return np.clip(a * (1 - frac) + b * frac + 0.5, 0, 255).astype(np.uint8)


def _split_camera(camera: str) -> tuple[str, str]:
    """``"Canon EOS 550D"`` -> (``"Canon"``, ``"EOS 550D"``): RawFrame keeps make and model in one string."""
    make, _, model = camera.strip().partition(" ")
    return make, model


def develop(
    raw: RawFrame | SensorBuffer | str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] | ModelInfo | None = None,
    tier: str | None = None,
    models_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    providers: Sequence[str] | str | None = None,
    tile: int | None = None,
    stretch: bool = False,
    threads: int | None = None,
    signer: Signer | None = None,
    capture: CaptureInfo | None = None,
    fmt: str | ImageEncoding = ImageEncoding.JPEG,
    quality: int = 95,
    subsampling: str = "420",
    publish: Publisher | str | None = None,
) -> DevelopResult:
    """Develop a Bayer RAW into an 8-bit sRGB image with a NIP, optionally signed (C2PA).

    Args:
        raw: A :class:`RawFrame`, a camera RAW file path (:meth:`RawFrame.from_file`), or a
            :class:`SensorBuffer` (:meth:`RawFrame.from_buffer`).
        model: NIP to use: ``None`` = the NIP of an installed model pair of ``tier``
            (:func:`rawproof.pairs.choose_nip`), a model name (looked up in ``models_dir``, then
            the shipped models), an ``.onnx`` path (with its JSON), or a :class:`ModelInfo`.
        tier: ``"cpu"`` or ``"full"`` when ``model`` is ``None``; ``None`` = by provider
            (``full`` on an accelerator, ``cpu`` on CPUExecutionProvider; the one installed tier
            if only one is). Ignored with an explicit ``model``.
        models_dir: Folder(s) of exported pairs searched before the shipped models.
        providers: onnxruntime providers (see :func:`rawproof.runtime.resolve_providers`);
            ``None`` = best available (TensorRT > CUDA > CPU).
        tile: Core tile side in stack pixels (``None`` = :data:`rawproof.tiling.DEFAULT_TILE`, 1024; ``0`` = whole frame at once).
        stretch: For a frame of non-square pixels (``pixel_aspect`` != 1, e.g. Kodak DC120):
            resample the output to square pixels as LibRaw does (:func:`stretch_to_square`).
            Without it such a frame is refused: the resampling also resamples the NIP's
            traces, which its FAN was not trained to read.
        threads: Threads for native unpacking and onnxruntime; ``None`` = all cores.
        signer: If given, encode as ``fmt`` and embed a C2PA manifest (``result.signed``) that
            includes a ``c2pa.soft-binding`` assertion computed on the developed pixels
            (:mod:`rawproof.softbinding`; none for an image smaller than 8 px or flat).
        capture: Base capture assertion (e.g. with ``capture_time``); its ``raw_sha256``,
            ``nip``, ``fan`` and ``develop`` settings are always replaced by what this call
            actually did: the NIP and the FAN paired with it (``None`` when it has none
            installed), and a missing ``develop_time`` is set. Default: built from the
            frame: camera, capture time from the RAW's own metadata (absent if it has none),
            device id from the frame, else the signing certificate's identity
            (:attr:`Signer.device_id`).
        fmt, quality, subsampling: Encoding of the signed image (quality and chroma
            subsampling for JPEG only); recorded as they were in the capture assertion's
            ``develop`` settings. The signed file also carries the capture's EXIF
            (:func:`capture_exif`).
        publish: After signing, send the manifest store to a repository: a
            :class:`rawproof.repo.Publisher`, or a repository URL (API key from
            ``$RAWPROOF_REPO_KEY``, queue folder ``$RAWPROOF_PUBLISH_QUEUE`` or
            ``~/.cache/rawproof/publish-queue``). Unreachable: the store is queued
            (``result.published.status == "queued"``). Needs ``signer``.

    Returns:
        :class:`DevelopResult`.

    Raises:
        RawFormatError: unreadable or inconsistent RAW input, or non-square pixels without ``stretch``.
        ModelError: no/missing/corrupt/tampered model or one that breaks the contract.
        ProviderError: an unavailable provider was asked for.
        SigningError: signing failed, or ``publish`` without ``signer``.
        RepositoryError: the repository refused the manifest (bad key, invalid store).
        TypeError: ``raw`` is of an unsupported type.
        ValueError: bad ``fmt``/``quality``, or ``tile`` < 0.
    """
    from rawproof.provenance import mosaic_sha256  # provenance loads c2pa: import on first use

    t_start = time.perf_counter()
    nthreads = int(threads or 0)
    enc = ImageEncoding.parse(fmt)
    if publish is not None and signer is None:
        raise SigningError("publish= needs signer=: only a signed manifest can be published")
    if signer is not None and enc is ImageEncoding.JPEG and not 1 <= int(quality) <= 95:
        raise ValueError(f"JPEG quality must be in 1..95, got {quality}")
    from rawproof.imageio import PILLOW_SUBSAMPLING

    if subsampling not in PILLOW_SUBSAMPLING:
        raise ValueError(f"subsampling must be one of {list(PILLOW_SUBSAMPLING)}, got {subsampling!r}")
    # Resolve the model first: a missing model should fail before seconds of unpacking.
    if model is None:
        info = choose_nip(tier, resolve_providers(providers)[0], models_dir)
    else:
        info = find_in_dirs(model, ModelKind.NIP, models_dir)
    session = get_session(info, ModelKind.NIP, providers=providers, threads=nthreads)
    t0 = time.perf_counter()
    frame = _to_frame(raw, nthreads)
    if frame.pixel_aspect != 1 and not stretch:
        sq_h, sq_w = square_size(frame.height, frame.width, frame.pixel_aspect)
        raise RawFormatError(
            f"pixels are not square (aspect {frame.pixel_aspect:.4f}): {frame.width}x{frame.height} would be {sq_w}x{sq_h} as LibRaw "
            "develops it; pass stretch=True (--stretch) to resample the output to square pixels (its traces are then "
            "resampled too, which the paired FAN was not trained to read)"
        )
    t1 = time.perf_counter()
    stack = frame.to_stack(colour=True, threads=nthreads)
    t2 = time.perf_counter()
    raw_sha = mosaic_sha256(frame.mosaic)
    t3 = time.perf_counter()
    tiled = run_nip(session, stack, tile=tile)
    del stack
    rgb = stretch_to_square(tiled.rgb, frame.pixel_aspect)
    rgb.flags.writeable = False
    encode_ms = sign_ms = softbind_ms = publish_ms = 0.0
    signed = signed_capture = published = None
    if signer is not None:
        from rawproof import provenance, softbinding

        codec = {"quality": int(quality), "subsampling": subsampling} if enc is ImageEncoding.JPEG else {}
        settings = {"format": enc.value, **codec, "tile": tile, "provider": session.provider,
                    "width": int(rgb.shape[1]), "height": int(rgb.shape[0]), "tier": info.tier,
                    **({"pixel_aspect": frame.pixel_aspect} if frame.pixel_aspect != 1 else {})}
        nip_ref = provenance.ModelRef(info.name, info.sha256)
        fan = paired_fan(info, models_dir)
        fan_ref = None if fan is None else provenance.ModelRef(fan.name, fan.sha256)
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        if capture is None:
            make, cam_model = _split_camera(frame.camera)
            signed_capture = provenance.CaptureInfo(
                camera_make=make, camera_model=cam_model, device_id=frame.device_id or signer.device_id, raw_sha256=raw_sha,
                nip=nip_ref, capture_time=frame.capture_time, develop=settings, fan=fan_ref, develop_time=now,
            )
        else:
            base = {k: v for k, v in capture.develop.items() if k not in ("quality", "subsampling")}
            signed_capture = dataclasses.replace(capture, raw_sha256=raw_sha, nip=nip_ref, fan=fan_ref, develop={**base, **settings},
                                                 develop_time=capture.develop_time or now)
        t4 = time.perf_counter()
        encoded = encode_image(rgb, enc, quality, subsampling=subsampling, exif=capture_exif(signed_capture))
        t5 = time.perf_counter()
        soft = softbinding.soft_binding_assertion(rgb)
        t6 = time.perf_counter()
        signed = provenance.sign_image(encoded, enc.mime, signed_capture, signer, soft_binding=soft)
        t7 = time.perf_counter()
        encode_ms, softbind_ms, sign_ms = (t5 - t4) * 1e3, (t6 - t5) * 1e3, (t7 - t6) * 1e3
        if publish is not None:
            if soft is None:  # a repository finds manifests by their soft binding: nothing to publish
                from rawproof.repo.client import PublishResult

                published = PublishResult("skipped", error="no soft binding: the image is smaller than 8 px or flat")
            else:
                published = _publish(signed, enc.mime, publish)
            publish_ms = (time.perf_counter() - t7) * 1e3
    timings = DevelopTimings(
        model_ms=(t0 - t_start) * 1e3,
        unpack_ms=0.0 if isinstance(raw, RawFrame) else (t1 - t0) * 1e3, stack_ms=(t2 - t1) * 1e3, hash_ms=(t3 - t2) * 1e3,
        nip_ms=tiled.nip_ms, quantize_ms=tiled.quantize_ms, encode_ms=encode_ms, sign_ms=sign_ms,
        total_ms=(time.perf_counter() - t_start) * 1e3, softbind_ms=softbind_ms, publish_ms=publish_ms,
    )
    return DevelopResult(
        rgb=rgb, model_name=info.name, model_sha256=info.sha256, provider=session.provider, timings=timings,
        raw_sha256=raw_sha, tiles=tiled.tiles, signed=signed, signed_format=enc if signed is not None else None,
        quality=int(quality) if signed is not None and enc is ImageEncoding.JPEG else None, capture=signed_capture,
        published=published,
    )


def default_publish_queue() -> Path:
    """Queue folder of a publisher made from a URL: ``$RAWPROOF_PUBLISH_QUEUE`` or ``~/.cache/rawproof/publish-queue``."""
    env = os.environ.get("RAWPROOF_PUBLISH_QUEUE")
    return Path(env) if env else Path.home() / ".cache" / "rawproof" / "publish-queue"


def _publish(signed: bytes, mime: str, publish: Publisher | str) -> PublishResult:
    """Send the manifest store embedded in ``signed`` (or queue it); see :class:`rawproof.repo.Publisher`."""
    from rawproof.jumbf import manifest_stores
    from rawproof.repo.client import Publisher

    publisher = Publisher(publish, default_publish_queue()) if isinstance(publish, str) else publish
    return publisher.publish(manifest_stores(signed, mime)[0])


def _synthetic_frame(width: int, height: int, seed: int = 0) -> RawFrame:
    """A 12-bit RGGB frame with smooth content and noise, for benchmarks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    scene = 0.5 + 0.4 * np.sin(xx / 97.0) * np.cos(yy / 61.0)
    mosaic = (64 + scene * 3800 + rng.normal(0, 12, (height, width))).clip(0, 4095).astype(np.uint16)
    return RawFrame(mosaic=mosaic, cfa=CFA.RGGB, black=(64, 64, 64, 64), white=4095, wb=(2.0, 1.0, 1.0, 1.5), camera="rawproof bench")


def bench_develop(width: int = 4000, height: int = 3000, *, repeats: int = 3, tile: int | None = None,
                  providers: Sequence[str] | str | None = None, threads: int | None = None) -> list[dict[str, Any]]:
    """Per-stage develop times for a synthetic ``width`` x ``height`` frame, per shipped NIP.

    Each model runs once to warm up (session creation, allocator), then ``repeats`` times;
    the reported stage times are medians in ms (no encoding or signing: those are benched
    by their owners). Returns ``[]`` when no NIP is shipped.

    Returns:
        One dict per NIP: ``model``, ``sha256``, ``provider``, ``width``, ``height``,
        ``megapixels``, ``tiles``, ``repeats``, and ``<stage>_ms`` for each
        :class:`DevelopTimings` field.
    """
    frame = _synthetic_frame(width, height)
    rows = []
    for info in list_models(ModelKind.NIP):
        develop(frame, model=info, providers=providers, tile=tile, threads=threads)
        runs = [develop(frame, model=info, providers=providers, tile=tile, threads=threads) for _ in range(max(1, repeats))]
        row: dict[str, Any] = {
            "model": info.name, "sha256": info.sha256, "provider": runs[0].provider,
            "width": width, "height": height, "megapixels": width * height / 1e6, "tiles": runs[0].tiles, "repeats": len(runs),
        }
        for key in DevelopTimings.__dataclass_fields__:
            row[key] = float(np.median([getattr(r.timings, key) for r in runs]))
        rows.append(row)
    return rows


def _run_cli(args: argparse.Namespace) -> int:
    if args.out is None:
        args.out = str(Path(args.file).with_suffix(".jpg"))
    enc = ImageEncoding.from_path(args.out)
    signer = None
    if args.sign_cert or args.sign_key:
        if not (args.sign_cert and args.sign_key):
            raise SigningError("--sign-cert and --sign-key go together")
        from rawproof.provenance import Signer

        signer = Signer.from_files(args.sign_cert, args.sign_key, alg=args.sign_alg, tsa_url=args.tsa)
    elif args.tsa:
        raise SigningError("--tsa needs --sign-cert and --sign-key")
    publisher = None
    if args.publish:
        from rawproof.repo.client import Publisher

        publisher = Publisher(args.publish, args.publish_queue or default_publish_queue(), api_key=args.repo_key)
    try:
        res = develop(_cli_input(args), model=args.model, tier=args.tier, models_dir=args.models, providers=args.providers,
                      tile=args.tile, threads=args.threads, stretch=args.stretch, signer=signer, fmt=enc, quality=args.quality,
                      subsampling=args.subsampling, publish=publisher)
    finally:
        if signer is not None:
            signer.close()
    t = time.perf_counter()
    out = res.save(args.out, quality=args.quality)
    write_ms = (time.perf_counter() - t) * 1e3
    if args.json:
        print(dumps_strict({
            "input": str(args.file), "output": str(out), "width": res.width, "height": res.height,
            "model": {"name": res.model_name, "sha256": res.model_sha256},
            "fan": None if res.capture is None or res.capture.fan is None else {"name": res.capture.fan.name, "sha256": res.capture.fan.sha256},
            "provider": res.provider,
            "raw_sha256": res.raw_sha256, "tiles": res.tiles, "signed": res.signed is not None,
            "published": None if res.published is None else {
                "status": res.published.status, "manifest_id": res.published.manifest_id,
                "queued_as": None if res.published.queued_as is None else str(res.published.queued_as), "error": res.published.error},
            "timings_ms": {**res.timings.as_dict(), "write_ms": write_ms},
        }, indent=2))
    else:
        print(f"{out}: {res.width}x{res.height}, NIP {res.model_name} on {res.provider}, {res.tiles} tile(s)"
              f"{', C2PA signed' if res.signed is not None else ''}")
        if res.published is not None:
            p = res.published
            print(f"  manifest {p.manifest_id} published" if p.status == "published" else f"  manifest queued as {p.queued_as} ({p.error})")
        for k, v in {**res.timings.as_dict(), "write_ms": write_ms}.items():
            print(f"  {k[:-3]:<9} {v:9.1f} ms")
    return 0


_DUMP_FLAGS = ("format", "width", "height", "stride", "cfa", "black", "white", "wb", "ccm", "shift", "pixel_aspect")


def _cli_input(args: argparse.Namespace) -> RawFrame | str:
    """The RAW to develop: a camera file, or a dump described by its sensor manifest entry and/or flags (flags win)."""
    from rawproof.sensor import SensorSpec, find_entry

    flags = {k: getattr(args, k) for k in _DUMP_FLAGS if getattr(args, k) is not None}
    found = find_entry(args.file, args.sensor)  # --sensor, else a manifest.json beside or above the file
    if found is None and not flags:
        return args.file  # a camera file
    entry, root = found if found is not None else ({"path": Path(args.file).name}, Path(args.file).resolve().parent)

    def numbers(flag: str) -> list[float]:
        try:
            return [float(v) for v in flags[flag].split(",")]
        except ValueError:
            raise RawFormatError(f"--{flag} takes comma-separated numbers, got {flags[flag]!r}") from None

    if "format" in flags:
        flags["container"] = flags.pop("format")
    if "wb" in flags and flags["wb"] != "auto":
        flags["wb"] = numbers("wb")
    if "ccm" in flags:
        vals = numbers("ccm")
        flags["ccm"] = [vals[0:3], vals[3:6], vals[6:9]] if len(vals) == 9 else vals
    if "black" in flags:
        vals = numbers("black")
        flags["black"] = vals[0] if len(vals) == 1 else vals
    spec = SensorSpec.from_entry({**entry, **flags, "path": entry["path"]}, f"{args.file}")
    return spec.read(root, threads=int(args.threads or 0))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``rawproof develop FILE -o OUT [--model | --tier] [--models DIR] [--sensor JSON | dump flags] [--json]``."""
    p = subparsers.add_parser("develop", help="develop a RAW file or sensor dump through a NIP into JPEG/PNG",
                              description="Develop a camera RAW file or a headerless sensor dump with a neural imaging "
                                          "pipeline (ONNX). A dump is described by its sensor manifest entry (--sensor, or a "
                                          "manifest.json beside it; schema in docs/raw_ingest.md) and/or the dump flags.")
    p.add_argument("file", help="camera RAW file (DNG, NEF, CR2, ...) or sensor dump")
    p.add_argument("-o", "--out", help="output .jpg/.jpeg/.png (default: FILE with .jpg)")
    p.add_argument("--model", help="NIP name or .onnx path (default: the NIP of an installed pair of the tier)")
    p.add_argument("--tier", choices=["cpu", "full"], help="pair tier when no --model (default: full on an accelerator, cpu on CPU)")
    p.add_argument("--models", metavar="DIR", action="append", help="folder of exported pairs, searched before the shipped models")
    p.add_argument("--stretch", action="store_true", help="resample non-square pixels to square, as LibRaw does (else refused)")
    d = p.add_argument_group("sensor dumps (fields of the sensor manifest entry; flags override the entry)")
    d.add_argument("--sensor", metavar="MANIFEST", help="sensor manifest listing FILE (default: a manifest.json beside or above it)")
    d.add_argument("--format", choices=["raw10", "raw12", "raw14", "u16le", "u8", "pgm16be", "png16"], help="dump container")
    d.add_argument("--width", type=int, help="mosaic width, pixels")
    d.add_argument("--height", type=int, help="mosaic height, pixels")
    d.add_argument("--stride", type=int, help="bytes per row (0 = tightly packed)")
    d.add_argument("--cfa", choices=[c.value for c in CFA], help="top-left 2x2 pattern")
    d.add_argument("--black", help="black level, DN: one value or R,Gr,Gb,B")
    d.add_argument("--white", type=float, help="saturation level, DN")
    d.add_argument("--wb", help="R,G,B or R,Gr,Gb,B gains, or auto (grey-world); default none (green cast)")
    d.add_argument("--ccm", help="camera RGB -> linear sRGB, 9 numbers row-major")
    d.add_argument("--shift", type=int, help="right-shift of data stored shifted up")
    d.add_argument("--pixel-aspect", dest="pixel_aspect", type=float, help="pixel width / height (default 1)")
    p.add_argument("--providers", help="comma-separated onnxruntime providers, e.g. cuda,cpu (default: best available)")
    p.add_argument("--tile", type=int, default=None, help="core tile side in stack pixels (default 1024; 0 = whole frame)")
    p.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality 1..95 (default 95)")
    p.add_argument("--subsampling", default="420", choices=["444", "422", "420"], help="JPEG chroma subsampling (default 420)")
    s = p.add_argument_group("signing (C2PA)")
    s.add_argument("--sign-cert", help="device certificate chain PEM")
    s.add_argument("--sign-key", help="device private key PEM")
    s.add_argument("--sign-alg", default="es256", help="signature algorithm (default es256)")
    s.add_argument("--tsa", metavar="URL", help="RFC 3161 time-stamp authority: the signature stays valid after the "
                                                "device certificate expires (see docs/provenance.md for offline devices)")
    r = p.add_argument_group("publishing (durable content credentials, docs/credentials.md)")
    r.add_argument("--publish", metavar="URL", help="send the signed manifest store to this repository (queued if unreachable)")
    r.add_argument("--repo-key", default=os.environ.get("RAWPROOF_REPO_KEY"), help="device API key (default $RAWPROOF_REPO_KEY)")
    r.add_argument("--publish-queue", metavar="DIR", help="offline queue folder (default $RAWPROOF_PUBLISH_QUEUE or ~/.cache/rawproof/publish-queue)")
    p.add_argument("--json", action="store_true", help="print a JSON report instead of text")
    p.set_defaults(func=_run_cli)
