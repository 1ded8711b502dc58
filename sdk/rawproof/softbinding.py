"""Soft binding: a content fingerprint that finds an image's manifest after the metadata is gone.

The algorithm is the ISCC Image-Code (ISO 24138), entry ``io.iscc.v0`` of the C2PA soft-binding
algorithm list, computed by ``iscc-core`` (the ISCC Foundation's reference implementation): the
image goes to 8-bit luma, is resized to 32 x 32, and the signs of its 8 x 8 lowest 2-D DCT
coefficients against their median give 64 bits. Scaling, JPEG/WebP re-encoding and mild colour
changes move few bits; cropping moves many, because every coefficient sees the whole frame.

So the assertion carries one block per *region* of a fixed crop grid (:data:`REGIONS`): the whole
frame plus windows of 95 % and 90 % side at the corners, edge midpoints and centre. A copy that
was cropped by up to 10 % of its sides lies within ~2.5 % of one of these windows, and its
whole-frame code is close to that block's code. Each block's ``scope.region`` records the window
(C2PA region of interest, rectangle in percent), so a match also says how the copy was cropped.

    blocks = soft_binding_blocks(rgb)                     # at signing (develop() does this)
    code = image_code(received_rgb)                       # at lookup: one code, whole frame
    hamming(code, parse_value(blocks[0]["value"]))        # 0..64 bits
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "ALG",
    "LABEL",
    "BITS",
    "MATCH_THRESHOLD",
    "REGIONS",
    "Region",
    "image_code",
    "soft_binding_blocks",
    "soft_binding_assertion",
    "format_value",
    "parse_value",
    "encode_query",
    "decode_query",
    "hamming",
    "has_content",
    "MIN_SIDE",
    "MIN_CONTRAST",
    "region_of_block",
]

ALG = "io.iscc.v0"
"""Soft-binding algorithm name, as in the C2PA soft-binding algorithm list (identifier 3)."""

LABEL = "c2pa.soft-binding"
"""C2PA assertion label."""

BITS = 64
"""Bits of one ISCC Image-Code body."""

MATCH_THRESHOLD = 8
"""Largest Hamming distance (bits of 64) accepted as a match; chosen from the recovery and
false-match measurements in ``docs/credentials.md``."""

MIN_SIDE = 8
"""Smallest image side (px) that gets a soft binding."""

MIN_CONTRAST = 2.0
"""Smallest standard deviation (8-bit luma levels) of the 32 x 32 image that gets a soft binding:
every flat frame (a lens-cap shot, a black frame) hashes to nearly the same code, so such codes
would match each other's manifests."""

_REDUCE_SIDE = 512
"""Long edge (px) the luma image is first box-reduced to, so that a 12 MP frame and its
half-size copy take the same path to 32 x 32 and 19 regions cost one big resize."""


@dataclass(frozen=True)
class Region:
    """A crop window in fractions of the image: ``x``, ``y`` top-left corner, ``w``, ``h`` size, all in [0, 1]."""

    x: float
    y: float
    w: float
    h: float

    @property
    def is_full(self) -> bool:
        """Whether the window is the whole frame."""
        return self == Region(0.0, 0.0, 1.0, 1.0)

    def to_scope(self) -> dict[str, Any]:
        """The block's C2PA ``scope`` (a region of interest, rectangle in percent); ``{}`` for the whole frame."""
        if self.is_full:
            return {}
        shape = {"type": "rectangle", "unit": "percent", "origin": {"x": round(self.x * 100, 2), "y": round(self.y * 100, 2)},
                 "width": round(self.w * 100, 2), "height": round(self.h * 100, 2)}
        return {"region": {"region": [{"type": "spatial", "shape": shape}]}}


def _grid() -> tuple[Region, ...]:
    out = [Region(0.0, 0.0, 1.0, 1.0)]
    for side in (0.95, 0.90):
        for fy in (0.0, 0.5, 1.0):
            for fx in (0.0, 0.5, 1.0):
                out.append(Region(round(fx * (1 - side), 4), round(fy * (1 - side), 4), side, side))
    return tuple(out)


REGIONS: tuple[Region, ...] = _grid()
"""The crop grid: the whole frame, then 95 % and 90 % windows at 3 x 3 positions (19 regions)."""


def _luma(rgb: np.ndarray) -> Image.Image:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be uint8 H x W x 3, got {getattr(rgb, 'dtype', None)} {getattr(rgb, 'shape', None)}")
    if rgb.shape[0] < MIN_SIDE or rgb.shape[1] < MIN_SIDE:
        raise ValueError(f"image too small for a soft binding: {rgb.shape[1]}x{rgb.shape[0]} (needs {MIN_SIDE}x{MIN_SIDE})")
    im = Image.fromarray(np.ascontiguousarray(rgb), "RGB").convert("L")  # ITU-R 601 luma, as ISCC normalises
    f = _REDUCE_SIDE / max(im.size)
    if f < 1:
        im = im.resize((max(8, round(im.width * f)), max(8, round(im.height * f))), Image.BOX)
    return im


