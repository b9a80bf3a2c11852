"""Image parameterisations: the tensor the optimiser changes, and how it becomes a model input.

``pixel``: the model's normalised input itself, clamped each step to the normalised images of
pixel 0 and 1 (so any model's mean/std works, 1 or 3 channels). ``fft``: a scaled Fourier
spectrum, colour-decorrelated for 3-channel input, squashed by a sigmoid (Lucid/Lucent style).
Every random draw uses the image's own generator, so an image never depends on its batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from netviz.registry import ModelSpec

PARAMS = ("pixel", "fft")
INITS = ("black", "grey", "noise", "multiscale")

# sqrt of the colour correlation of natural photographs (from Lucid); used for 3 channels only.
COLOR_CORRELATION_SVD_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))


def initial_pixels(init: str, spec: ModelSpec, generators: Sequence[torch.Generator],
                   amplitude: float = 0.25) -> torch.Tensor:
    """Start images in [0, 1], (N, C, H, W), one per generator.

    ``noise`` and ``multiscale`` are centred on the model's zero input (its mean pixel, where
    the data are) with an amplitude in units of its std: a neutral start for any normalisation.
    """
    import torch

    c, h, w = spec.input_shape
    n = len(generators)
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    if init == "black":
        return torch.zeros(n, c, h, w)
    if init == "grey":
        return torch.full((n, c, h, w), 0.5)
    if init == "noise":
        noise = torch.stack([torch.randn(c, h, w, generator=g) for g in generators])
    elif init == "multiscale":
        noise = torch.stack([multiscale_noise(g, c, h, w) for g in generators])
    else:
        raise ValueError(f"unknown init {init!r}")
    return (mean + amplitude * std * noise).clamp(0, 1)


def multiscale_noise(generator: torch.Generator, c: int, h: int, w: int) -> torch.Tensor:
    """Uniform noise at every scale 1, 2, 4, ... up to the image size, summed, peak 1."""
    import torch
    from torch.nn import functional as F

    total = torch.zeros(c, h, w)
    step = 1
    while step <= max(h, w):
        small = torch.rand(1, c, math.ceil(h / step), math.ceil(w / step), generator=generator)
        total += F.interpolate(small * 2 - 1, size=(h, w), mode="bilinear", align_corners=False)[0]
        step *= 2
    return total / total.abs().max().clamp_min(1e-12)


class PixelParam:
    """Optimise the normalised model input directly; the clamp keeps it a valid 8-bit image."""

    def __init__(self, start: torch.Tensor, spec: ModelSpec, device: torch.device) -> None:
        import torch

        from netviz.data import normalise, pixel_bounds

        self.lo, self.hi = pixel_bounds(spec, device)
        self.mean = torch.tensor(spec.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(spec.std, device=device).view(1, -1, 1, 1)
        x = normalise(start, spec, device)
        self.tensor = torch.maximum(torch.minimum(x, self.hi), self.lo).requires_grad_(True)

    def input(self) -> torch.Tensor:
        return self.tensor

    def pixels(self) -> torch.Tensor:
        return self.tensor * self.std + self.mean

    def project_(self) -> None:
        import torch

        with torch.no_grad():
            self.tensor.copy_(torch.maximum(torch.minimum(self.tensor, self.hi), self.lo))

    def quantise_(self) -> None:
        """Round to the nearest 8-bit pixels, as an image saved and read back after every step."""
        import torch

        with torch.no_grad():
            levels = torch.round((self.tensor * self.std + self.mean).clamp(0, 1) * 255)
            self.tensor.copy_((levels / 255 - self.mean) / self.std)

    def normgrad_step_(self, grad: torch.Tensor, step: float) -> None:
        # The step is in pixel units: the pixel gradient is grad / std, the input moves by dp / std.
        import torch

        g = grad / self.std
        peak = g.abs().flatten(1).amax(1).clamp_min(1e-30).view(-1, 1, 1, 1)
        with torch.no_grad():
            self.tensor.add_(step * g / peak / self.std)

    def blur_(self, sigma: float) -> None:
        import torch

        from netviz.dream.transforms import gaussian_blur

        with torch.no_grad():
            self.tensor.copy_(gaussian_blur(self.tensor, sigma))


class FFTParam:
    """A Fourier spectrum scaled by 1/frequency: steps change all scales alike (Lucid's fft_image)."""

    def __init__(self, shape: Sequence[int], spec: ModelSpec, generators: Sequence[torch.Generator],
                 device: torch.device, decorrelate: bool = True, sd: float = 0.01) -> None:
        import torch

        c, h, w = shape
        self.shape = (c, h, w)
        self.spec = spec
        fy = torch.fft.fftfreq(h)[:, None]
        fx = torch.fft.rfftfreq(w)[None, :]
        freqs = (fx * fx + fy * fy).sqrt()
        self.scale = (1.0 / freqs.clamp_min(1.0 / max(h, w))).to(device)[None, None, :, :, None]
        spectrum = torch.stack([sd * torch.randn(c, h, w // 2 + 1, 2, generator=g)
                                for g in generators])
        self.tensor = spectrum.to(device).requires_grad_(True)
        self.colour = None
        if decorrelate and c == 3:
            m = torch.tensor(COLOR_CORRELATION_SVD_SQRT)
            self.colour = (m / m.norm(dim=0).max()).to(device)

    def pixels(self) -> torch.Tensor:
        import torch

        _, h, w = self.shape
        spectrum = torch.view_as_complex((self.scale * self.tensor).contiguous())
        image = torch.fft.irfftn(spectrum, s=(h, w), norm="ortho") / 4.0
        if self.colour is not None:
            image = torch.einsum("ij,njhw->nihw", self.colour, image)
        return torch.sigmoid(image)

    def input(self) -> torch.Tensor:
        from netviz.data import normalise

        return normalise(self.pixels(), self.spec)

    def project_(self) -> None:  # the sigmoid keeps pixels valid
        return None

    def normgrad_step_(self, grad: torch.Tensor, step: float) -> None:
        import torch

        peak = grad.abs().flatten(1).amax(1).clamp_min(1e-30).view(-1, 1, 1, 1, 1)
        with torch.no_grad():
            self.tensor.add_(step * grad / peak)

    def blur_(self, sigma: float) -> None:
        raise NotImplementedError("blur applies to the pixel parameterisation only")
