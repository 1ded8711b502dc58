"""The platform channel set for training: one channel drawn per batch, real codecs (no gradient).

The set itself is defined once, in the SDK (:mod:`rawproof.platforms`, ``PLATFORM_SET``);
this module only moves torch batches through it, for a FAN (or head) trained behind a frozen
NIP. A NIP trained jointly needs a differentiable channel instead (``rawproof_train.channel``).

Use in a training step::

    sampler = PlatformSampler(out_size=128, seed=0)
    x_shared, ch = sampler(x)       # x: N x 3 x H x W in [0, 1], H, W >= sampler.min_input
    fan_loss(fan(x_shared), y)
    fan_metadata["trained_channel"] = sampler.channel_set.to_metadata()
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from rawproof.platforms import PLATFORM_SET, ChannelSet, PlatformChannel
from rawproof_train._checks import check_shape

__all__ = ["PlatformSampler", "through_channel"]


def through_channel(x: torch.Tensor, channel: PlatformChannel, out_size: int, rng: np.random.Generator) -> torch.Tensor:
    """Send each image of ``x`` through ``channel`` and crop ``out_size`` pixels at a random position.

    Args:
        x: sRGB [0, 1], rounded to uint8 before the channel (as a developed image is).
        channel: One member of the set.
        out_size: Side of the crops, pixels of the channel's output.
        rng: Crop positions (one per image).

    Returns:
        float32 [0, 1] on ``x``'s device, detached.

    Shape:
        - x: (N, 3, H, W) with ``round(H * scale)``, ``round(W * scale) >= out_size``
        - output: (N, 3, out_size, out_size)

    Raises:
        ValueError: the channel's output is smaller than ``out_size``.
    """
    check_shape(x, ["N", "3", "H", "W"], "x")
    imgs = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = np.empty((len(imgs), out_size, out_size, 3), np.uint8)
    for k, img in enumerate(imgs):
        y = channel.apply_rgb(np.ascontiguousarray(img))
        h, w = y.shape[:2]
        if h < out_size or w < out_size:
            raise ValueError(f"channel {channel.name} gives {w}x{h}, smaller than the {out_size} px crop")
        cy, cx = int(rng.integers(0, h - out_size + 1)), int(rng.integers(0, w - out_size + 1))
        out[k] = y[cy:cy + out_size, cx:cx + out_size]
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(device=x.device, dtype=torch.float32) / 255.0


class PlatformSampler(nn.Module):
    """Draws a channel of ``channel_set`` per call (seeded numpy Generator) and applies it to the batch.

    Attributes:
        min_input: Smallest input side that every channel of the set maps to ``out_size`` or more.

    Shape:
        - input: (N, 3, H, W), sRGB [0, 1], H, W >= ``min_input``
        - output: (N, 3, out_size, out_size), and the drawn :class:`PlatformChannel`
    """

    def __init__(self, out_size: int = 128, seed: int = 0, channel_set: ChannelSet = PLATFORM_SET) -> None:
        super().__init__()
        if out_size < 8:
            raise ValueError(f"out_size must be >= 8, got {out_size}")
        self.out_size = out_size
        self.channel_set = channel_set
        self.rng = np.random.default_rng(seed)
        self.min_input = math.ceil((out_size + 0.5) / channel_set.scale[0])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, PlatformChannel]:
        if min(x.shape[-2:]) < self.min_input:
            raise ValueError(f"inputs must be at least {self.min_input} px for {self.out_size} px crops at scale {self.channel_set.scale[0]}")
        ch = self.channel_set.sample(self.rng)
        return through_channel(x, ch, self.out_size, self.rng), ch
