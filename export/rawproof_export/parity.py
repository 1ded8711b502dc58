"""Parity between a torch model and its exported ONNX file run through the SDK runtime.

The ONNX side runs through :class:`rawproof.runtime.Session`, the same code path that
ships, so a parity pass also proves the file loads and meets the contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from rawproof.models import ModelKind
from rawproof.runtime import Session

__all__ = ["ParityCase", "DEFAULT_NIP_SIZES", "DEFAULT_FAN_SIZES", "parity_inputs", "check_parity"]

DEFAULT_NIP_SIZES: tuple[tuple[int, int, int], ...] = ((1, 64, 64), (1, 96, 160), (2, 48, 80))
"""(N, h, w) of the RGGB stacks compared for a NIP."""
DEFAULT_FAN_SIZES: tuple[tuple[int, int, int], ...] = ((1, 128, 128), (3, 128, 128), (1, 96, 160))
"""(N, H, W) of the RGB patches compared for a FAN; sizes the torch model rejects are skipped."""


@dataclass(frozen=True)
class ParityCase:
    """One compared input.

    Attributes:
        label: ``"random"`` (uniform [0, 1]) or ``"scene"`` (smooth synthetic scene).
        shape: Input shape N x C x h x w.
        max_abs_diff: max |onnx - torch| over the output (float32 units; sRGB [0, 1] for a NIP).
    """

    label: str
    shape: tuple[int, ...]
    max_abs_diff: float


def _scene(rng: np.random.Generator, n: int, c: int, h: int, w: int, linear: bool) -> np.ndarray:
    """A smooth scene with edges, highlights and noise, float32 N x C x h x w in [0, 1]."""
    yy, xx = np.meshgrid(np.linspace(0, 1, h, dtype=np.float32), np.linspace(0, 1, w, dtype=np.float32), indexing="ij")
    out = np.empty((n, c, h, w), np.float32)
    for i in range(n):
        base = 0.5 + 0.25 * np.sin(2 * np.pi * (rng.uniform(0.5, 3) * xx + rng.uniform(0.5, 3) * yy + rng.uniform()))
        y0, x0 = rng.integers(0, h // 2 + 1), rng.integers(0, w // 2 + 1)
        base[y0:y0 + h // 3, x0:x0 + w // 3] += rng.uniform(0.2, 0.6)  # a hard-edged object
        base = np.clip(base, 0, 1) ** (2.2 if linear else 1.0)
        for ch in range(c):
            gain = rng.uniform(0.4, 1.1)
            out[i, ch] = base * gain + rng.normal(0, 0.01, (h, w)).astype(np.float32)
    np.clip(out, 0, 1, out=out)
    return out


def parity_inputs(
    kind: ModelKind | str, sizes: Sequence[tuple[int, int, int]] | None = None, seed: int = 0
) -> list[tuple[str, np.ndarray]]:
    """Labelled inputs for :func:`check_parity`: one random and one scene input per size.

    Args:
        kind: NIP (``rggb``, 4 channels, linear) or FAN (``rgb``, 3 channels, sRGB).
        sizes: (N, h, w) triples; default :data:`DEFAULT_NIP_SIZES` / :data:`DEFAULT_FAN_SIZES`.
        seed: RNG seed; the inputs are deterministic given it.

    Returns:
        (label, float32 N x C x h x w array in [0, 1]) pairs.
    """
    kind = ModelKind(kind)
    sizes = sizes or (DEFAULT_NIP_SIZES if kind is ModelKind.NIP else DEFAULT_FAN_SIZES)
    rng = np.random.default_rng(seed)
    c = kind.input_channels
    cases = []
    for n, h, w in sizes:
        cases.append(("random", rng.random((n, c, h, w), dtype=np.float32)))
        cases.append(("scene", _scene(rng, n, c, h, w, linear=kind is ModelKind.NIP)))
    return cases


def check_parity(
    module: torch.nn.Module,
    session: Session,
    sizes: Sequence[tuple[int, int, int]] | None = None,
    seed: int = 0,
) -> list[ParityCase]:
    """Compare ``module`` (float32, CPU, eval mode) with ``session`` on :func:`parity_inputs`.

    FAN sizes other than 128 x 128 that the torch module itself rejects (a fixed-size head)
    are skipped; every size it accepts must also run through ONNX.

    Returns:
        One :class:`ParityCase` per compared input.
    """
    module = module.eval()
    results = []
    with torch.no_grad():
        for label, x in parity_inputs(session.info.kind, sizes, seed):
            try:
                ref = module(torch.from_numpy(x)).float().numpy()
            except RuntimeError:
                # Only a FAN may have a fixed input size; the contract size must always work.
                if session.info.kind is ModelKind.FAN and x.shape[2:] != (128, 128):
                    continue
                raise
            got = session.run(x)
            if got.shape != ref.shape:
                raise ValueError(f"ONNX output shape {got.shape} != torch {ref.shape} for input {x.shape}")
            results.append(ParityCase(label, tuple(x.shape), float(np.max(np.abs(got - ref)))))
    if not results:
        raise ValueError("the torch module rejected every parity input size")
    return results
