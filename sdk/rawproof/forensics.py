"""Forensic analysis: run the FAN over an image in patches, aggregate, decide, draw a heatmap.

:func:`rawproof.verify` does all of this for you; the steps stay public::

    info = find_model(None, "fan")
    fa = analyze(rgb_uint8, info, scale=1.0)       # ForensicAnalysis
    fa.score, fa.traces, fa.p_manipulated          # image-level and per-patch results
    render_heatmap(fa, rgb_uint8).save("heat.png")

Patches and grid: square patches of ``patch_size`` pixels (FAN metadata ``patch_size``,
default 128) of the *analysed* image (the input after :func:`resize_bilinear` by
``scale``), with origins every ``stride`` pixels (default ``patch_size``: no overlap, 4x fewer
FAN runs than half-patch steps on 2 CPU cores; pass a smaller stride for a finer map) plus a last
origin flush with the right/bottom edge, so the grid covers every pixel. An image smaller
than one patch is not padded (padding would create traces of its own): the analysis is
reported unavailable.

Aggregation (documented in ``docs/verify.md``): per patch ``i``, ``p_i = softmax(z_i / T)``
of the logits ``z_i`` (temperature ``T`` from the calibration); ``m_i = 1 - p_i[native]``.
Image level: ``class_probabilities = mean_i p_i``; raw score ``s = mean_i m_i``; calibrated
score ``score = sigmoid(a * logit(s) + b)`` (Platt ``a, b``). The traces are MANIPULATED when
``score >= score_threshold`` (a global manipulation) or when the fraction of patches with
``m_i >= patch_threshold`` reaches ``area_threshold`` (a local one), CONSISTENT otherwise.
"""

from __future__ import annotations

import enum
import io
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from rawproof.errors import ModelError
from rawproof.jpeg_trace import JpegEstimate
from rawproof.models import ModelInfo, ModelKind

__all__ = [
    "DEFAULT_PATCH_SIZE",
    "DEFAULT_TRAINED_CHANNEL",
    "Traces",
    "Calibration",
    "DecisionRule",
    "FanConfig",
    "ForensicAnalysis",
    "fan_config",
    "resize_bilinear",
    "patch_origins",
    "softmax",
    "Region",
    "find_regions",
    "Aggregate",
    "aggregate",
    "analyze",
    "unavailable",
    "fit_calibration",
    "fit_decision",
    "fit_region_threshold",
    "render_heatmap",
    "describe_regions",
    "measure_robustness",
    "channel_mismatch",
    "CLASS_COLOURS",
    "LEGEND_HEIGHT",
    "LEGEND_WIDTH",
]

DEFAULT_PATCH_SIZE = 128
"""Patch side (pixels) when the FAN metadata has no ``patch_size``."""

DEFAULT_TRAINED_CHANNEL: Mapping[str, Any] = {"downscale": 2, "jpeg_quality": 50}
"""The distribution channel of DESIGN.md, assumed when the metadata has no ``trained_channel``."""

CLASS_COLOURS: Mapping[str, tuple[int, int, int]] = {
    "sharpen": (230, 25, 25),
    "gaussian": (30, 100, 240),
    "jpeg": (245, 200, 0),
    "resample": (200, 40, 220),
}
"""Heatmap tint of each manipulation class (RGB); other class names cycle through :data:`_FALLBACK_COLOURS`."""

_FALLBACK_COLOURS = ((255, 120, 0), (0, 200, 200), (120, 220, 40), (255, 0, 140))
_BATCH = 32


class Traces(enum.Enum):
    """What the forensic traces say about the image as a whole."""

    CONSISTENT = "consistent"
    """The FAN finds traces consistent with an unedited capture (after the trained channel)."""
    MANIPULATED = "manipulated"
    """Globally or locally, the FAN finds traces of a manipulation class."""
    UNAVAILABLE = "unavailable"
    """No analysis: no FAN installed, or the image is smaller than one patch."""


@dataclass(frozen=True)
class Calibration:
    """Calibration of the FAN outputs, stored in FAN metadata as ``calibration``.

    Identity (``T = 1, a = 1, b = 0``) when the metadata has none. Fit with
    :func:`fit_calibration` on held-out images.

    Attributes:
        temperature: ``T > 0``; per-patch probabilities are ``softmax(logits / T)``.
        platt_a, platt_b: image score ``sigmoid(a * logit(s) + b)`` of the raw mean
            ``s`` of per-patch P(manipulated).
    """

    temperature: float = 1.0
    platt_a: float = 1.0
    platt_b: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be finite and > 0, got {self.temperature}")
        if not (math.isfinite(self.platt_a) and math.isfinite(self.platt_b)):
            raise ValueError(f"Platt parameters must be finite, got {self.platt_a}, {self.platt_b}")

    @classmethod
    def from_metadata(cls, value: Any) -> Calibration:
        """Parse ``{"temperature": T, "platt": [a, b]}`` (both keys optional); ``None`` = identity.

        Raises:
            ModelError: malformed value.
        """
        if value is None:
            return cls()
        try:
            if not isinstance(value, Mapping):
                raise TypeError(f"expected an object, got {type(value).__name__}")
            a, b = value.get("platt", (1.0, 0.0))
            return cls(float(value.get("temperature", 1.0)), float(a), float(b))
        except (TypeError, ValueError) as e:
            raise ModelError(f"invalid FAN calibration metadata {value!r}: {e}") from e

    def to_metadata(self) -> dict[str, Any]:
        """The JSON form to store under the FAN metadata key ``calibration``."""
        return {"temperature": self.temperature, "platt": [self.platt_a, self.platt_b]}

    def score(self, raw: np.ndarray | float) -> np.ndarray:
        """Platt-calibrated score of raw mean P(manipulated) (float64, same shape, [0, 1])."""
        s = np.clip(np.asarray(raw, dtype=np.float64), 1e-7, 1 - 1e-7)
        z = self.platt_a * (np.log(s) - np.log1p(-s)) + self.platt_b
        return 1.0 / (1.0 + np.exp(-z))


@dataclass(frozen=True)
class DecisionRule:
    """Thresholds of the image-level decision, FAN metadata key ``decision`` (all optional).

    Attributes:
        score_threshold: MANIPULATED when the calibrated score reaches it.
        patch_threshold: A patch counts as manipulated when its P(manipulated) reaches it.
        area_threshold: MANIPULATED when that fraction of patches is manipulated.
        region_threshold: MANIPULATED when one connected region of flagged patches
            (:func:`find_regions`) has at least this *mass*: the sum of its patches'
            P(manipulated), counted in non-overlapping patch areas (each patch weighs
            ``(stride / patch_size)^2``). A size/score rule: three patches at 0.9 weigh 2.7,
            as do five at 0.54. ``None`` (FANs calibrated before region decisions): no region rule.
    """

    score_threshold: float = 0.5
    patch_threshold: float = 0.5
    area_threshold: float = 0.25
    region_threshold: float | None = None

    @classmethod
    def from_metadata(cls, value: Any) -> DecisionRule:
        """Parse the ``decision`` metadata object; ``None`` = defaults.

        Raises:
            ModelError: malformed value, a threshold outside (0, 1], or a region threshold <= 0.
        """
        if value is None:
            return cls()
        try:
            rule = cls(**{k: None if v is None else float(v) for k, v in dict(value).items()})
        except (TypeError, ValueError) as e:
            raise ModelError(f"invalid FAN decision metadata {value!r}: {e}") from e
        for k in ("score_threshold", "patch_threshold", "area_threshold"):
            v = getattr(rule, k)
            if v is None or not 0 < v <= 1:
                raise ModelError(f"FAN decision {k} must be in (0, 1], got {v}")
        if rule.region_threshold is not None and not (math.isfinite(rule.region_threshold) and rule.region_threshold > 0):
            raise ModelError(f"FAN decision region_threshold must be finite and > 0, got {rule.region_threshold}")
        return rule


