"""SmoothGrad (Smilkov et al. 2017): the gradient averaged over noisy copies of the input."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netviz import batching
from netviz.attribute._common import (
    Attribution,
    input_gradients,
    norm_params,
    opening,
    pixel_range,
)
from netviz.attribute._registry import Method, SeededOptions, option, register
from netviz.errors import NetvizError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.registry import ModelSpec


@dataclass(frozen=True)
class SmoothGradOptions(SeededOptions):
    samples: int = option(50, "smoothgrad: noisy copies per image.", "count")
    noise: float = option(0.15, "smoothgrad: noise std as a fraction of the pixel range.", "nonneg")


def smoothgrad(model: nn.Module, x: torch.Tensor,
               target: int | Sequence[int] | torch.Tensor | None = None, *, samples: int = SmoothGradOptions.samples,
               noise: float = SmoothGradOptions.noise, absolute: bool = False, seed: int = 0, offset: int = 0,
               score: str = "logit", batch_size: int | None = None,
               spec: ModelSpec | None = None, mean: Sequence[float] | None = None,
               std: Sequence[float] | None = None, quiet: bool = True) -> Attribution:
    """SmoothGrad (Smilkov et al. 2017): the gradient averaged over ``samples`` noisy copies.

    The noise is Gaussian with standard deviation ``noise`` x the span of valid pixels in the
    normalised space (per channel: 1/std; needs ``spec`` or ``std``, else 1). It is drawn from a
    generator seeded with ``seed``, image after image, ``samples`` copies at a time, with
    ``torch.normal`` as Captum's ``NoiseTunnel`` does. ``absolute=True`` averages |gradient|
    (Captum's NoiseTunnel over ``Saliency`` with its default abs=True).
    """
    import torch

    from netviz.progress import progress

    if isinstance(samples, bool) or int(samples) != samples or samples <= 0:
        raise NetvizError(f"samples must be a positive whole number, not {samples}")
    if not noise >= 0:
        raise NetvizError(f"noise must be a fraction of the pixel range >= 0 (e.g. 0.15), "
                          f"not {noise}")
    m, s = norm_params(spec, mean, std)
    with opening(model, x, target, score, batch_size) as o:
        x, t, dev = o.x, o.target, o.device
        sigma = (noise * pixel_range(x, m, s)).expand(samples, *x.shape[1:]).contiguous()
        gen = torch.Generator().manual_seed(seed)
        for _ in range(offset):  # the draws of the images before x (another rank's share), as alone
            torch.normal(0.0, sigma, generator=gen)
        out = torch.zeros_like(x)
        # images whose noisy copies are drawn together (their memory bounded as a pass's)
        group = max(1, (o.batch_size or batching.most(tuple(x.shape[1:]), dev)) // samples)
        with progress(total=x.shape[0], quiet=quiet, desc="smoothgrad", unit="image") as bar:
            for g0 in range(0, x.shape[0], group):
                idx = range(g0, min(g0 + group, x.shape[0]))
                # One draw of `samples` copies per image, in image order: what Captum draws
                # when called image by image.
                noisy = torch.cat([x[i:i + 1] + torch.normal(0.0, sigma, generator=gen)
                                   for i in idx])
                owner = torch.arange(len(idx)).repeat_interleave(samples)
                acc = torch.zeros((len(idx), *x.shape[1:]), device=dev)
                for which in o.passes(noisy.shape[0], "smoothgrad"):
                    who, chunk = owner[which].to(dev), noisy[which].to(dev)
                    grad, _ = input_gradients(model, chunk, t[g0:g0 + len(idx)].to(dev)[who], score)
                    acc.index_add_(0, who, grad.abs() if absolute else grad)
                out[g0:g0 + len(idx)] = acc.cpu() / samples
                bar.update(len(idx))
    return Attribution(out, "smoothgrad", t, score, score_input=o.score_input,
                       settings={"samples": samples, "noise": noise, "absolute": absolute,
                                 "seed": seed})


smoothgrad = register(Method("smoothgrad", smoothgrad, "gradient averaged over noisy copies (Smilkov et al. 2017)",
                             SmoothGradOptions)).function
