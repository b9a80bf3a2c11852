"""Random transforms applied to the image before each forward pass, and the blur regulariser.

Each image draws its shift, scale and angle from its own generator (in a fixed order), so an
image's transforms are the same whichever other images share the batch. Transforms work in the
model's input space with reflection padding: no padding colour is assumed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def _uniform(generator: torch.Generator, lo: float, hi: float) -> float:
    import torch

    return lo + (hi - lo) * float(torch.rand((), generator=generator))


def jitter(x: torch.Tensor, generators: Sequence[torch.Generator], max_shift: int) -> torch.Tensor:
    """Roll each image by its own random (dy, dx) in [-max_shift, max_shift]."""
    import torch

    if max_shift <= 0:
        return x
    shifted = []
    for i, g in enumerate(generators):
        dy, dx = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=g))
        shifted.append(torch.roll(x[i:i + 1], shifts=(dy, dx), dims=(2, 3)))
    return torch.cat(shifted)


def scale_rotate(x: torch.Tensor, generators: Sequence[torch.Generator],
                 scale: tuple[float, float] = (1.0, 1.0), degrees: float = 0.0) -> torch.Tensor:
    """Zoom each image by a factor in ``scale`` and rotate it by up to +-``degrees`` (bilinear)."""
    import math

    import torch
    from torch.nn import functional as F

    do_scale, do_rotate = scale != (1.0, 1.0), degrees > 0
    if not (do_scale or do_rotate):
        return x
    thetas = []
    for g in generators:
        s = _uniform(g, *scale) if do_scale else 1.0
        a = math.radians(_uniform(g, -degrees, degrees)) if do_rotate else 0.0
        cos, sin = math.cos(a) / s, math.sin(a) / s  # the grid maps output to input: inverse zoom
        thetas.append([[cos, -sin, 0.0], [sin, cos, 0.0]])
    theta = torch.tensor(thetas, dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur per channel with reflection padding (the size is kept)."""
    import torch
    from torch.nn import functional as F

    radius = max(1, int(3 * sigma + 0.5))
    radius = min(radius, x.shape[2] - 1, x.shape[3] - 1)
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t * t) / (2 * sigma * sigma))
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def total_variation(pixels: torch.Tensor) -> torch.Tensor:
    """Per image: the sum of absolute differences between neighbouring pixels."""
    dy = (pixels[:, :, 1:, :] - pixels[:, :, :-1, :]).abs().flatten(1).sum(1)
    dx = (pixels[:, :, :, 1:] - pixels[:, :, :, :-1]).abs().flatten(1).sum(1)
    return dy + dx


def l2_penalty(pixels: torch.Tensor) -> torch.Tensor:
    """Per image: the summed squared distance of the pixels from mid-grey."""
    return (pixels - 0.5).pow(2).flatten(1).sum(1)