@dataclass(frozen=True)
class FanConfig:
    """What verify needs from a FAN's metadata.

    Attributes:
        patch_size: Patch side in pixels of the image the FAN sees (after the channel).
        trained_channel: The channel the FAN was trained behind, e.g.
            ``{"downscale": 2, "jpeg_quality": 50}``; optional ``jpeg_qualities`` (all qualities
            drawn in training, ``jpeg_quality`` being the nominal one), ``subsampling`` (list,
            default ``["444"]``) and ``resize`` (list of filters, informative). See
            :func:`channel_mismatch`.
        native_index: Index of class ``"native"`` in the logits.
        calibration: Output calibration.
        decision: Decision thresholds.
    """

    patch_size: int
    trained_channel: Mapping[str, Any]
    native_index: int
    calibration: Calibration
    decision: DecisionRule


QUALITY_MARGIN = 5
"""How far (IJG quality steps) an image's JPEG quality may lie outside the trained qualities."""


def channel_mismatch(trained_channel: Mapping[str, Any], image_format: str, jpeg_quality: int | None,
                     jpeg_subsampling: str | None, estimate: JpegEstimate | None = None) -> str | None:
    """Why an image's encoding lies outside the channel (or channel set) a FAN was trained behind, else ``None``.

    A FAN learns what survives its channels; behind another codec setting its readings are not
    evidence (measured: the fixed-channel FAN flags nearly every untouched image without JPEG, at
    q90 or after Pillow's 4:2:0 re-encode, docs/training.md). Checked only when the trained
    channel has ``jpeg_quality``:

    - a JPEG with IJG tables must have its quality within :data:`QUALITY_MARGIN` of the trained
      qualities (``jpeg_qualities`` [lo, hi], else ``jpeg_quality``) and its chroma subsampling among
      ``subsampling`` (default ``["444"]``);
    - a WebP is inside only when the FAN was trained behind WebP (``webp_qualities``, the platform
      set of :mod:`rawproof.platforms`); its quality is not in the file;
    - any other file (PNG, ...) is judged by the last JPEG compression read from its pixels
      (``estimate``, :func:`rawproof.jpeg_trace.estimate_jpeg`): a JPEG re-saved losslessly is
      as good as the JPEG (its chroma layout is not read; the quality is checked); no trace: outside.

    The scale an image was shared at is not in the file, so it is not checked.

    Args:
        trained_channel: :attr:`FanConfig.trained_channel`.
        image_format, jpeg_quality, jpeg_subsampling: as in :class:`rawproof.imageio.DecodedImage`.
        estimate: The JPEG trace read from the pixels of a non-JPEG file, or ``None``.
    """
    if trained_channel.get("jpeg_quality") is None:
        return None
    qualities = [int(q) for q in trained_channel.get("jpeg_qualities", [trained_channel["jpeg_quality"]])]
    subs = [str(v) for v in trained_channel.get("subsampling", ["444"])]
    webp = trained_channel.get("webp_qualities")
    lo, hi = min(qualities), max(qualities)
    trained = f"JPEG q{lo}" + (f"-{hi}" if hi > lo else "") + f" {'/'.join(subs)}"
    if webp:
        trained += f" or WebP q{min(webp)}-{max(webp)}"

    def quality_ok(q: int) -> bool:
        return lo - QUALITY_MARGIN <= q <= hi + QUALITY_MARGIN

    if image_format == "WEBP":
        return None if webp else f"a WEBP image; the FAN was trained behind {trained}"
    if image_format not in ("JPEG", "MPO"):
        if estimate is None:
            return f"a {image_format} image without a JPEG trace in its pixels; the FAN was trained behind {trained}"
        if not quality_ok(estimate.quality):
            return f"a {image_format} image whose pixels show a JPEG q~{estimate.quality}; the FAN was trained behind {trained}"
        return None
    if jpeg_quality is None:
        return f"a JPEG with non-IJG quantisation tables; the FAN was trained behind {trained}"
    if not quality_ok(jpeg_quality) or jpeg_subsampling not in subs:
        return f"JPEG q{jpeg_quality} {jpeg_subsampling}; the FAN was trained behind {trained}"
    return None


MAX_PATCH_SIZE = 1024
"""Largest FAN ``patch_size`` accepted, pixels."""

MAX_DOWNSCALE = 16.0
"""Largest ``trained_channel["downscale"]`` accepted (the shipped channel uses 2)."""


