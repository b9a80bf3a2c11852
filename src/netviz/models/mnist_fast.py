"""A small batch-norm MNIST net that trains to 99 % in one epoch on a CPU (``mnist-fast``).

Three blocks of conv 3x3 -> max-pool -> batch norm -> ReLU (28 -> 14 -> 7 -> 3), then one linear
layer. Pooling before the norm and the ReLU does their work at a quarter of the resolution; the
max-pool commutes with the ReLU, and the net learns the norm's scale either way. About 30 k
parameters, a fortieth of the reference net's, and a tenth of its arithmetic per image.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


class MnistFastNet(nn.Sequential):
    """conv-pool-bn-relu x 3 with ``widths`` channels, then fc -> ``num_classes`` logits."""

    def __init__(self, widths: Sequence[int] = (16, 32, 64), num_classes: int = 10,
                 in_channels: int = 1) -> None:
        super().__init__()
        cin = in_channels
        for k, width in enumerate(widths, start=1):
            self.add_module(f"conv{k}", nn.Conv2d(cin, width, 3, padding=1, bias=False))
            self.add_module(f"pool{k}", nn.MaxPool2d(2))
            self.add_module(f"bn{k}", nn.BatchNorm2d(width))
            self.add_module(f"relu{k}", nn.ReLU(inplace=True))
            cin = width
        side = 28 // 2 ** len(widths)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(cin * side * side, num_classes)