def _thumb(luma: Image.Image, region: Region) -> np.ndarray:
    w, h = luma.size
    box = (round(region.x * w), round(region.y * h), round((region.x + region.w) * w), round((region.y + region.h) * h))
    return np.asarray(luma.crop(box).resize((32, 32), Image.BICUBIC), dtype=np.uint8)


def _code(luma: Image.Image, region: Region) -> int:
    from iscc_core import soft_hash_image_v0

    return int.from_bytes(soft_hash_image_v0(_thumb(luma, region).ravel().tolist(), bits=BITS), "big")


def has_content(rgb: np.ndarray) -> bool:
    """Whether an image can carry a soft binding: at least :data:`MIN_SIDE` px a side and a 32 x 32
    luma with a standard deviation of at least :data:`MIN_CONTRAST` levels (not a flat frame)."""
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[0] < MIN_SIDE or rgb.shape[1] < MIN_SIDE:
        return False
    return float(_thumb(_luma(rgb), REGIONS[0]).std()) >= MIN_CONTRAST


def image_code(rgb: np.ndarray, region: Region | None = None) -> int:
    """The 64-bit ISCC Image-Code body of an image (or of one window of it).

    Args:
        rgb: uint8, H x W x 3, sRGB (e.g. ``DevelopResult.rgb`` or ``decode_rgb(...).rgb``), at least 8 x 8.
        region: Window to hash; ``None``: the whole frame.

    Returns:
        The code as an unsigned int in [0, 2**64).

    Raises:
        ValueError: not a uint8 H x W x 3 array, or smaller than 8 x 8.
    """
    return _code(_luma(rgb), region or REGIONS[0])


def format_value(code: int) -> str:
    """The canonical ISCC string of an Image-Code body, e.g. ``"ISCC:EEA4GQZQTY6J5DTH"``."""
    from iscc_core import MT, ST_CC, VS, encode_component

    return "ISCC:" + encode_component(MT.CONTENT, ST_CC.IMAGE, VS.V0, BITS, code.to_bytes(BITS // 8, "big"))


def parse_value(value: str) -> int:
    """The 64-bit body of an ISCC Image-Code string; ``ValueError`` for anything else."""
    from iscc_core import MT, ST_CC, iscc_decode

    if not isinstance(value, str) or len(value) > 80:
        raise ValueError("not an ISCC Image-Code string")
    try:
        mt, st, _vs, length, body = iscc_decode(value)
    except Exception as e:  # iscc-core raises ValueError, binascii errors or AssertionError on garbage
        raise ValueError(f"not an ISCC code: {value[:40]!r}") from e
    if mt != MT.CONTENT or st != ST_CC.IMAGE or len(body) != BITS // 8:
        raise ValueError(f"not a {BITS}-bit ISCC Image-Code: {value[:40]!r}")
    return int.from_bytes(body, "big")


def encode_query(value: str) -> str:
    """A block value as the Soft Binding Resolution API wants it in queries (base64 of its UTF-8)."""
    return base64.b64encode(value.encode("utf-8")).decode("ascii")


def decode_query(b64: str) -> str:
    """Inverse of :func:`encode_query`; ``ValueError`` on bad base64 or non-ASCII text."""
    try:
        return base64.b64decode(b64.encode("ascii"), validate=True).decode("ascii")
    except (ValueError, UnicodeError) as e:
        raise ValueError("value is not base64 of an ASCII string") from e


def hamming(a: int, b: int) -> int:
    """Bits that differ between two codes."""
    return (a ^ b).bit_count()


def soft_binding_blocks(rgb: np.ndarray) -> list[dict[str, Any]]:
    """One ``{"scope", "value"}`` block per region of :data:`REGIONS`, computed on the given pixels.

    Args:
        rgb: uint8, H x W x 3, the developed image exactly as it is encoded and signed.
    """
    luma = _luma(rgb)
    return [{"scope": r.to_scope(), "value": format_value(_code(luma, r))} for r in REGIONS]


def soft_binding_assertion(rgb: np.ndarray) -> dict[str, Any] | None:
    """The ``c2pa.soft-binding`` assertion data for an image (``alg``, ``blocks``, ``pad``), or
    ``None`` for an image that cannot carry one (:func:`has_content`: too small or flat)."""
    if not has_content(rgb):
        return None
    return {"alg": ALG, "blocks": soft_binding_blocks(rgb), "pad": []}


def region_of_block(block: Mapping[str, Any]) -> Region:
    """The crop window a block's ``scope`` describes (whole frame when it has no region)."""
    try:
        shape = block["scope"]["region"]["region"][0]["shape"]
        return Region(shape["origin"]["x"] / 100, shape["origin"]["y"] / 100, shape["width"] / 100, shape["height"] / 100)
    except (KeyError, IndexError, TypeError):
        return REGIONS[0]


def blocks_of(assertion: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    """The blocks of a ``c2pa.soft-binding`` assertion that use :data:`ALG` (others are ignored)."""
    if assertion.get("alg") != ALG or not isinstance(assertion.get("blocks"), list):
        return []
    return [b for b in assertion["blocks"] if isinstance(b, Mapping) and isinstance(b.get("value"), str)]