def _is_int_in(v: Any, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _trained_channel_problem(channel: Any) -> str | None:
    """What is wrong with a ``trained_channel`` value (None when it is usable).

    The values become a resize factor and JPEG settings: a NaN, infinite, zero or huge
    downscale, or a quality outside 1..100, must not reach numpy or the encoder.
    """
    if not isinstance(channel, Mapping):
        return "must be an object"
    down = channel.get("downscale", 1)
    if not isinstance(down, (int, float)) or isinstance(down, bool) or not math.isfinite(down) or not 1 <= down <= MAX_DOWNSCALE:
        return f"downscale must be a finite number in [1, {MAX_DOWNSCALE:g}]"
    q = channel.get("jpeg_quality")
    if q is not None and not _is_int_in(q, 1, 100):
        return "jpeg_quality must be null or an int in 1..100"
    qs = channel.get("jpeg_qualities")
    if qs is not None and (not isinstance(qs, list) or not qs or not all(_is_int_in(v, 1, 100) for v in qs)):
        return "jpeg_qualities must be a non-empty list of ints in 1..100"
    subs = channel.get("subsampling")
    if subs is not None and (not isinstance(subs, list) or not subs or not all(isinstance(v, str) for v in subs)):
        return "subsampling must be a non-empty list of names"
    return None


def fan_config(info: ModelInfo) -> FanConfig:
    """Read :class:`FanConfig` from a FAN's metadata (defaults where keys are absent).

    Raises:
        ModelError: not a FAN, no ``"native"`` class, or malformed ``patch_size``,
            ``trained_channel``, ``calibration`` or ``decision``.
    """
    if info.kind is not ModelKind.FAN:
        raise ModelError(f"expected a fan model, got a {info.kind.value}", path=info.path)
    meta = info.metadata
    if "native" not in info.classes:
        raise ModelError(f"FAN classes {list(info.classes)} lack 'native'", path=info.path)
    ps = meta.get("patch_size", DEFAULT_PATCH_SIZE)
    if not isinstance(ps, int) or isinstance(ps, bool) or not 8 <= ps <= MAX_PATCH_SIZE:
        raise ModelError(f"patch_size must be an int in 8..{MAX_PATCH_SIZE}, got {ps!r}", path=info.path)
    channel = meta.get("trained_channel", DEFAULT_TRAINED_CHANNEL)
    why = _trained_channel_problem(channel)
    if why:
        raise ModelError(f"trained_channel {why}: {channel!r}"[:400], path=info.path)
    return FanConfig(
        patch_size=ps,
        trained_channel=dict(channel),
        native_index=info.classes.index("native"),
        calibration=Calibration.from_metadata(meta.get("calibration")),
        decision=DecisionRule.from_metadata(meta.get("decision")),
    )


def _linear_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # torch's area_pixel_compute_source_index for align_corners=False with an explicit size.
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.maximum(src, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def resize_bilinear(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize, half-pixel centres, no antialiasing (torch ``F.interpolate`` semantics).

    At an exact factor of 2 down this is the 2x2 box average of the training channel
    (``rawproof_train.channel.downscale``).

    Args:
        x: float32, H x W x C, any range.
        out_h, out_w: Output size, pixels, >= 1.

    Returns:
        float32, out_h x out_w x C, a new array.
    """
    if x.ndim != 3 or out_h < 1 or out_w < 1:
        raise ValueError(f"expected H x W x C input and a positive size, got {x.shape} -> {out_h}x{out_w}")
    x = np.asarray(x, dtype=np.float32)
    y0, y1, wy = _linear_weights(x.shape[0], out_h)
    rows = x[y0] * (1 - wy)[:, None, None] + x[y1] * wy[:, None, None]
    x0, x1, wx = _linear_weights(x.shape[1], out_w)
    return np.ascontiguousarray(rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None])


def patch_origins(length: int, patch: int, stride: int) -> np.ndarray:
    """Patch origins along one axis: every ``stride`` pixels, plus one flush with the end.

    Returns:
        int64 array, increasing, first 0, last ``length - patch``; empty if ``length < patch``.
    """
    if patch < 1 or stride < 1:
        raise ValueError(f"patch and stride must be >= 1, got {patch}, {stride}")
    if length < patch:
        return np.zeros(0, dtype=np.int64)
    o = np.arange(0, length - patch + 1, stride, dtype=np.int64)
    return o if o[-1] == length - patch else np.append(o, length - patch)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax over the last axis of ``logits / temperature``, float64, numerically stable."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class Region:
    """A connected set of flagged patches (4-neighbour connectivity on the patch grid).

    Attributes:
        cells: ``(row0, col0, row1, col1)``, inclusive-exclusive bounds on the patch grid.
        box: ``(x0, y0, x1, y1)``, pixels of the *input* image (before ``scale``), exclusive
            end: the union of the region's patches. ``(0, 0, 0, 0)`` until :func:`analyze` sets it.
        patches: Number of flagged patches.
        mass: Sum of their P(manipulated), in non-overlapping patch areas (:class:`DecisionRule`).
        mean_p, max_p: Mean and largest P(manipulated) of its patches.
        dominant_class: The most frequent most-probable manipulation class among its patches.
        significant: Whether it passes the decision's region rule (mass >= ``region_threshold``).
    """

    cells: tuple[int, int, int, int]
    patches: int
    mass: float
    mean_p: float
    max_p: float
    dominant_class: str
    significant: bool
    box: tuple[int, int, int, int] = (0, 0, 0, 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"box": list(self.box), "cells": list(self.cells), "patches": self.patches, "mass": self.mass,
                "mean_p": self.mean_p, "max_p": self.max_p, "dominant_class": self.dominant_class, "significant": self.significant}


def find_regions(p_manipulated: np.ndarray, probabilities: np.ndarray, classes: Sequence[str], decision: DecisionRule,
                 patch_weight: float = 1.0) -> tuple[Region, ...]:
    """Connected regions of patches with P(manipulated) >= ``decision.patch_threshold``, heaviest first.

    Args:
        p_manipulated: float, ny x nx.
        probabilities: float, ny x nx x C (for each region's dominant class).
        classes: Class names, logit order (must contain ``"native"``).
        decision: Thresholds (``patch_threshold``; ``region_threshold`` sets ``significant``).
        patch_weight: Weight of one grid patch in non-overlapping patch areas,
            ``(stride / patch_size)^2`` capped at 1.

    Returns:
        Every region (none left out), sorted by decreasing mass.
    """
    pm = np.asarray(p_manipulated, dtype=np.float64)
    flagged = pm >= decision.patch_threshold
    ny, nx = flagged.shape
    label = np.full((ny, nx), -1, np.int64)
    manip = [k for k, c in enumerate(classes) if c != "native"]
    regions = []
    for r0 in range(ny):
        for c0 in range(nx):
            if not flagged[r0, c0] or label[r0, c0] >= 0:
                continue
            label[r0, c0] = len(regions)
            stack, cells = [(r0, c0)], []
            while stack:
                r, c = stack.pop()
                cells.append((r, c))
                for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                    if 0 <= rr < ny and 0 <= cc < nx and flagged[rr, cc] and label[rr, cc] < 0:
                        label[rr, cc] = len(regions)
                        stack.append((rr, cc))
            rows, cols = np.array([rc[0] for rc in cells]), np.array([rc[1] for rc in cells])
            vals = pm[rows, cols]
            best = np.array(manip)[np.asarray(probabilities)[rows, cols][:, manip].argmax(axis=1)]
            dominant = classes[int(np.bincount(best).argmax())]
            mass = float(vals.sum() * patch_weight)
            regions.append(Region(
                cells=(int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1), patches=len(cells),
                mass=mass, mean_p=float(vals.mean()), max_p=float(vals.max()), dominant_class=dominant,
                significant=decision.region_threshold is not None and mass >= decision.region_threshold,
            ))
    return tuple(sorted(regions, key=lambda g: -g.mass))


@dataclass(frozen=True)
class Aggregate:
    """Output of :func:`aggregate` (see the module docstring for the formulas).

    Attributes:
        probabilities: float64, ny x nx x C, calibrated per-patch class probabilities.
        p_manipulated: float64, ny x nx, ``1 - probabilities[..., native]``.
        argmax: int64, ny x nx, most probable class per patch.
        class_probabilities: float64, C, mean of ``probabilities`` over patches.
        raw_score: Mean of ``p_manipulated``.
        score: Platt-calibrated ``raw_score``, [0, 1].
        manipulated_fraction: Fraction of patches with ``p_manipulated >= patch_threshold``.
        traces: CONSISTENT or MANIPULATED.
        regions: :func:`find_regions` (empty for flat N x C logits), heaviest first.
    """

    probabilities: np.ndarray
    p_manipulated: np.ndarray
    argmax: np.ndarray
    class_probabilities: np.ndarray
    raw_score: float
    score: float
    manipulated_fraction: float
    traces: Traces
    regions: tuple[Region, ...] = ()


def aggregate(logits: np.ndarray, native_index: int, calibration: Calibration = Calibration(),
              decision: DecisionRule = DecisionRule(), *, classes: Sequence[str] | None = None,
              patch_weight: float = 1.0) -> Aggregate:
    """Per-patch probabilities and the image-level decision from per-patch logits.

    MANIPULATED when the calibrated score reaches ``score_threshold`` (global), the flagged
    fraction reaches ``area_threshold`` (diffuse), or one region's mass reaches
    ``region_threshold`` (local, :func:`find_regions`).

    Args:
        logits: float32/64, ny x nx x C (or N x C: no regions), raw FAN logits, at least one patch.
        native_index: Index of the ``native`` class.
        calibration, decision: See :class:`Calibration`, :class:`DecisionRule`.
        classes: Class names (for the regions' dominant class); default ``c0, c1, ...`` with
            ``native`` at ``native_index``.
        patch_weight: See :func:`find_regions`.
    """
    logits = np.asarray(logits)
    if logits.ndim < 2 or logits.shape[-1] < 2 or logits[..., 0].size == 0:
        raise ValueError(f"logits must be ... x C with C >= 2 and at least one patch, got {logits.shape}")
    p = softmax(logits, calibration.temperature)
    pm = 1.0 - p[..., native_index]
    raw = float(pm.mean())
    score = float(calibration.score(raw))
    frac = float((pm >= decision.patch_threshold).mean())
    regions: tuple[Region, ...] = ()
    if logits.ndim == 3:
        names = list(classes) if classes is not None else [
            "native" if k == native_index else f"c{k}" for k in range(logits.shape[-1])]
        regions = find_regions(pm, p, names, decision, patch_weight)
    manipulated = (score >= decision.score_threshold or frac >= decision.area_threshold
                   or any(g.significant for g in regions))
    return Aggregate(
        probabilities=p, p_manipulated=pm, argmax=p.argmax(axis=-1),
        class_probabilities=p.reshape(-1, p.shape[-1]).mean(axis=0), raw_score=raw, score=score,
        manipulated_fraction=frac, traces=Traces.MANIPULATED if manipulated else Traces.CONSISTENT, regions=regions,
    )


@dataclass(frozen=True)
class ForensicAnalysis:
    """Result of :func:`analyze` (or :func:`unavailable`).

    Grid arrays are indexed ``[row, column]`` of the patch grid; a patch at
    ``(grid_y[r], grid_x[c])`` covers ``patch_size`` pixels of the *analysed* image
    (the input resized by ``scale``). All arrays are read-only.

    Attributes:
        traces: The image-level finding; UNAVAILABLE when no analysis ran.
        reason: Why the analysis is unavailable, else ``None``.
        fan_name, fan_sha256: The FAN used, or ``None``.
        fan_source: ``"explicit"`` (``fan=``), ``"manifest"`` (named by the capture
            assertion and found locally by sha256), ``"pair"`` (paired with the NIP the capture
            assertion names) or ``"default"`` (shipped default).
        provider: onnxruntime provider that ran the FAN.
        classes: FAN classes, logit order.
        image_size: (height, width) of the decoded input, pixels.
        scale: Resize factor applied before the analysis (0.5 = half size).
        analysed_size: (height, width) of the analysed image, pixels.
        patch_size, stride: Patch side and grid step, analysed pixels.
        grid_y, grid_x: int64, ny / nx, patch origins, analysed pixels.
        logits: float32, ny x nx x C, raw FAN output.
        probabilities: float64, ny x nx x C, calibrated per-patch probabilities.
        p_manipulated: float64, ny x nx, per-patch P(not native): the heatmap.
        argmax: int64, ny x nx, index into ``classes`` of the most probable class.
        class_probabilities: class name -> mean calibrated probability over patches.
        raw_score, score: Mean P(manipulated) before / after Platt calibration.
        manipulated_fraction: Fraction of patches with P(manipulated) >= the patch threshold.
        calibration, decision: What was applied.
        fan_ms: Wall time of preprocessing + FAN runs + aggregation, ms.
        out_of_channel: Why the image's encoding lies outside the channel the FAN was
            trained behind (:func:`channel_mismatch`), else ``None``. Outside it the FAN's
            readings are not calibrated evidence either way.
        regions: Every connected region of flagged patches (:class:`Region`, boxes in input
            pixels), heaviest first; the significant ones decide a local manipulation.
    """

    traces: Traces
    reason: str | None = None
    fan_name: str | None = None
    fan_sha256: str | None = None
    fan_source: str | None = None
    provider: str | None = None
    classes: tuple[str, ...] = ()
    image_size: tuple[int, int] = (0, 0)
    scale: float = 1.0
    analysed_size: tuple[int, int] = (0, 0)
    patch_size: int = 0
    stride: int = 0
    grid_y: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    grid_x: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    logits: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.float32))
    probabilities: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))
    p_manipulated: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    argmax: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    class_probabilities: Mapping[str, float] = field(default_factory=dict)
    raw_score: float | None = None
    score: float | None = None
    manipulated_fraction: float | None = None
    calibration: Calibration | None = None
    decision: DecisionRule | None = None
    fan_ms: float = 0.0
    out_of_channel: str | None = None
    regions: tuple[Region, ...] = ()

    @property
    def available(self) -> bool:
        """True when the FAN ran."""
        return self.traces is not Traces.UNAVAILABLE

    def class_fractions(self) -> dict[str, float]:
        """Fraction of patches whose most probable class is each non-native class, among
        patches counted as manipulated; classes with none are left out, largest first."""
        n = self.argmax.size
        if not self.available or self.decision is None or n == 0:  # n == 0: grid dropped (verify(heatmap=False))
            return {}
        flagged = self.p_manipulated >= self.decision.patch_threshold
        out = {}
        for k, name in enumerate(self.classes):
            if name == "native":
                continue
            f = float((flagged & (self.argmax == k)).sum()) / n
            if f > 0:
                out[name] = f
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form (arrays as nested lists)."""
        return {
            "traces": self.traces.value, "reason": self.reason, "fan": {"name": self.fan_name, "sha256": self.fan_sha256,
            "source": self.fan_source}, "provider": self.provider, "classes": list(self.classes),
            "image_size": list(self.image_size), "scale": self.scale, "analysed_size": list(self.analysed_size),
            "patch_size": self.patch_size, "stride": self.stride, "grid_y": self.grid_y.tolist(), "grid_x": self.grid_x.tolist(),
            "logits": self.logits.tolist(), "probabilities": self.probabilities.tolist(),
            "p_manipulated": self.p_manipulated.tolist(), "argmax": self.argmax.tolist(),
            "class_probabilities": dict(self.class_probabilities), "class_fractions": self.class_fractions(),
            "raw_score": self.raw_score, "score": self.score, "manipulated_fraction": self.manipulated_fraction,
            "calibration": None if self.calibration is None else self.calibration.to_metadata(),
            "decision": None if self.decision is None else vars(self.decision).copy(), "fan_ms": self.fan_ms,
            "out_of_channel": self.out_of_channel, "regions": [g.to_dict() for g in self.regions],
        }


def unavailable(reason: str, image_size: tuple[int, int] = (0, 0), **kw: Any) -> ForensicAnalysis:
    """A :class:`ForensicAnalysis` saying no analysis ran, and why."""
    return ForensicAnalysis(traces=Traces.UNAVAILABLE, reason=reason, image_size=image_size, **kw)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _jpeg_roundtrip(x: np.ndarray, quality: int, subsampling: str = "444") -> np.ndarray:
    """float32 H x W x 3 in [0,1] -> uint8 -> JPEG (libjpeg, ``subsampling``) -> float32 [0,1]."""
    import io

    from PIL import Image

    from rawproof.imageio import PILLOW_SUBSAMPLING

    buf = io.BytesIO()
    Image.fromarray(np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)).save(
        buf, "JPEG", quality=quality, subsampling=PILLOW_SUBSAMPLING[subsampling])
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.float32) * np.float32(1 / 255)


def analyze(
    rgb: np.ndarray,
    fan: ModelInfo,
    *,
    scale: float = 1.0,
    jpeg_quality: int | None = None,
    jpeg_subsampling: str = "444",
    stride: int | None = None,
    providers: Sequence[str] | str | None = None,
    threads: int | None = None,
    fan_source: str = "explicit",
    batch_size: int = _BATCH,
) -> ForensicAnalysis:
    """Run the FAN over ``rgb`` in patches and aggregate (see the module docstring).

    Args:
        rgb: uint8, H x W x 3, sRGB (e.g. :func:`rawproof.imageio.decode_rgb`).
        fan: The FAN (:func:`rawproof.models.find_model`).
        scale: Resize factor applied first with :func:`resize_bilinear` (0.5 = the 2x
            downscale of the trained channel); in (0, 1].
        jpeg_quality: If given, the (resized) image is then rounded to uint8 and sent
            through libjpeg at this quality, replaying the trained channel's
            compression; ``None`` analyses it uncompressed.
        jpeg_subsampling: Chroma layout of that replay, ``"444"`` or ``"420"``.
        stride: Grid step, analysed pixels; ``None`` = ``patch_size`` (no overlap).
        providers, threads: For :func:`rawproof.runtime.get_session`.
        fan_source: Recorded in the result.
        batch_size: Patches per onnxruntime run.

    Returns:
        The analysis; unavailable (not an error) when the analysed image is smaller
        than one patch.

    Raises:
        ValueError: bad ``rgb``, ``scale``, ``stride`` or ``batch_size``.
        ModelError, ProviderError: the FAN cannot be loaded or run.
    """
    from rawproof.runtime import get_session

    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be a uint8 H x W x 3 array, got {getattr(rgb, 'dtype', type(rgb))} {getattr(rgb, 'shape', '')}")
    if not (math.isfinite(scale) and 0 < scale <= 1):
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    t0 = time.perf_counter()
    cfg = fan_config(fan)
    ps = cfg.patch_size
    step = ps if stride is None else int(stride)
    if step < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    h, w = rgb.shape[:2]
    ah, aw = (h, w) if scale == 1 else (max(1, int(h * scale)), max(1, int(w * scale)))
    ident = {"fan_name": fan.name, "fan_sha256": fan.sha256, "fan_source": fan_source, "classes": fan.classes,
             "scale": float(scale), "analysed_size": (ah, aw), "patch_size": ps, "stride": step}
    if jpeg_quality is not None and not 1 <= int(jpeg_quality) <= 100:
        raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
    if ah < ps or aw < ps:
        return unavailable(f"the analysed image ({aw}x{ah}) is smaller than one FAN patch ({ps}x{ps})", (h, w), **ident)
    session = get_session(fan, ModelKind.FAN, providers=providers, threads=threads)
    x = rgb.astype(np.float32) * np.float32(1 / 255)
    if scale != 1:
        x = resize_bilinear(x, ah, aw)
    if jpeg_quality is not None:
        x = _jpeg_roundtrip(x, int(jpeg_quality), jpeg_subsampling)
    chw = np.ascontiguousarray(x.transpose(2, 0, 1))
    del x
    ys, xs = patch_origins(ah, ps, step), patch_origins(aw, ps, step)
    coords = [(y, x_) for y in ys for x_ in xs]
    out = []
    batch = np.empty((min(batch_size, len(coords)), 3, ps, ps), np.float32)
    for start in range(0, len(coords), batch_size):
        chunk = coords[start:start + batch_size]
        for k, (y, x_) in enumerate(chunk):
            batch[k] = chw[:, y:y + ps, x_:x_ + ps]
        try:
            out.append(session.run(batch[:len(chunk)]))
        except ValueError as e:
            raise ModelError(f"the FAN rejects {ps}x{ps} patches (metadata patch_size): {e}", path=fan.path) from e
    logits = np.concatenate(out).astype(np.float32).reshape(len(ys), len(xs), -1)
    if logits.shape[-1] != len(fan.classes):
        raise ModelError(f"FAN returned {logits.shape[-1]} logits for {len(fan.classes)} classes", path=fan.path)
    agg = aggregate(logits, cfg.native_index, cfg.calibration, cfg.decision, classes=fan.classes,
                    patch_weight=min(1.0, (step / ps) ** 2))
    fy, fx = h / ah, w / aw  # analysed -> input pixels
    regions = tuple(replace(g, box=(
        int(xs[g.cells[1]] * fx), int(ys[g.cells[0]] * fy),
        min(w, math.ceil((xs[g.cells[3] - 1] + ps) * fx)), min(h, math.ceil((ys[g.cells[2] - 1] + ps) * fy)),
    )) for g in agg.regions)
    return ForensicAnalysis(
        traces=agg.traces, provider=session.provider, image_size=(h, w),
        grid_y=_readonly(ys), grid_x=_readonly(xs), logits=_readonly(logits),
        probabilities=_readonly(agg.probabilities), p_manipulated=_readonly(agg.p_manipulated),
        argmax=_readonly(agg.argmax), class_probabilities={c: float(v) for c, v in zip(fan.classes, agg.class_probabilities)},
        raw_score=agg.raw_score, score=agg.score, manipulated_fraction=agg.manipulated_fraction,
        calibration=cfg.calibration, decision=cfg.decision, fan_ms=(time.perf_counter() - t0) * 1e3, regions=regions, **ident,
    )


def _fit_temperature(z: np.ndarray, y: np.ndarray) -> float:
    """T minimising the patch NLL of softmax(z / T); golden-section search on log T."""
    def nll(log_t: float) -> float:
        zz = z / math.exp(log_t)
        zz = zz - zz.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(zz).sum(axis=1)) - zz[np.arange(len(y)), y]))

    lo, hi = math.log(0.05), math.log(20.0)
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(80):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(b)
    return math.exp((lo + hi) / 2)


