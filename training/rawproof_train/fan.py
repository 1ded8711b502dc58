"""Forensic analysis network (FAN): classifies 128x128 sRGB patches into manipulation classes.

Architecture after Korus & Memon (CVPR 2019) and their reference code: a constrained 5x5
residual layer (Bayar & Stamm, "Constrained convolutional neural networks", IEEE TIFS 2018),
four 5x5 conv + leaky ReLU (0.2) + 2x2 max-pool stages with 32, 64, 128, 256 filters, a 1x1 conv
(256, leaky ReLU), global average pooling, and fully connected layers 256 -> 512 -> 128 ->
``n_classes`` (leaky ReLU between). 1,341,990 parameters for 5 classes.

The constrained layer learns prediction-error filters: in every 5x5 kernel the centre weight is
-1 and the other 24 weights sum to +1, so the layer suppresses image content and keeps the
residual traces manipulations leave. Gradient steps break the constraint, so call
:func:`project_constraints` (or :meth:`FAN.project_constraints`) after every ``optimizer.step()``.
As in the reference implementation, the residual is multiplied by a fixed gain of 100 so that
residuals of [0, 1] images reach the next layer at a usable scale.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rawproof_train._checks import check_min_size, check_shape

__all__ = ["ConstrainedConv2d", "FAN", "project_constraints"]


class ConstrainedConv2d(nn.Module):
    """Bayar-Stamm constrained convolution (no bias, reflect padding, fixed output gain).

    After :meth:`project_`, each kernel ``w[o, i]`` has ``w[o, i, c, c] == -1`` and the sum of its
    other weights ``== 1`` (``c = kernel // 2``).

    Args:
        in_channels: input channels.
        out_channels: output filters.
        kernel: odd kernel size.
        gain: fixed multiplier applied to the output.

    Shape:
        - x: (N, in_channels, H, W), H, W > kernel // 2
        - output: (N, out_channels, H, W)
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, kernel: int = 5, gain: float = 100.0) -> None:
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"kernel must be odd, got {kernel}")
        self.kernel = kernel
        self.gain = float(gain)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel, kernel))
        nn.init.uniform_(self.weight, 0.0, 1.0)
        self.project_()

    @torch.no_grad()
    def project_(self) -> None:
        """Re-impose the constraint in place: centre -1, other weights rescaled to sum to +1."""
        c = self.kernel // 2
        w = self.weight
        w[:, :, c, c] = 0.0
        total = w.sum(dim=(2, 3), keepdim=True)
        # A kernel whose off-centre weights cancel out cannot be rescaled; restart it from a flat one.
        degenerate = total.abs() < 1e-8
        flat = torch.ones_like(w) / (self.kernel * self.kernel - 1)
        flat[:, :, c, c] = 0.0
        w.copy_(torch.where(degenerate, flat, w / torch.where(degenerate, torch.ones_like(total), total)))
        w[:, :, c, c] = -1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.kernel // 2
        return self.gain * F.conv2d(F.pad(x, (p, p, p, p), mode="reflect"), self.weight)


def project_constraints(model: nn.Module) -> None:
    """Project every :class:`ConstrainedConv2d` inside ``model``; call after each ``optimizer.step()``.

    Example:
        >>> fan = FAN()
        >>> project_constraints(fan)  # no-op right after construction
    """
    for m in model.modules():
        if isinstance(m, ConstrainedConv2d):
            m.project_()


class FAN(nn.Module):
    """Forensic analysis network (1.34 M parameters for 5 classes); outputs logits (no softmax).

    Args:
        n_classes: number of output classes (5: native, sharpen, gaussian, jpeg, resample).
        n_filters: filters of the first conv stage (doubled at each of the 4 stages).
        n_stages: conv + pool stages.
        kernel: kernel size of the residual layer and of the stages.

    Shape:
        - rgb: (N, 3, H, W), sRGB [0, 1]; trained on 128 x 128, any H, W >= 16 works (global pooling)
        - output: (N, n_classes), logits

    Example:
        >>> FAN(n_classes=5)(torch.rand(2, 3, 128, 128)).shape
        torch.Size([2, 5])
    """

    min_size = 16

    def __init__(self, n_classes: int = 5, n_filters: int = 32, n_stages: int = 4, kernel: int = 5) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        self.n_classes = n_classes
        self.min_size = max(2**n_stages, kernel)
        self.residual = ConstrainedConv2d(3, 3, kernel)
        stages: list[nn.Module] = []
        cin = 3
        for i in range(n_stages):
            cout = n_filters * 2**i
            stages += [nn.Conv2d(cin, cout, kernel, padding=kernel // 2), nn.LeakyReLU(0.2), nn.MaxPool2d(2)]
            cin = cout
        stages += [nn.Conv2d(cin, cin, 1), nn.LeakyReLU(0.2)]
        self.stages = nn.Sequential(*stages)
        self.classifier = nn.Sequential(
            nn.Linear(cin, 512), nn.LeakyReLU(0.2), nn.Linear(512, 128), nn.LeakyReLU(0.2), nn.Linear(128, n_classes)
        )

    def features(self, rgb: torch.Tensor) -> torch.Tensor:
        """Globally pooled features, (N, 256) for the default configuration."""
        check_shape(rgb, ["N", "3", "H", "W"], "rgb")
        check_min_size(rgb, self.min_size, "rgb")
        return self.stages(self.residual(rgb)).mean(dim=(2, 3))

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(rgb))

    def project_constraints(self) -> None:
        """Re-impose the residual-filter constraint; call after each ``optimizer.step()``."""
        project_constraints(self)
