"""The platform channel set: how shared copies of an image reach a verifier.

One definition, used by training (``rawproof_train.platforms`` draws a channel per batch),
by the evaluation (``rawproof_train.image_eval`` measures each named channel) and by
:func:`rawproof.verify` (a FAN whose ``trained_channel`` metadata describes the set speaks
for every file the set can produce, and only for those)::

    rng = np.random.default_rng(0)
    ch = PLATFORM_SET.sample(rng)          # PlatformChannel
    data = ch.apply(rgb_uint8)             # encoded bytes, as the platform serves them
    PLATFORM_SET.to_metadata()             # the FAN's ``trained_channel``

The set (:data:`PLATFORM_SET`, docs/verify.md "Platform channels"):

- **scale** uniform in [0.4, 1.0] of the developed image, with one of three filters
  (:class:`Resize`): Pillow's box (area average), bilinear without antialiasing (half-pixel
  centres, torch semantics: the training channel's 2x2 box at exactly 2x), Pillow's
  antialiased bilinear (a triangle stretched by the factor; what most platforms do);
  scale 1 leaves the pixels alone;
- **codec**: JPEG (libjpeg through Pillow) at IJG quality 40..95 with 4:4:4 or 4:2:0 chroma,
  or WebP (libwebp, lossy) at quality 50..90;
- with probability ``p_second`` a **second re-encode** of the decoded first one, drawn the
  same way (codec and quality, no second resize): a copy re-shared from a platform.

Everything is integer-exact and seeded: the same ``rng`` state gives the same bytes.
"""

from __future__ import annotations

import enum
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rawproof.imageio import PILLOW_SUBSAMPLING

__all__ = ["Resize", "Codec", "Encoding", "PlatformChannel", "ChannelSet", "PLATFORM_SET", "NAMED_CHANNELS",
           "SET_NAME", "decode_bytes", "named_channels"]

SET_NAME = "platform-v1"
"""Value of ``trained_channel["set"]`` for a FAN trained behind :data:`PLATFORM_SET`."""


class Resize(str, enum.Enum):
    """Downscale filter of a platform channel."""

    BOX = "box"
    """Pillow ``Image.BOX``: each output pixel the area average of the input it covers."""
    BILINEAR = "bilinear"
    """Bilinear without antialiasing, half-pixel centres (:func:`rawproof.forensics.resize_bilinear`,
    torch ``F.interpolate`` semantics): a 2x2 box at exactly 2x, aliasing at other factors."""
    ANTIALIAS = "antialias"
    """Pillow ``Image.BILINEAR``: a triangle filter stretched by the factor (antialiased)."""


class Codec(str, enum.Enum):
    """Lossy codec of a platform channel."""

    JPEG = "jpeg"
    """libjpeg(-turbo) through Pillow, IJG quality scaling, baseline."""
    WEBP = "webp"
    """libwebp lossy through Pillow (its own 4:2:0)."""


@dataclass(frozen=True)
class Encoding:
    """One lossy encode.

    Attributes:
        codec: :class:`Codec`.
        quality: IJG quality (JPEG, 1..100) or libwebp quality (WebP, 0..100).
        subsampling: JPEG chroma layout ``"444"`` or ``"420"``; WebP is always ``"420"``.
    """

    codec: Codec
    quality: int
    subsampling: str = "420"

    def encode(self, rgb: np.ndarray) -> bytes:
        """Encode uint8 H x W x 3 ``rgb``; returns the file bytes."""
        from PIL import Image

        buf = io.BytesIO()
        if self.codec is Codec.JPEG:
            Image.fromarray(rgb).save(buf, "JPEG", quality=int(self.quality), subsampling=PILLOW_SUBSAMPLING[self.subsampling])
        else:
            Image.fromarray(rgb).save(buf, "WEBP", quality=int(self.quality), method=4)
        return buf.getvalue()

    @property
    def name(self) -> str:
        """Short label, e.g. ``jpeg75-420`` or ``webp60``."""
        return f"jpeg{self.quality}-{self.subsampling}" if self.codec is Codec.JPEG else f"webp{self.quality}"