def _fit_platt(s: np.ndarray, t: np.ndarray, ridge: float = 1e-3) -> tuple[float, float]:
    """Logistic regression of binary ``t`` on ``logit(s)`` by Newton's method (small ridge)."""
    s = np.clip(s, 1e-7, 1 - 1e-7)
    X = np.stack([np.log(s) - np.log1p(-s), np.ones_like(s)], axis=1)
    wts = np.array([1.0, 0.0])
    for _ in range(100):
        p = 1 / (1 + np.exp(-(X @ wts)))
        grad = X.T @ (p - t) + ridge * wts
        hess = (X * (p * (1 - p))[:, None]).T @ X + ridge * np.eye(2)
        delta = np.linalg.solve(hess, grad)
        wts = wts - delta
        if np.abs(delta).max() < 1e-10:
            break
    return float(wts[0]), float(wts[1])


def fit_decision(logits_native: Sequence[np.ndarray], native_index: int, calibration: Calibration, *,
                 false_positive_rate: float = 0.05, patch_weight: float = 1.0) -> DecisionRule:
    """Thresholds for a target false-positive rate on held-out *untouched* images (Neyman-Pearson).

    With ``k`` image rules (3 when the logits are ny x nx x C grids, else 2), quantiles at
    ``q = 1 - false_positive_rate / k`` of values over the native images: the per-patch
    P(manipulated) of all their patches (``patch_threshold``: a flagged patch is one a native
    image shows in under ``1 - q`` of its patches), then per image the calibrated score
    (``score_threshold``), the flagged-patch fraction (``area_threshold``) and, for grids, the
    mass of its heaviest region (``region_threshold``, :func:`find_regions`). Each image rule
    alone flags at most ``1 - q`` of the native images, so together at most
    ``false_positive_rate``. Store ``dataclasses.asdict(result)`` under the FAN metadata key
    ``decision``.

    Args:
        logits_native: One float array per native image, ny x nx x C (or N x C: no region
            rule) raw FAN logits.
        native_index: Index of ``native``.
        calibration: The calibration the thresholds apply to.
        false_positive_rate: Target rate in (0, 1).
        patch_weight: As in :func:`find_regions` (the grid the logits come from).

    Raises:
        ValueError: no images, or a rate outside (0, 1).
    """
    if not logits_native:
        raise ValueError("need at least one native image")
    if not 0 < false_positive_rate < 1:
        raise ValueError(f"false_positive_rate must be in (0, 1), got {false_positive_rate}")
    grids = [np.asarray(z, dtype=np.float64) for z in logits_native]
    with_regions = all(z.ndim == 3 for z in grids)
    q = 1 - false_positive_rate / (3 if with_regions else 2)
    probs = [softmax(z, calibration.temperature) for z in grids]
    pms = [1.0 - p[..., native_index] for p in probs]

    def above(values: Sequence[float] | np.ndarray, cap: float | None = 1.0) -> float:
        # The rules fire at ">=": step just above the quantile, inside (0, cap].
        v = max(1e-6, float(np.nextafter(np.quantile(values, q), np.inf)))
        return v if cap is None else min(cap, v)

    patch_threshold = above(np.concatenate([pm.ravel() for pm in pms]))
    scores = [float(calibration.score(float(pm.mean()))) for pm in pms]
    fracs = [float((pm >= patch_threshold).mean()) for pm in pms]
    rule = DecisionRule(score_threshold=above(scores), patch_threshold=patch_threshold, area_threshold=above(fracs))
    if not with_regions:
        return rule
    return fit_region_threshold(grids, native_index, calibration, rule, false_positive_rate=1 - q, patch_weight=patch_weight)


