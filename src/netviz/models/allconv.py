"""The CIFAR-10 all-convolutional net of the 2018 "inside the mind of a CNN" post.

Each ``convK`` is a convolution whose output already went through ELU, so hooking ``conv3``
gives the 2018 all-convolutional post's "layer 3" activations (docs/techniques.md §1) and
``conv3.weight`` is the layer's kernel.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# Per-layer init std, in layer order (docs/techniques.md §1).
INIT_STD = (0.04, 0.05, 0.06, 0.04, 0.05, 0.06, 0.06, 0.05, 0.04)


class ConvELU(nn.Conv2d):
    """A bias-free SAME-padded convolution followed by ELU, as one hookable module."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__(cin, cout, kernel, padding=kernel // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(super().forward(x))


class GlobalAvgPool(nn.AdaptiveAvgPool2d):
    """The mean over positions, (N, C, H, W) -> (N, C); an average-pool module, so LRP has a rule for it."""

    def __init__(self) -> None:
        super().__init__(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).flatten(1)


class AllConvNet(nn.Sequential):
    """9 convs with ELU, two 2x2 average pools, global average pooling -> 10 logits."""

    def __init__(self, width: int = 128, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = ConvELU(3, width, 3)
        self.conv2 = ConvELU(width, width, 3)
        self.conv3 = ConvELU(width, width, 3)
        self.pool1 = nn.AvgPool2d(2, 2)
        self.conv4 = ConvELU(width, width, 3)
        self.conv5 = ConvELU(width, width, 3)
        self.conv6 = ConvELU(width, width, 3)
        self.pool2 = nn.AvgPool2d(2, 2)
        self.conv7 = ConvELU(width, width, 3)
        self.conv8 = ConvELU(width, width, 1)
        self.conv9 = ConvELU(width, num_classes, 1)
        self.gap = GlobalAvgPool()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        convs = [m for m in self.modules() if isinstance(m, ConvELU)]
        for conv, std in zip(convs, INIT_STD, strict=True):
            nn.init.normal_(conv.weight, mean=0.0, std=std)
