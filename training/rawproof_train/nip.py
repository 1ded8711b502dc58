"""Neural imaging pipelines (NIPs): RGGB half-resolution stack -> full-resolution sRGB.

Three architectures after Korus & Memon, "Content Authentication for Neural Imaging Pipelines"
(CVPR 2019, arXiv 1902.10707), re-implemented in PyTorch from the paper and its reference code:

* :class:`INet` (321 trainable parameters): a learnable copy of a classic ISP. Fixed scatter
  of the four Bayer planes into a sparse full-resolution RGB image, 5x5 demosaicing conv
  (bilinear init), 1x1 colour matrix (identity init), and a 3 -> 12 -> 3 tanh "gamma" network
  (initialised to approximate the sRGB transfer curve per channel).
* :class:`UNet` (7.76 M): the Learning-to-See-in-the-Dark U-Net at half resolution (4 levels,
  32..512 filters, leaky ReLU 0.2, transposed-conv upsampling), ending in 12 channels and a
  depth-to-space (PixelShuffle) to full resolution.
* :class:`DNet` (0.49 M): after Gharbi et al.'s joint demosaicking network: 15 3x3 conv layers
  (64 features, ReLU) at half resolution producing 12 channels, depth-to-space, concatenation
  with the sparse Bayer image, one 3x3 conv (64, ReLU) and a 1x1 projection to RGB.

All models take ``rggb``: float32 N x 4 x h x w, linear [0, 1], channels (R, Gr, Gb, B), and return
sRGB N x 3 x 2h x 2w, nominally [0, 1] but **not clipped** (as in the reference, where the loss is
taken on the unclipped output; clip with ``.clamp(0, 1)`` for display, manipulation or export).
They are fully convolutional and ONNX-exportable (opset 17: Conv, ConvTranspose, MaxPool, Pad
(reflect/edge), LeakyRelu, Tanh, DepthToSpace, Concat, Slice).

Receptive field: every model has ``receptive_field`` ``R`` (int, output pixels, one-sided radius):
output pixel ``(y, x)`` depends only on input pixels ``(i, j)`` with ``|2i - y| <= R`` and
``|2j - x| <= R`` (``2i`` is where input row ``i`` lands on the output grid). It is computed by
interval analysis of each architecture (:meth:`receptive_field` docstrings), and the tests
check it against the gradient of one output pixel. For tiled inference an input-tile overlap of
``ceil(R / 2) + 1`` pixels on each side makes the stitched result equal to whole-image inference
(away from the image border, where padding differs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rawproof_train._checks import check_shape

__all__ = ["NIP", "INet", "INetPlus", "UNet", "DNet", "NIPS", "create_nip", "nip_from_checkpoint", "count_parameters", "bayer_scatter_weight", "srgb_oetf"]

Span = tuple[int, int]


def srgb_oetf(x: np.ndarray) -> np.ndarray:
    """The sRGB transfer function (IEC 61966-2-1), linear [0, 1] -> encoded [0, 1], float64."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(np.maximum(x, 1e-12), 1 / 2.4) - 0.055)


def bayer_scatter_weight() -> torch.Tensor:
    """1x1 conv weight (12 x 4 x 1 x 1) that, followed by ``pixel_shuffle(2)``, places each RGGB plane
    at its Bayer site in a sparse full-resolution RGB image (zeros elsewhere).

    PixelShuffle reads output channel ``c`` at sub-position ``(dy, dx)`` from input channel
    ``4 c + 2 dy + dx``. R sits at (0, 0), Gr at (0, 1), Gb at (1, 0), B at (1, 1).
    """
    w = torch.zeros(12, 4, 1, 1)
    for plane, (colour, dy, dx) in enumerate([(0, 0, 0), (1, 0, 1), (1, 1, 0), (2, 1, 1)]):
        w[4 * colour + 2 * dy + dx, plane] = 1.0
    return w


def _conv_span(span: Span, k: int) -> Span:
    return span[0] - k // 2, span[1] + k // 2


def _pool_span(span: Span) -> Span:
    """Inputs of a 2x2/2 max-pool (or the coarse-to-fine direction of a 2x downscale)."""
    return 2 * span[0], 2 * span[1] + 1


def _up_span(span: Span) -> Span:
    """Inputs of a 2x upsampling by transposed 2x2/2 conv or depth-to-space: output q reads input q // 2."""
    return span[0] // 2, span[1] // 2


