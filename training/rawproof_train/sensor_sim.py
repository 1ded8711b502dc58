"""Virtual cameras with a sensor fingerprint (PRNU), for the fingerprint experiments.

Each :class:`VirtualCamera` has a fixed per-pixel gain pattern ``K`` (i.i.d. Gaussian,
standard deviation 0.5-1 %, seeded by the camera index), its own colour model (CCM and
white balance from :func:`rawproof_train.unprocess.random_params`) and its own noise level.
:func:`capture` turns an sRGB photo into that camera's RAW frame::

    photo --unprocess--> linear RAW mosaic x (no noise, [0,1])
          --PRNU-->      x * (1 + K)
          --noise-->     + N(0, shot * x + read)          (shot/read noise, Brooks et al.)
          --quantise-->  uint16 mosaic, black 512, white 16383

so the developed image carries the PRNU exactly as a real sensor's would: multiplied into
the light signal before noise, demosaicing and colour processing.

Frames: a real enrolment uses flat-field frames (sky, a white wall); experiments here
mostly use ordinary scenes, which is harder. To get many different scenes per camera
from a few photos, :func:`scene_frame` takes random square crops (60-100 % of the short
side), random horizontal/vertical flips and resizes them (Pillow, bicubic) to the camera
size, rejecting near-flat crops. :func:`flat_frame` makes smooth, bright, sky-like frames
for the flat-field case.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from rawproof.errors import RawFormatError
from rawproof.raw import RawFrame
from rawproof_train.unprocess import NoiseParams, UnprocessParams, random_params, unprocess

__all__ = [
    "VirtualCamera",
    "make_camera",
    "make_cameras",
    "capture",
    "scene_frame",
    "flat_frame",
    "load_photos",
    "data_root",
]

PRNU_STD_RANGE = (0.005, 0.01)
"""Range of the per-camera PRNU standard deviation (relative gain), drawn uniformly."""

SHOT_RANGE = (1e-4, 1e-3)
"""Log-uniform range of the shot-noise variance factor (base ISO to about ISO 800)."""

MIN_SCENE_STD = 0.04
"""Scene crops whose luminance standard deviation ([0,1] units) is below this are rejected as flat."""

PHOTO_EXTENSIONS = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class VirtualCamera:
    """One simulated camera.

    Attributes:
        name: ``"sim-NN"``.
        seed: Seed that made it (reproducible from :func:`make_camera`).
        prnu: float32, H x W (mosaic size), the PRNU ``K``: each photosite's gain is ``1 + K``;
            i.i.d. Gaussian, zero mean, standard deviation ``prnu_std``.
        prnu_std: Standard deviation of ``K`` (relative gain).
        params: Colour model (CCM, WB gains, levels, CFA RGGB) used to unprocess photos.
        noise: Shot/read noise of the linear signal in [0, 1]: variance ``shot * x + read``.
    """

    name: str
    seed: int
    prnu: np.ndarray = field(repr=False)
    prnu_std: float
    params: UnprocessParams = field(repr=False)
    noise: NoiseParams

    @property
    def height(self) -> int:
        """Frame height in pixels."""
        return int(self.prnu.shape[0])

    @property
    def width(self) -> int:
        """Frame width in pixels."""
        return int(self.prnu.shape[1])


def make_camera(index: int, size: tuple[int, int] = (512, 512), *, seed: int = 0) -> VirtualCamera:
    """Build virtual camera number ``index`` (deterministic in ``index`` and ``seed``).

    Args:
        index: Camera number, >= 0.
        size: (height, width) of its frames in pixels, both even.
        seed: Experiment seed; different seeds give different camera populations.
    """
    h, w = size
    if h < 2 or w < 2 or h % 2 or w % 2:
        raise RawFormatError(f"camera size must be even and at least 2x2, got {w}x{h}")
    rng = np.random.default_rng([seed, index, 0x5EED])
    std = float(rng.uniform(*PRNU_STD_RANGE))
    prnu = (rng.standard_normal((h, w)) * std).astype(np.float32)
    params = random_params(rng)
    shot = float(np.exp(rng.uniform(np.log(SHOT_RANGE[0]), np.log(SHOT_RANGE[1]))))
    # Read noise from Brooks et al.'s log-linear fit to real cameras.
    read = float(np.exp(2.18 * np.log(shot) + 1.20 + rng.normal(0.0, 0.26)))
    return VirtualCamera(name=f"sim-{index:02d}", seed=seed, prnu=prnu, prnu_std=std, params=params,
                         noise=NoiseParams(shot=shot, read=read))


def make_cameras(n: int, size: tuple[int, int] = (512, 512), *, seed: int = 0) -> list[VirtualCamera]:
    """``n`` virtual cameras, numbered 0..n-1 (see :func:`make_camera`)."""
    return [make_camera(i, size, seed=seed) for i in range(n)]


def capture(camera: VirtualCamera, photo: np.ndarray, rng: np.random.Generator) -> RawFrame:
    """Take ``photo`` with ``camera``: unprocess, apply the PRNU, add noise, quantise.

    Args:
        camera: The virtual camera.
        photo: sRGB, H x W x 3 (the camera size), uint8 or float in [0, 1].
        rng: Generator for the shot/read noise (seed it for reproducibility).

    Returns:
        A :class:`~rawproof.RawFrame` (uint16 mosaic, RGGB, black 512, white 16383, the
        camera's WB and CCM); ``camera`` is ``camera.name``.

    Raises:
        RawFormatError: the photo is not H x W x 3 of the camera size.
    """
    if photo.ndim != 3 or photo.shape[:2] != camera.prnu.shape:
        raise RawFormatError(f"photo must be {camera.height} x {camera.width} x 3, got {photo.shape}")
    clean = unprocess(photo, camera.params, camera=camera.name)
    black, white = camera.params.black, camera.params.white
    x = (clean.mosaic.astype(np.float32) - np.float32(black)) / np.float32(white - black)
    x *= 1.0 + camera.prnu
    sd = np.sqrt(np.maximum(camera.noise.shot * x + camera.noise.read, 0.0))
    x += rng.standard_normal(x.shape, dtype=np.float32) * sd.astype(np.float32)
    mosaic = np.rint(np.clip(x, 0.0, 1.0) * (white - black) + black).astype(np.uint16)
    return replace(clean, mosaic=mosaic)


def scene_frame(photo: np.ndarray, size: tuple[int, int], rng: np.random.Generator, *,
                min_scale: float = 0.6, attempts: int = 20) -> np.ndarray:
    """A random crop of ``photo``, randomly flipped, resized to ``size``.

    The crop is ``size``'s aspect ratio, ``min_scale``..1 of the largest such crop, at a
    random position; flips are horizontal and vertical with probability 1/2 each. Crops
    with luminance standard deviation below :data:`MIN_SCENE_STD` are redrawn.

    Args:
        photo: uint8, H x W x 3, sRGB.
        size: (height, width) of the output.
        rng: Generator for crop and flips.
        min_scale: Smallest crop, relative to the largest.
        attempts: Redraws before giving up on a flat photo.

    Returns:
        float32, height x width x 3, sRGB [0, 1]; a new array.

    Raises:
        RawFormatError: every attempt gave a flat crop.
    """
    th, tw = size
    ph, pw = photo.shape[:2]
    fit = min(ph / th, pw / tw)
    for _ in range(attempts):
        s = fit * rng.uniform(min_scale, 1.0)
        ch, cw = max(1, int(th * s)), max(1, int(tw * s))
        y0, x0 = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
        crop = Image.fromarray(photo[y0:y0 + ch, x0:x0 + cw]).resize((tw, th), Image.Resampling.BICUBIC)
        out = np.asarray(crop, dtype=np.float32) / 255.0
        if rng.random() < 0.5:
            out = out[:, ::-1]
        if rng.random() < 0.5:
            out = out[::-1]
        if float((out @ np.array([0.299, 0.587, 0.114], np.float32)).std()) >= MIN_SCENE_STD:
            return np.ascontiguousarray(out)
    raise RawFormatError(f"photo {pw}x{ph} gave only flat crops in {attempts} attempts")


def flat_frame(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A bright, smooth, sky-like frame: a random linear gradient plus a gentle vignette, slightly tinted.

    Returns:
        float32, height x width x 3, sRGB [0, 1], values about 0.55-0.9 (no clipping).
    """
    h, w = size
    yy, xx = np.meshgrid(np.linspace(-1, 1, h, dtype=np.float32), np.linspace(-1, 1, w, dtype=np.float32), indexing="ij")
    angle = rng.uniform(0, 2 * np.pi)
    grad = 0.08 * (np.cos(angle) * xx + np.sin(angle) * yy)
    vignette = -0.06 * (xx * xx + yy * yy)
    base = rng.uniform(0.7, 0.8)
    tint = rng.uniform(0.93, 1.0, size=3).astype(np.float32)
    lum = base + grad + vignette
    return np.clip(lum[:, :, None] * tint, 0.0, 1.0).astype(np.float32)


def data_root() -> Path:
    """The data folder: ``$RAWPROOF_DATA``, else ``shared/data`` beside the project root."""
    return Path(os.environ.get("RAWPROOF_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))


def load_photos(root: str | os.PathLike[str] | None = None, *,
                folders: Sequence[str] = ("photos", "extra/photos"), max_side: int = 1024) -> list[tuple[str, np.ndarray]]:
    """Every PNG/JPEG under ``root/<folder>`` (recursively), as uint8 RGB, sorted by relative path.

    Photos larger than ``max_side`` on the long edge are downsized (Pillow, box filter) to
    keep memory and crop time small.

    Returns:
        [(path relative to root, uint8 H x W x 3)].

    Raises:
        RawFormatError: no photo found.
    """
    base = Path(root) if root is not None else data_root()
    paths = sorted(p for f in folders if (base / f).is_dir() for p in (base / f).rglob("*")
                   if p.suffix.lower() in PHOTO_EXTENSIONS)
    out = []
    for p in paths:
        with Image.open(p) as im:
            im = im.convert("RGB")
            if max(im.size) > max_side:
                r = max_side / max(im.size)
                im = im.resize((max(1, round(im.width * r)), max(1, round(im.height * r))), Image.Resampling.BOX)
            out.append((p.relative_to(base).as_posix(), np.asarray(im, dtype=np.uint8)))
    if not out:
        raise RawFormatError(f"no photos under {[str(base / f) for f in folders]}")
    return out
