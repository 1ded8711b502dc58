"""Is this ours at all? The origin head: rawproof NIP output vs. images from other pipelines.

A FAN is trained on its NIP's output, untouched or manipulated; an image from another camera
pipeline is neither, and a FAN alone reads it as "manipulated" (measured in
``docs/results/image_eval.md``). The origin head is a separate small model on the FAN's own
output: a logistic regression on :func:`origin_features` of the per-patch FAN logits (so it
costs nothing beyond the FAN run), trained by ``python -m rawproof_train train-origin`` on
the train split's rawproof developments (untouched and manipulated) against other pipelines'
images (original photos, the reference ISP, LibRaw), through the platform channel set.

It is stored as ``origin_<fan name>.json`` beside the FAN (:func:`find_origin_head`) and used
by :func:`rawproof.verify` for images without a trusted manifest that lie inside the FAN's
channels: P(foreign) >= ``threshold`` gives the verdict ``NO_RAWPROOF_TRACES`` (never
``MANIPULATED``)::

    head = find_origin_head(fan_info)          # OriginHead or None
    reading = head.read(analysis.logits)       # OriginReading: p_foreign, foreign
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rawproof.errors import ModelError
from rawproof.models import ModelInfo

__all__ = ["FEATURES", "origin_features", "OriginHead", "OriginReading", "find_origin_head", "head_path"]

_QUANTILES = (0.1, 0.5, 0.9)


def _feature_names(classes: Sequence[str]) -> list[str]:
    return ([f"mean_p_{c}" for c in classes] + [f"std_p_{c}" for c in classes] + [f"argmax_share_{c}" for c in classes]
            + [f"q{int(q * 100)}_p_native" for q in _QUANTILES] + ["mean_entropy", "mean_max_logit", "std_max_logit"])


FEATURES = "per class: mean, std of softmax(logits) and argmax share over patches; P(native) deciles 10/50/90; mean entropy; mean, std of the top logit"
"""What :func:`origin_features` computes (T = 1: independent of later calibration rewrites)."""


def origin_features(logits: np.ndarray) -> np.ndarray:
    """Image-level features of per-patch FAN logits.

    Args:
        logits: float, ... x C raw FAN logits of one image's patches (at least one patch).

    Returns:
        float64, ``3 C + 6`` values (:data:`FEATURES`, in that order).
    """
    z = np.asarray(logits, dtype=np.float64).reshape(-1, np.shape(logits)[-1])
    if z.shape[0] == 0:
        raise ValueError("need at least one patch")
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    c = z.shape[1]
    share = np.bincount(p.argmax(axis=1), minlength=c) / len(p)
    entropy = -(p * np.log(np.clip(p, 1e-12, 1))).sum(axis=1)
    top = z.max(axis=1)
    return np.concatenate([p.mean(axis=0), p.std(axis=0), share, np.quantile(p[:, 0], _QUANTILES),
                           [entropy.mean(), top.mean(), top.std()]])


@dataclass(frozen=True)
class OriginReading:
    """The origin head's reading of one image.

    Attributes:
        head: Head name (``origin_<fan name>``).
        p_foreign: P(not developed by this NIP), [0, 1].
        threshold: The head's decision threshold.
        foreign: ``p_foreign >= threshold``.
    """

    head: str
    p_foreign: float
    threshold: float
    foreign: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"head": self.head, "p_foreign": self.p_foreign, "threshold": self.threshold, "foreign": self.foreign}


@dataclass(frozen=True)
class OriginHead:
    """A logistic regression on standardised :func:`origin_features` (``p = sigmoid(w . (x - mean) / scale + b)``).

    Attributes:
        name: ``origin_<fan name>``.
        fan_name: The FAN whose logits it reads (its classes in ``classes``, ``native`` first).
        classes: The FAN's classes at training.
        mean, scale, weights: float64 vectors of the feature length.
        bias: Intercept.
        threshold: P(foreign) at or above which an image reads "no rawproof traces".
        metadata: The whole JSON (``metrics``, ``config``, ``trained_channel``).
    """

    name: str
    fan_name: str
    classes: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    threshold: float
    metadata: Mapping[str, Any]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OriginHead:
        """Parse the stored form.

        Raises:
            ModelError: missing keys, inconsistent lengths, or non-finite values.
        """
        try:
            classes = tuple(str(c) for c in data["classes"])
            vecs = [np.asarray(data[k], dtype=np.float64) for k in ("mean", "scale", "weights")]
            n = 3 * len(classes) + 6
            if classes[:1] != ("native",) or any(v.shape != (n,) for v in vecs):
                raise ValueError(f"classes must start with 'native' and vectors have {n} values")
            bias, threshold = float(data["bias"]), float(data["threshold"])
            if not all(np.isfinite(v).all() for v in vecs) or not (math.isfinite(bias) and 0 < threshold <= 1) or (vecs[1] <= 0).any():
                raise ValueError("non-finite values, a scale <= 0 or a threshold outside (0, 1]")
            return cls(str(data["name"]), str(data["fan_name"]), classes, *vecs, bias, threshold, dict(data))
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"invalid origin head: {e}") from e

    def to_json(self) -> dict[str, Any]:
        """The stored form (``metadata`` keys plus the parameters)."""
        return {**self.metadata, "name": self.name, "fan_name": self.fan_name, "classes": list(self.classes),
                "mean": self.mean.tolist(), "scale": self.scale.tolist(), "weights": self.weights.tolist(),
                "bias": self.bias, "threshold": self.threshold}

    def p_foreign(self, features: np.ndarray) -> np.ndarray:
        """P(foreign) of feature rows (``n x F`` or ``F``), float64."""
        z = ((np.asarray(features, dtype=np.float64) - self.mean) / self.scale) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))

    def read(self, logits: np.ndarray) -> OriginReading:
        """Read one image from its per-patch FAN logits (``ForensicAnalysis.logits``)."""
        if np.shape(logits)[-1] != len(self.classes):
            raise ModelError(f"origin head {self.name} expects {len(self.classes)} FAN classes, got {np.shape(logits)[-1]}")
        p = float(self.p_foreign(origin_features(logits)))
        return OriginReading(self.name, p, self.threshold, p >= self.threshold)


def head_path(fan: ModelInfo) -> Path:
    """Where the origin head of ``fan`` lives: ``origin_<fan name>.json`` in the FAN's folder."""
    return Path(fan.path).parent / f"origin_{fan.name}.json"


def find_origin_head(fan: ModelInfo) -> OriginHead | None:
    """The origin head for ``fan`` (:func:`head_path`), or ``None`` when there is none.

    Raises:
        ModelError: the file exists but is unreadable, malformed, or made for another FAN
            (name or classes differ): a broken install is loud.
    """
    path = head_path(fan)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"cannot read origin head: {e}", path=path) from e
    head = OriginHead.from_json(data)
    if head.fan_name != fan.name or head.classes != tuple(fan.classes):
        raise ModelError(f"origin head {path.name} was made for FAN {head.fan_name} {list(head.classes)}, "
                         f"not {fan.name} {list(fan.classes)}", path=path)
    return head