def fit_region_threshold(logits_native: Sequence[np.ndarray], native_index: int, calibration: Calibration,
                         decision: DecisionRule, *, false_positive_rate: float = 0.01, patch_weight: float = 1.0) -> DecisionRule:
    """``decision`` with ``region_threshold`` set for a target rate on held-out *untouched* images.

    The threshold steps just above the ``1 - false_positive_rate`` quantile of the heaviest
    region's mass per native image (:func:`find_regions` at ``decision.patch_threshold``), so
    the region rule alone flags at most that share of them. Use it to add the region rule to
    a FAN whose other thresholds stay as they are; :func:`fit_decision` calls it too.

    Args:
        logits_native: One ny x nx x C raw logit grid per native image.

    Raises:
        ValueError: no images, a grid that is not ny x nx x C, or a rate outside (0, 1).
    """
    if not logits_native or any(np.ndim(z) != 3 for z in logits_native):
        raise ValueError("need at least one ny x nx x C logit grid")
    if not 0 < false_positive_rate < 1:
        raise ValueError(f"false_positive_rate must be in (0, 1), got {false_positive_rate}")
    heaviest = []
    for z in logits_native:
        p = softmax(np.asarray(z, dtype=np.float64), calibration.temperature)
        names = ["native" if k == native_index else f"c{k}" for k in range(p.shape[-1])]
        heaviest.append(max((g.mass for g in find_regions(1.0 - p[..., native_index], p, names, decision, patch_weight)), default=0.0))
    threshold = max(1e-6, float(np.nextafter(np.quantile(heaviest, 1 - false_positive_rate), np.inf)))
    return replace(decision, region_threshold=threshold)