def decode_bytes(data: bytes) -> np.ndarray:
    """Decode an encoded image to uint8 H x W x 3 (Pillow), a new array."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB")).copy()


def _resize(rgb: np.ndarray, scale: float, resize: Resize) -> np.ndarray:
    from PIL import Image

    if scale == 1:
        return rgb
    h, w = rgb.shape[:2]
    oh, ow = max(1, round(h * scale)), max(1, round(w * scale))
    if resize is Resize.BILINEAR:
        from rawproof.forensics import resize_bilinear

        return np.clip(np.rint(resize_bilinear(rgb.astype(np.float32), oh, ow)), 0, 255).astype(np.uint8)
    flt = Image.Resampling.BOX if resize is Resize.BOX else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(rgb).resize((ow, oh), flt))


@dataclass(frozen=True)
class PlatformChannel:
    """One member of a channel set: a resize then one or two lossy encodes.

    Attributes:
        scale: Output size / input size, (0, 1]; sides round to whole pixels.
        resize: Filter (:class:`Resize`), unused at scale 1.
        encodings: The encodes in order; the file served is the last one's.
    """

    scale: float
    resize: Resize
    encodings: tuple[Encoding, ...]

    def __post_init__(self) -> None:
        if not 0 < self.scale <= 1:
            raise ValueError(f"scale must be in (0, 1], got {self.scale}")
        if not self.encodings:
            raise ValueError("a platform channel needs at least one encoding")

    def apply(self, rgb: np.ndarray) -> bytes:
        """Send uint8 H x W x 3 ``rgb`` through the channel; returns the served file's bytes."""
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"rgb must be a uint8 H x W x 3 array, got {getattr(rgb, 'dtype', type(rgb))} {getattr(rgb, 'shape', '')}")
        x = _resize(rgb, self.scale, self.resize)
        data = b""
        for k, enc in enumerate(self.encodings):
            if k:
                x = decode_bytes(data)
            data = enc.encode(x)
        return data

    def apply_rgb(self, rgb: np.ndarray) -> np.ndarray:
        """:meth:`apply`, decoded: uint8 h x w x 3 as the verifier sees it."""
        return decode_bytes(self.apply(rgb))

    @property
    def name(self) -> str:
        """Label, e.g. ``s0.50-antialias+jpeg75-420`` (``+`` between encodes)."""
        size = "s1" if self.scale == 1 else f"s{self.scale:.2f}-{self.resize.value}"
        return "+".join([size] + [e.name for e in self.encodings])

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"scale": self.scale, "resize": self.resize.value,
                "encodings": [{"codec": e.codec.value, "quality": e.quality, "subsampling": e.subsampling} for e in self.encodings]}


