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
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from rawproof.errors import ModelError, SigningError
from rawproof.models import ModelInfo, ModelKind, find_model, list_models
from rawproof.raw import CFA, PixelFormat, RawFrame
from rawproof.runtime import get_session
from rawproof.tiling import run_nip

if TYPE_CHECKING:
    from rawproof.provenance import CaptureInfo, ModelRef, Signer
    from rawproof.repo.client import Publisher, PublishResult

__all__ = [
    "ImageEncoding",
    "SensorBuffer",
    "DevelopTimings",
    "DevelopResult",
    "develop",
    "encode_image",
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
        wb: (R, G, B) or (R, Gr, Gb, B) white-balance gains, or ``None``.
        camera, device_id: Free text for the capture assertion.
    """

    data: bytes | bytearray | memoryview | np.ndarray
    width: int
    height: int
    fmt: str | PixelFormat
    cfa: str | CFA
    black: float | tuple[float, float, float, float]
    white: float
    stride: int = 0
    wb: tuple[float, ...] | None = None
    camera: str = ""
    device_id: str = ""


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


def encode_image(rgb: np.ndarray, fmt: str | ImageEncoding = ImageEncoding.JPEG, quality: int = 95) -> bytes:
    """Encode a uint8 H x W x 3 sRGB image with Pillow (libjpeg/libpng).

    Args:
        rgb: uint8, H x W x 3, sRGB.
        fmt: JPEG or PNG.
        quality: JPEG quality 1..95 (ignored for PNG).

    Raises:
        ValueError: bad array or quality.
    """
    enc = ImageEncoding.parse(fmt)
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be uint8 H x W x 3, got {getattr(rgb, 'dtype', None)} {getattr(rgb, 'shape', None)}")
    if enc is ImageEncoding.JPEG and not 1 <= int(quality) <= 95:
        raise ValueError(f"JPEG quality must be in 1..95, got {quality}")
    buf = io.BytesIO()
    img = Image.fromarray(rgb, "RGB")
    if enc is ImageEncoding.JPEG:
        img.save(buf, "JPEG", quality=int(quality))
    else:
        img.save(buf, "PNG")
    return buf.getvalue()


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
        quality: JPEG quality used for ``signed``.
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
        return RawFrame.from_buffer(
            raw.data, raw.width, raw.height, raw.fmt, raw.cfa, raw.black, raw.white,
            stride=raw.stride, wb=raw.wb, camera=raw.camera, device_id=raw.device_id, threads=threads,
        )
    if isinstance(raw, (str, os.PathLike)):
        return RawFrame.from_file(raw)
    raise TypeError(f"develop() takes a RawFrame, SensorBuffer or file path, got {type(raw).__name__}")


def _paired_fan(nip: ModelInfo) -> ModelRef | None:
    """The FAN trained with this NIP (NIP metadata ``paired_fan``, a FAN name), if installed, for the capture assertion.

    verify() then analyses the image with that FAN (matched by SHA-256) rather than the default one.
    """
    from rawproof.provenance import ModelRef

    name = nip.metadata.get("paired_fan")
    if not name:
        return None
    try:
        fan = find_model(str(name), ModelKind.FAN)
    except ModelError:
        return None
    return ModelRef(fan.name, fan.sha256)


def _split_camera(camera: str) -> tuple[str, str]:
    """``"Canon EOS 550D"`` -> (``"Canon"``, ``"EOS 550D"``): RawFrame keeps make and model in one string."""
    make, _, model = camera.strip().partition(" ")
    return make, model


def develop(
    raw: RawFrame | SensorBuffer | str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] | ModelInfo | None = None,
    providers: Sequence[str] | str | None = None,
    tile: int | None = None,
    threads: int | None = None,
    signer: Signer | None = None,
    capture: CaptureInfo | None = None,
    fmt: str | ImageEncoding = ImageEncoding.JPEG,
    quality: int = 95,
    publish: Publisher | str | None = None,
) -> DevelopResult:
    """Develop a Bayer RAW into an 8-bit sRGB image with a NIP, optionally signed (C2PA).

    Args:
        raw: A :class:`RawFrame`, a camera RAW file path (:meth:`RawFrame.from_file`), or a
            :class:`SensorBuffer` (:meth:`RawFrame.from_buffer`).
        model: NIP to use: ``None`` = default shipped NIP, a shipped name, an ``.onnx`` path
            (with its JSON), or a :class:`ModelInfo`.
        providers: onnxruntime providers (see :func:`rawproof.runtime.resolve_providers`);
            ``None`` = best available (TensorRT > CUDA > CPU).
        tile: Core tile side in stack pixels (``None`` = 512, ``0`` = whole frame at once).
        threads: Threads for native unpacking and onnxruntime; ``None`` = all cores.
        signer: If given, encode as ``fmt`` and embed a C2PA manifest (``result.signed``) that
            includes a ``c2pa.soft-binding`` assertion computed on the developed pixels
            (:mod:`rawproof.softbinding`; none for an image smaller than 8 px or flat).
        capture: Base capture assertion (e.g. with ``capture_time`` or ``fan``); its
            ``raw_sha256``, ``nip`` and ``develop`` settings are always replaced by what
            this call actually did. Default: built from the frame's camera/device id.
        fmt, quality: Encoding of the signed image.
        publish: After signing, send the manifest store to a repository: a
            :class:`rawproof.repo.Publisher`, or a repository URL (API key from
            ``$RAWPROOF_REPO_KEY``, queue folder ``$RAWPROOF_PUBLISH_QUEUE`` or
            ``~/.cache/rawproof/publish-queue``). Unreachable: the store is queued
            (``result.published.status == "queued"``). Needs ``signer``.

    Returns:
        :class:`DevelopResult`.

    Raises:
        RawFormatError: unreadable or inconsistent RAW input.
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
    # Resolve the model first: a missing model should fail before seconds of unpacking.
    info = find_model(model, ModelKind.NIP)
    session = get_session(info, ModelKind.NIP, providers=providers, threads=nthreads)
    t0 = time.perf_counter()
    frame = _to_frame(raw, nthreads)
    t1 = time.perf_counter()
    stack = frame.to_stack(colour=True, threads=nthreads)
    t2 = time.perf_counter()
    raw_sha = mosaic_sha256(frame.mosaic)
    t3 = time.perf_counter()
    tiled = run_nip(session, stack, tile=tile)
    del stack
    rgb = tiled.rgb
    rgb.flags.writeable = False
    encode_ms = sign_ms = softbind_ms = publish_ms = 0.0
    signed = signed_capture = published = None
    if signer is not None:
        from rawproof import provenance, softbinding

        settings = {"format": enc.value, "quality": int(quality), "tile": tile, "provider": session.provider,
                    "width": int(rgb.shape[1]), "height": int(rgb.shape[0])}
        nip_ref = provenance.ModelRef(info.name, info.sha256)
        if capture is None:
            make, cam_model = _split_camera(frame.camera)
            signed_capture = provenance.CaptureInfo(
                camera_make=make, camera_model=cam_model, device_id=frame.device_id, raw_sha256=raw_sha,
                nip=nip_ref, capture_time=datetime.now(timezone.utc).isoformat(timespec="seconds"), develop=settings,
                fan=_paired_fan(info),
            )
        else:
            signed_capture = dataclasses.replace(capture, raw_sha256=raw_sha, nip=nip_ref, develop={**capture.develop, **settings})
        t4 = time.perf_counter()
        encoded = encode_image(rgb, enc, quality)
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
        quality=int(quality) if signed is not None else None, capture=signed_capture, published=published,
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

        signer = Signer.from_files(args.sign_cert, args.sign_key, alg=args.sign_alg)
    publisher = None
    if args.publish:
        from rawproof.repo.client import Publisher

        publisher = Publisher(args.publish, args.publish_queue or default_publish_queue(), api_key=args.repo_key)
    try:
        res = develop(args.file, model=args.model, providers=args.providers, tile=args.tile, threads=args.threads,
                      signer=signer, fmt=enc, quality=args.quality, publish=publisher)
    finally:
        if signer is not None:
            signer.close()
    t = time.perf_counter()
    out = res.save(args.out, quality=args.quality)
    write_ms = (time.perf_counter() - t) * 1e3
    if args.json:
        print(json.dumps({
            "input": str(args.file), "output": str(out), "width": res.width, "height": res.height,
            "model": {"name": res.model_name, "sha256": res.model_sha256}, "provider": res.provider,
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


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``rawproof develop FILE -o OUT [--model] [--providers] [--tile] [--json]``."""
    p = subparsers.add_parser("develop", help="develop a RAW file through a NIP into JPEG/PNG",
                              description="Develop a camera RAW file with a neural imaging pipeline (ONNX).")
    p.add_argument("file", help="camera RAW file (DNG, NEF, CR2, ...)")
    p.add_argument("-o", "--out", help="output .jpg/.jpeg/.png (default: FILE with .jpg)")
    p.add_argument("--model", help="NIP name or .onnx path (default: the shipped default NIP)")
    p.add_argument("--providers", help="comma-separated onnxruntime providers, e.g. cuda,cpu (default: best available)")
    p.add_argument("--tile", type=int, default=None, help="core tile side in stack pixels (default 512; 0 = whole frame)")
    p.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality 1..95 (default 95)")
    s = p.add_argument_group("signing (C2PA)")
    s.add_argument("--sign-cert", help="device certificate chain PEM")
    s.add_argument("--sign-key", help="device private key PEM")
    s.add_argument("--sign-alg", default="es256", help="signature algorithm (default es256)")
    r = p.add_argument_group("publishing (durable content credentials, docs/credentials.md)")
    r.add_argument("--publish", metavar="URL", help="send the signed manifest store to this repository (queued if unreachable)")
    r.add_argument("--repo-key", default=os.environ.get("RAWPROOF_REPO_KEY"), help="device API key (default $RAWPROOF_REPO_KEY)")
    r.add_argument("--publish-queue", metavar="DIR", help="offline queue folder (default $RAWPROOF_PUBLISH_QUEUE or ~/.cache/rawproof/publish-queue)")
    p.add_argument("--json", action="store_true", help="print a JSON report instead of text")
    p.set_defaults(func=_run_cli)