def fit_calibration(logits_per_image: Sequence[np.ndarray], labels: Sequence[int], native_index: int = 0) -> Calibration:
    """Fit temperature and Platt parameters on held-out images (numpy only).

    The temperature minimises the per-patch cross-entropy, each patch labelled with its
    image's class. The Platt parameters then fit the image label "manipulated" (label
    ``!= native_index``) on ``logit(s)``, ``s`` = mean per-patch P(manipulated) at that
    temperature, by logistic regression. Store ``result.to_metadata()`` under the FAN
    metadata key ``calibration``.

    Args:
        logits_per_image: One float array per image, n_patches x C (or ny x nx x C),
            raw FAN logits (``ForensicAnalysis.logits``).
        labels: Class index per image.
        native_index: Index of ``native``.

    Raises:
        ValueError: empty input, mismatched lengths or class counts, labels out of range,
            or only one of manipulated / native present (Platt needs both).
    """
    if len(logits_per_image) == 0 or len(logits_per_image) != len(labels):
        raise ValueError(f"need one label per image, got {len(logits_per_image)} images and {len(labels)} labels")
    flat = [np.asarray(z, dtype=np.float64).reshape(-1, np.shape(z)[-1]) for z in logits_per_image]
    c = flat[0].shape[1]
    if any(f.shape[1] != c or f.shape[0] == 0 for f in flat):
        raise ValueError("every image needs at least one patch and the same number of classes")
    lab = np.asarray(labels, dtype=np.int64)
    if lab.min() < 0 or lab.max() >= c or not 0 <= native_index < c:
        raise ValueError(f"labels and native_index must be in [0, {c})")
    t = (lab != native_index).astype(np.float64)
    if t.min() == t.max():
        raise ValueError("Platt calibration needs both native and manipulated images")
    z = np.concatenate(flat)
    y = np.concatenate([np.full(len(f), l) for f, l in zip(flat, lab)])
    temp = _fit_temperature(z, y)
    s = np.array([1 - softmax(f, temp)[:, native_index].mean() for f in flat])
    a, b = _fit_platt(s, t)
    return Calibration(temperature=temp, platt_a=a, platt_b=b)