@dataclass(frozen=True)
class ChannelSet:
    """A distribution of platform channels (see the module docstring for :data:`PLATFORM_SET`).

    Attributes:
        scale: (lo, hi), uniform.
        resizes: Filters, drawn uniformly.
        jpeg_qualities: (lo, hi) IJG quality, uniform integers.
        subsamplings: JPEG chroma layouts, drawn uniformly.
        webp_qualities: (lo, hi) libwebp quality, uniform integers.
        p_webp: Probability that an encode is WebP rather than JPEG.
        p_second: Probability of a second re-encode.
        p_full_size: Probability that the scale is exactly 1 (no resize: a platform that
            keeps the size, or a re-save).
        nominal: The channel verify() replays on a camera original (``trained_channel``
            ``downscale`` and ``jpeg_quality``).
    """

    scale: tuple[float, float] = (0.4, 1.0)
    resizes: tuple[Resize, ...] = (Resize.BOX, Resize.BILINEAR, Resize.ANTIALIAS)
    jpeg_qualities: tuple[int, int] = (40, 95)
    subsamplings: tuple[str, ...] = ("444", "420")
    webp_qualities: tuple[int, int] = (50, 90)
    p_webp: float = 0.2
    p_second: float = 0.3
    p_full_size: float = 0.15
    nominal: PlatformChannel = field(default_factory=lambda: NAMED_CHANNELS["web75"])

    def _encoding(self, rng: np.random.Generator) -> Encoding:
        if rng.random() < self.p_webp:
            return Encoding(Codec.WEBP, int(rng.integers(self.webp_qualities[0], self.webp_qualities[1] + 1)))
        q = int(rng.integers(self.jpeg_qualities[0], self.jpeg_qualities[1] + 1))
        return Encoding(Codec.JPEG, q, str(self.subsamplings[int(rng.integers(len(self.subsamplings)))]))

    def sample(self, rng: np.random.Generator) -> PlatformChannel:
        """Draw one channel with ``rng`` (numpy Generator)."""
        scale = 1.0 if rng.random() < self.p_full_size else float(rng.uniform(*self.scale))
        resize = self.resizes[int(rng.integers(len(self.resizes)))]
        encs = [self._encoding(rng)]
        if rng.random() < self.p_second:
            encs.append(self._encoding(rng))
        return PlatformChannel(scale, Resize(resize), tuple(encs))

    def to_metadata(self) -> dict[str, Any]:
        """The FAN metadata ``trained_channel`` for this set.

        Keys read by :func:`rawproof.forensics.channel_mismatch`: ``jpeg_qualities`` ([lo, hi]),
        ``subsampling``, ``webp_qualities``; ``downscale`` and ``jpeg_quality`` (+
        ``nominal_subsampling``) are the nominal channel verify() replays on camera originals.
        """
        nom = self.nominal.encodings[-1]
        return {
            "set": SET_NAME, "downscale": round(1 / self.nominal.scale, 6), "jpeg_quality": nom.quality,
            "nominal_subsampling": nom.subsampling, "jpeg_qualities": list(self.jpeg_qualities),
            "subsampling": list(self.subsamplings), "webp_qualities": list(self.webp_qualities),
            "scale": list(self.scale), "resize": [r.value for r in self.resizes], "p_webp": self.p_webp,
            "p_second": self.p_second, "p_full_size": self.p_full_size,
        }


NAMED_CHANNELS: Mapping[str, PlatformChannel] = {
    # The paper's channel (what the shipped FAN was trained behind).
    "trained": PlatformChannel(0.5, Resize.BILINEAR, (Encoding(Codec.JPEG, 50, "444"),)),
    # Web platforms: Pillow's antialiased 2x + 4:2:0.
    "web75": PlatformChannel(0.5, Resize.ANTIALIAS, (Encoding(Codec.JPEG, 75, "420"),)),
    "web50": PlatformChannel(0.5, Resize.ANTIALIAS, (Encoding(Codec.JPEG, 50, "420"),)),
    # Corners and middle of the set.
    "full-q90-444": PlatformChannel(1.0, Resize.BOX, (Encoding(Codec.JPEG, 90, "444"),)),
    "s0.4-box-q40-420": PlatformChannel(0.4, Resize.BOX, (Encoding(Codec.JPEG, 40, "420"),)),
    "s0.7-bilinear-q95-420": PlatformChannel(0.7, Resize.BILINEAR, (Encoding(Codec.JPEG, 95, "420"),)),
    "s0.6-antialias-webp70": PlatformChannel(0.6, Resize.ANTIALIAS, (Encoding(Codec.WEBP, 70),)),
    "s0.8-antialias-q85-420+q60-444": PlatformChannel(
        0.8, Resize.ANTIALIAS, (Encoding(Codec.JPEG, 85, "420"), Encoding(Codec.JPEG, 60, "444"))),
}
"""Fixed members of the set, by name, for measurements (``rawproof_train.image_eval``)."""

PLATFORM_SET = ChannelSet()
"""The documented platform channel set (module docstring)."""


def named_channels(names: Sequence[str]) -> dict[str, PlatformChannel]:
    """The named channels ``names`` (keys of :data:`NAMED_CHANNELS`).

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    unknown = [n for n in names if n not in NAMED_CHANNELS]
    if unknown:
        raise ValueError(f"unknown channel(s) {unknown}; known: {list(NAMED_CHANNELS)}")
    return {n: NAMED_CHANNELS[n] for n in names}