def _union(a: Span, b: Span) -> Span:
    return min(a[0], b[0]), max(a[1], b[1])


def _radius_from_span(span_of_output: Callable[[int], Span], period: int) -> int:
    """Largest ``|2i - y|`` over input rows ``i`` feeding output row ``y``, over one period of ``y``."""
    r = 0
    for y in range(period, 2 * period):
        lo, hi = span_of_output(y)
        r = max(r, y - 2 * lo, 2 * hi - y)
    return r


class NIP(nn.Module):
    """Base class: checks the RGGB input and defines the contract shared by all NIPs."""

    def _check(self, rggb: torch.Tensor) -> None:
        check_shape(rggb, ["N", "4", "H", "W"], "rggb")

    @property
    def receptive_field(self) -> int:
        """One-sided receptive-field radius in output pixels (see the module docstring)."""
        raise NotImplementedError


class INet(NIP):
    """A learnable classic ISP: Bayer scatter, 5x5 demosaic, colour matrix, tanh gamma (321 parameters).

    Args:
        kernel: demosaicing kernel size (odd).
        trainable_upsampling: also learn the 4 -> 12 scatter (48 more parameters); fixed by default
            as in the reference.

    Shape:
        - rggb: (N, 4, H, W), linear [0, 1], channels R, Gr, Gb, B
        - output: (N, 3, 2H, 2W), sRGB, unclipped

    Example:
        >>> INet()(torch.rand(1, 4, 6, 10)).shape
        torch.Size([1, 3, 12, 20])
    """

    # Hidden-unit slopes of the gamma network's initialisation: tanh(a x) for these a, combined by
    # least squares, follows the sRGB curve to within ~0.02 on [0, 1].
    _GAMMA_SLOPES = (60.0, 15.0, 4.0, 1.2)

    def __init__(self, kernel: int = 5, trainable_upsampling: bool = False) -> None:
        super().__init__()
        if kernel % 2 != 1 or kernel < 3:
            raise ValueError(f"kernel must be odd and >= 3, got {kernel}")
        self.kernel = kernel
        self.scatter = nn.Conv2d(4, 12, 1, bias=False)
        self.scatter.weight.data.copy_(bayer_scatter_weight())
        self.scatter.weight.requires_grad_(trainable_upsampling)
        self.demosaic = nn.Conv2d(3, 3, kernel, padding=kernel // 2, padding_mode="reflect", bias=False)
        self.colour = nn.Conv2d(3, 3, 1, bias=False)
        self.gamma_in = nn.Conv2d(3, 12, 1)
        self.gamma_out = nn.Conv2d(12, 3, 1)
        self._init_classic()

    def _init_classic(self) -> None:
        with torch.no_grad():
            c = self.kernel // 2
            rb = torch.tensor([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])
            g = torch.tensor([[0.0, 0.25, 0.0], [0.25, 1.0, 0.25], [0.0, 0.25, 0.0]])
            self.demosaic.weight.zero_()
            for ch, k in enumerate((rb, g, rb)):
                self.demosaic.weight[ch, ch, c - 1 : c + 2, c - 1 : c + 2] = k
            self.colour.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            slopes = np.array(self._GAMMA_SLOPES)
            x = np.linspace(0.0, 1.0, 1001)
            design = np.c_[np.tanh(np.outer(x, slopes)), np.ones_like(x)]
            coef, *_ = np.linalg.lstsq(design, srgb_oetf(x), rcond=None)
            self.gamma_in.weight.zero_()
            self.gamma_in.bias.zero_()
            self.gamma_out.weight.zero_()
            n = len(slopes)
            for ch in range(3):
                self.gamma_in.weight[ch * n : (ch + 1) * n, ch, 0, 0] = torch.as_tensor(slopes, dtype=torch.float32)
                self.gamma_out.weight[ch, ch * n : (ch + 1) * n, 0, 0] = torch.as_tensor(coef[:n], dtype=torch.float32)
                self.gamma_out.bias[ch] = float(coef[n])

    def forward(self, rggb: torch.Tensor) -> torch.Tensor:
        self._check(rggb)
        sparse = F.pixel_shuffle(self.scatter(rggb), 2)
        rgb = self.colour(self.demosaic(sparse))
        return self.gamma_out(torch.tanh(self.gamma_in(rgb)))

    @property
    def receptive_field(self) -> int:
        """Scatter + depth-to-space, then one ``kernel`` x ``kernel`` conv at full resolution (3 for 5x5)."""
        return _radius_from_span(lambda y: _up_span(_conv_span((y, y), self.kernel)), 2)


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.2)
    )