def _class_colour(name: str, index: int) -> tuple[int, int, int]:
    return CLASS_COLOURS.get(name, _FALLBACK_COLOURS[index % len(_FALLBACK_COLOURS)])


def _cell_index(coords: np.ndarray, origins: np.ndarray, patch: int) -> np.ndarray:
    """Nearest patch centre for each coordinate (analysed pixels)."""
    centres = origins + patch / 2
    mids = (centres[1:] + centres[:-1]) / 2
    return np.searchsorted(mids, coords, side="right")


def render_heatmap(fa: ForensicAnalysis, image: np.ndarray | None = None, *, max_side: int = 2048,
                   cell: int = 16, alpha: float = 0.6, legend: bool = True, not_evidence: str | None = None) -> Any:
    """Draw the heatmap as a Pillow RGB image.

    Each pixel takes the patch whose centre is nearest; it is tinted with the colour of
    that patch's most probable manipulation class (:data:`CLASS_COLOURS`) with opacity
    ``alpha * P(manipulated)``; native-looking patches stay untinted. Every region
    (:attr:`ForensicAnalysis.regions`) is outlined: solid white when significant, dotted
    otherwise. A legend panel under the picture gives the class colours, the opacity scale
    (P(manipulated) 0 to 1, with the patch threshold marked) and the decision.

    When the analysis is outside the FAN's channels (``fa.out_of_channel``), or ``not_evidence`` is given, the readings are
    not evidence: the picture is drawn in grey only (no tint, no boxes), crossed out and
    labelled "NOT EVIDENCE" with the reason, so it cannot be mistaken for a finding.

    Args:
        fa: An available analysis.
        image: uint8 H x W x 3, the decoded input or a downsized copy of it (same
            aspect ratio): drawn in grey under the tint, at its size capped to
            ``max_side`` on the long edge.
            ``None``: the grid alone, ``cell`` pixels per patch on a mid-grey background.
        not_evidence: A reason the readings are not evidence (e.g. the origin head says the
            image is not a rawproof development); ``fa.out_of_channel`` is one by itself.
        legend: Add the legend panel (:data:`LEGEND_HEIGHT` pixels under the picture, which
            sits at the top left; the width grows to at least :data:`LEGEND_WIDTH`).

    Raises:
        ValueError: the analysis is unavailable or ``image`` does not match it.
    """
    from PIL import Image

    if not fa.available:
        raise ValueError(f"no heatmap: forensic analysis unavailable ({fa.reason})")
    ny, nx = fa.p_manipulated.shape
    # Colour of the class with the highest probability among manipulations, per patch.
    manip = [k for k, c in enumerate(fa.classes) if c != "native"]
    best = np.array(manip)[fa.probabilities[..., manip].argmax(axis=-1)]
    palette = np.array([_class_colour(c, k) for k, c in enumerate(fa.classes)], dtype=np.float32)
    tint = palette[best]
    weight = (alpha * fa.p_manipulated).astype(np.float32)[..., None]
    if image is None:
        base = np.full((ny * cell, nx * cell, 3), 128, np.float32)
        iy, ix = np.arange(ny * cell) // cell, np.arange(nx * cell) // cell
    else:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be uint8 H x W x 3, got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        fh, fw = fa.image_size
        # A downsized copy rounds each side to whole pixels, so a thin image's short side
        # can be off by up to half a pixel: judge the aspect on the side it was derived for.
        if abs(w - fw * h / fh) > 1 + 0.02 * w and abs(h - fh * w / fw) > 1 + 0.02 * h:
            raise ValueError(f"image {w}x{h} does not have the aspect ratio of the analysed input {fw}x{fh}")
        f = min(1.0, max_side / max(h, w))
        oh, ow = max(1, round(h * f)), max(1, round(w * f))
        small = np.asarray(Image.fromarray(image).convert("L").resize((ow, oh), Image.BILINEAR), np.float32)
        base = np.repeat(small[..., None], 3, axis=2)
        ah, aw = fa.analysed_size
        iy = _cell_index((np.arange(oh) + 0.5) * ah / oh, fa.grid_y, fa.patch_size)
        ix = _cell_index((np.arange(ow) + 0.5) * aw / ow, fa.grid_x, fa.patch_size)
    void = not_evidence or fa.out_of_channel
    if void:
        out = base
    else:
        wmap = weight[iy][:, ix]
        out = base * (1 - wmap) + tint[iy][:, ix] * wmap
    pic = Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "RGB")
    return _annotate(fa, pic, iy, ix, palette, alpha, legend, void)


LEGEND_HEIGHT = 88
"""Height (pixels) of the legend panel under a heatmap."""
LEGEND_WIDTH = 640
"""Smallest width (pixels) of a heatmap with its legend."""


def _annotate(fa: ForensicAnalysis, pic: Any, iy: np.ndarray, ix: np.ndarray, palette: np.ndarray, alpha: float,
              legend: bool, void: str | None) -> Any:
    """Region outlines on ``pic`` and a legend panel under it (see :func:`render_heatmap`)."""
    from PIL import Image, ImageDraw, ImageFont

    w, h = pic.size
    font = ImageFont.load_default(size=12)
    draw = ImageDraw.Draw(pic)
    if void:
        draw.line([(0, 0), (w - 1, h - 1)], fill=(255, 255, 255), width=3)
        draw.line([(0, h - 1), (w - 1, 0)], fill=(255, 255, 255), width=3)
    else:
        for g in fa.regions:
            r0, c0, r1, c1 = g.cells
            # Pixel extent of the cells in the drawn picture (nearest-centre assignment).
            ys, xs = np.flatnonzero((iy >= r0) & (iy < r1)), np.flatnonzero((ix >= c0) & (ix < c1))
            if ys.size and xs.size:
                box = [int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1])]
                if g.significant:
                    draw.rectangle(box, outline=(255, 255, 255), width=2)
                else:
                    for x in range(box[0], box[2], 6):
                        draw.line([(x, box[1]), (min(x + 2, box[2]), box[1])], fill=(255, 255, 255))
                        draw.line([(x, box[3]), (min(x + 2, box[2]), box[3])], fill=(255, 255, 255))
                    for y in range(box[1], box[3], 6):
                        draw.line([(box[0], y), (box[0], min(y + 2, box[3]))], fill=(255, 255, 255))
                        draw.line([(box[2], y), (box[2], min(y + 2, box[3]))], fill=(255, 255, 255))
    if not legend:
        return pic
    panel_w, panel_h = max(w, LEGEND_WIDTH), LEGEND_HEIGHT
    panel = Image.new("RGB", (panel_w, panel_h), (24, 24, 24))
    d = ImageDraw.Draw(panel)
    if void:
        d.text((8, 6), "NOT EVIDENCE: the FAN's readings say nothing either way about this image", fill=(255, 80, 80), font=font)
        d.text((8, 26), void[:100], fill=(230, 230, 230), font=font)
        d.text((8, 46), f"FAN {fa.fan_name}: P(manipulated) {fa.score:.2f}, not shown", fill=(200, 200, 200), font=font)
    else:
        x = 8
        for k, name in enumerate(fa.classes):
            if name == "native":
                continue
            d.rectangle([x, 8, x + 12, 20], fill=tuple(int(v) for v in palette[k]))
            d.text((x + 16, 7), name, fill=(230, 230, 230), font=font)
            x += 24 + int(d.textlength(name, font=font))
        # Opacity scale: the tint weight alpha * P over mid grey, P from 0 to 1.
        bar_w = min(256, panel_w - 140)
        ramp = np.linspace(0, 1, bar_w)
        grey = np.full((12, bar_w, 3), 128.0)
        red = np.array(CLASS_COLOURS.get("sharpen", (230, 25, 25)), np.float64)
        bar = grey * (1 - alpha * ramp[None, :, None]) + red * alpha * ramp[None, :, None]
        panel.paste(Image.fromarray(bar.astype(np.uint8), "RGB"), (8, 30))
        d.text((bar_w + 14, 29), "P(manipulated) 0 .. 1", fill=(230, 230, 230), font=font)
        if fa.decision is not None:
            t = int(8 + fa.decision.patch_threshold * (bar_w - 1))
            d.line([(t, 27), (t, 44)], fill=(255, 255, 255), width=1)
        d.text((8, 50), f"traces {fa.traces.value}; image P(manipulated) {fa.score:.2f}", fill=(230, 230, 230), font=font)
        d.text((8, 68), "tint: class x P(manipulated); white boxes: flagged regions (solid = significant, dotted = not)",
               fill=(200, 200, 200), font=font)
    out = Image.new("RGB", (panel_w, h + panel_h), (24, 24, 24))
    out.paste(pic, (0, 0))
    out.paste(panel, (0, h))
    return out


_ROWS = ("top", "middle", "bottom")
_COLS = ("left", "centre", "right")


def describe_regions(fa: ForensicAnalysis, min_share: float = 0.25, limit: int | None = None) -> list[str]:
    """Names (``"top-left"`` ... ``"bottom-right"``) of the 3 x 3 image sections in which at
    least ``min_share`` of the patch centres are counted as manipulated, most affected first
    (all of them unless ``limit``)."""
    if not fa.available or fa.decision is None:
        return []
    ah, aw = fa.analysed_size
    cy = np.minimum(((fa.grid_y + fa.patch_size / 2) * 3 / ah).astype(int), 2)
    cx = np.minimum(((fa.grid_x + fa.patch_size / 2) * 3 / aw).astype(int), 2)
    flagged = fa.p_manipulated >= fa.decision.patch_threshold
    shares = []
    for r in range(3):
        for c in range(3):
            sel = (cy == r)[:, None] & (cx == c)[None, :]
            if sel.any():
                share = float(flagged[sel].mean())
                if share >= min_share:
                    name = "centre" if (r, c) == (1, 1) else f"{_ROWS[r]}-{_COLS[c]}"
                    shares.append((share, name))
    return [n for _, n in sorted(shares, key=lambda t: -t[0])][:limit]


def measure_robustness(
    images: Iterable[tuple[np.ndarray, str]],
    fan: ModelInfo | str | os.PathLike[str] | None = None,
    *,
    scales: Sequence[float] = (1.0, 0.5),
    jpeg_qualities: Sequence[int | None] = (None, 90, 50),
    stride: int | None = None,
    providers: Sequence[str] | str | None = None,
) -> list[dict[str, Any]]:
    """Accuracy of the image-level analysis when images reach verify through other channels.

    For each (``scale``, ``quality``) pair, every image is resized by ``scale``
    (:func:`resize_bilinear`, rounded to uint8), JPEG-compressed at ``quality``
    (Pillow/libjpeg, 4:2:0; ``None`` = not compressed), then analysed as-is (``scale=1``,
    which is what :func:`rawproof.verify` does for an image without provenance). Use it
    with manipulated images made by ``rawproof_train.manipulations`` to choose how
    verify should treat images of unknown scale.

    Args:
        images: ``(rgb uint8 H x W x 3, class name)`` pairs, already manipulated.
        fan: The FAN (as :func:`rawproof.models.find_model`; ``None`` = default shipped).

    Returns:
        One dict per channel: ``scale``, ``jpeg_quality``, ``n`` (images analysed; those
        smaller than a patch after resizing are skipped), ``accuracy`` (image-level class
        = argmax of ``class_probabilities``), ``binary_accuracy`` (traces MANIPULATED iff
        the class is not native), ``mean_score_native``, ``mean_score_manipulated``.
    """
    from PIL import Image

    from rawproof.models import find_model

    info = find_model(fan, ModelKind.FAN)
    items = list(images)
    rows = []
    for sc in scales:
        for q in jpeg_qualities:
            hits = bin_hits = n = 0
            scores: dict[bool, list[float]] = {False: [], True: []}
            for rgb, label in items:
                if label not in info.classes:
                    raise ValueError(f"label {label!r} is not a FAN class {list(info.classes)}")
                x = rgb
                if sc != 1:
                    h, w = rgb.shape[:2]
                    r = resize_bilinear(rgb.astype(np.float32), max(1, int(h * sc)), max(1, int(w * sc)))
                    x = np.clip(np.rint(r), 0, 255).astype(np.uint8)
                if q is not None:
                    buf = io.BytesIO()
                    Image.fromarray(x).save(buf, "JPEG", quality=int(q))
                    with Image.open(io.BytesIO(buf.getvalue())) as im:
                        x = np.asarray(im.convert("RGB"))
                fa = analyze(x, info, stride=stride, providers=providers)
                if not fa.available:
                    continue
                n += 1
                pred = max(fa.class_probabilities, key=lambda k: fa.class_probabilities[k])
                hits += pred == label
                is_manip = label != "native"
                bin_hits += (fa.traces is Traces.MANIPULATED) == is_manip
                scores[is_manip].append(float(fa.score))
            rows.append({
                "scale": float(sc), "jpeg_quality": q, "n": n,
                "accuracy": hits / n if n else None, "binary_accuracy": bin_hits / n if n else None,
                "mean_score_native": float(np.mean(scores[False])) if scores[False] else None,
                "mean_score_manipulated": float(np.mean(scores[True])) if scores[True] else None,
            })
    return rows