class UNet(NIP):
    """The SID U-Net (Chen et al., CVPR 2018) as used by Korus & Memon (7.76 M parameters).

    Encoder: 5 double-3x3-conv blocks (32, 64, 128, 256, 512 filters) with 2x2 max-pooling in
    between; decoder: 2x2/2 transposed conv (no bias), concatenation with the encoder block of the
    same level, double conv; then 1x1 conv to 12 channels and depth-to-space to full resolution.
    Inputs whose size is not a multiple of 16 are edge-padded to one and the output is cropped.

    Args:
        base_filters: filters of the first level (doubled at each level); 32 in the paper.

    Shape:
        - rggb: (N, 4, H, W), any H, W >= 1
        - output: (N, 3, 2H, 2W), sRGB, unclipped

    Example:
        >>> UNet(base_filters=4)(torch.rand(1, 4, 10, 6)).shape
        torch.Size([1, 3, 20, 12])
    """

    levels = 5
    factor = 16

    def __init__(self, base_filters: int = 32) -> None:
        super().__init__()
        widths = [base_filters * 2**i for i in range(self.levels)]
        self.encoders = nn.ModuleList(_double_conv(cin, cout) for cin, cout in zip([4, *widths[:-1]], widths))
        self.ups = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2, bias=False) for i in reversed(range(self.levels - 1)))
        self.decoders = nn.ModuleList(_double_conv(2 * widths[i], widths[i]) for i in reversed(range(self.levels - 1)))
        self.head = nn.Conv2d(widths[0], 12, 1)

    def forward(self, rggb: torch.Tensor) -> torch.Tensor:
        self._check(rggb)
        h, w = rggb.shape[-2:]
        ph, pw = (-h) % self.factor, (-w) % self.factor
        # Pad unconditionally (a zero pad is a no-op) so an ONNX trace keeps the pad for every input size.
        x = F.pad(rggb, (0, pw, 0, ph), mode="replicate")
        skips = []
        for i, enc in enumerate(self.encoders):
            x = enc(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for up, dec, skip in zip(self.ups, self.decoders, reversed(skips[:-1])):
            x = dec(torch.cat([up(x), skip], dim=1))
        return F.pixel_shuffle(self.head(x), 2)[..., : 2 * h, : 2 * w]

    @property
    def receptive_field(self) -> int:
        """Interval analysis over every path (skips and bottleneck): 3x3 convs widen by 1 per side,
        2x2 pools map ``[a, b]`` to ``[2a, 2b + 1]``, transposed convs and depth-to-space ``q -> q // 2``.
        """
        last = self.levels - 1

        def enc(level: int, span: Span) -> Span:
            span = _conv_span(_conv_span(span, 3), 3)
            return span if level == 0 else enc(level - 1, _pool_span(span))

        def dec(level: int, span: Span) -> Span:
            span = _conv_span(_conv_span(span, 3), 3)
            coarse = _up_span(span)
            below = enc(last, coarse) if level == last - 1 else dec(level + 1, coarse)
            return _union(enc(level, span), below)

        return _radius_from_span(lambda y: dec(0, _up_span((y, y))), 2 * self.factor)


class DNet(NIP):
    """Gharbi et al.'s demosaicking net adapted to full ISP (0.49 M parameters).

    Args:
        n_layers: conv layers at half resolution (15 in the paper).
        n_features: their width (64).

    Shape:
        - rggb: (N, 4, H, W), any H, W >= 2 (reflect padding needs 2 pixels)
        - output: (N, 3, 2H, 2W), sRGB, unclipped

    Example:
        >>> DNet(n_layers=3, n_features=8)(torch.rand(1, 4, 6, 8)).shape
        torch.Size([1, 3, 12, 16])
    """

    def __init__(self, n_layers: int = 15, n_features: int = 64) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.n_layers = n_layers
        layers: list[nn.Module] = []
        for i in range(n_layers):
            cin = 4 if i == 0 else n_features
            cout = 12 if i == n_layers - 1 else n_features
            layers += [nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect"), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.scatter = nn.Conv2d(4, 12, 1, bias=False)
        self.scatter.weight.data.copy_(bayer_scatter_weight())
        self.scatter.weight.requires_grad_(False)
        self.fuse = nn.Conv2d(6, n_features, 3, padding=1, padding_mode="reflect")
        self.project = nn.Conv2d(n_features, 3, 1, bias=False)
        nn.init.constant_(self.project.weight, 1.0 / n_features)

    def forward(self, rggb: torch.Tensor) -> torch.Tensor:
        self._check(rggb)
        feats = F.pixel_shuffle(self.features(rggb), 2)
        sparse = F.pixel_shuffle(self.scatter(rggb), 2)
        return self.project(F.relu(self.fuse(torch.cat([feats, sparse], dim=1))))

    @property
    def receptive_field(self) -> int:
        """One 3x3 conv at full resolution, then depth-to-space and ``n_layers`` 3x3 convs at half resolution."""

        def span(y: int) -> Span:
            lo, hi = _up_span(_conv_span((y, y), 3))
            return lo - self.n_layers, hi + self.n_layers

        return _radius_from_span(span, 2)


class INetPlus(NIP):
    """INet plus a quarter-width UNet residual whose last layer starts at zero (0.49 M parameters).

    Why: INet is shift-equivariant with period 2 (one conv on the Bayer grid, then per-pixel
    layers), and the channel's 2x2 box downscale maps every period-2 pattern to a constant, so
    INet cannot learn traces that survive the channel. The residual UNet (receptive field 215 px,
    four 2x poolings) can, while the zero-initialised head makes ``INetPlus`` start exactly
    where a pretrained INet is (:meth:`from_inet`), so joint training needs no new NIP
    pretraining and its fidelity-only baseline is that INet. At a quarter of the paper's UNet
    width it costs ~1/16 of its FLOPs: trainable on 2 CPU cores.

    Shape:
        - rggb: (N, 4, H, W)
        - output: (N, 3, 2H, 2W), sRGB, unclipped

    Example:
        >>> INetPlus()(torch.rand(1, 4, 10, 6)).shape
        torch.Size([1, 3, 20, 12])
    """

    factor = UNet.factor

    def __init__(self, base_filters: int = 8) -> None:
        super().__init__()
        self.inet = INet()
        self.residual = UNet(base_filters=base_filters)
        nn.init.zeros_(self.residual.head.weight)
        nn.init.zeros_(self.residual.head.bias)

    @classmethod
    def from_inet(cls, inet: INet, base_filters: int = 8) -> INetPlus:
        """Start from a trained INet: the output equals ``inet``'s until the residual learns."""
        model = cls(base_filters)
        model.inet.load_state_dict(inet.state_dict())
        return model

    def forward(self, rggb: torch.Tensor) -> torch.Tensor:
        self._check(rggb)
        return self.inet(rggb) + self.residual(rggb)

    @property
    def receptive_field(self) -> int:
        """The larger of the two branches' (the UNet's)."""
        return max(self.inet.receptive_field, self.residual.receptive_field)


NIPS: dict[str, type[NIP]] = {"INet": INet, "UNet": UNet, "DNet": DNet, "INetPlus": INetPlus}
"""Registry of NIP architectures by name (the ``architecture`` model-metadata value)."""


def create_nip(name: str, **kw: object) -> NIP:
    """Build a NIP by registry name (``"INet"``, ``"UNet"``, ``"DNet"``; case-insensitive).

    Args:
        name: architecture name.
        **kw: passed to the class constructor.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    by_lower = {k.lower(): v for k, v in NIPS.items()}
    if name.lower() not in by_lower:
        raise ValueError(f"unknown NIP {name!r}; known: {sorted(NIPS)}")
    return by_lower[name.lower()](**kw)


def nip_from_checkpoint(ckpt: Mapping[str, Any]) -> NIP:
    """The NIP a training checkpoint (``nip.pt``) holds, weights loaded (strict), in eval mode.

    ``ckpt["arch_kwargs"]`` (e.g. ``{"base_filters": 16}``) rebuilds a non-default width;
    checkpoints without it use the architecture's defaults.
    """
    model = create_nip(str(ckpt["arch"]), **dict(ckpt.get("arch_kwargs") or {}))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

