"""Occlusion (Zeiler & Fergus 2014): the drop of the score when a window of the image is hidden.

Windows of ``window`` x ``window`` pixels (all channels) slide over every position with ``stride``,
the last one in each direction clipped at the border (as Captum's ``Occlusion``); each is replaced
by the baseline. A pixel's attribution is the mean drop F(x) - F(x occluded) over the windows
that cover it. Every occluded copy goes through the model in batches of ``batch_size``, except
the copies equal to the image (a window over pixels that are already the baseline): their drop
is 0 without a forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netviz.attribute._common import (
    Attribution,
    check_input,
    fast_format,
    make_baseline,
    model_score,
    opening,
)
from netviz.attribute._registry import BaselineOptions, Method, SeededOptions, option, register
from netviz.errors import NetvizError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.registry import ModelSpec


@dataclass(frozen=True)
class OcclusionOptions(BaselineOptions, SeededOptions):
    window: int = option(4, "occlusion: the side of the square window hidden, in pixels.", "count")
    stride: int = option(2, "occlusion: pixels between window positions (at most --window).", "int")


def window_masks(height: int, width: int, window: int, stride: int) -> torch.Tensor:
    """(P, 1, H, W) masks of every window position, 1 inside the window."""
    import torch

    if stride < 1:
        raise NetvizError(f"--stride must be at least 1 pixel, not {stride}")
    if not 1 <= window <= min(height, width):
        raise NetvizError(f"--window {window} does not fit the {width}x{height} image: use 1 to "
                          f"{min(height, width)} pixels")
    if stride > window:
        raise NetvizError(f"--stride {stride} is larger than --window {window}: pixels between "
                          "windows would never be occluded")
    ys = [k * stride for k in range(math.ceil((height - window) / stride) + 1)]
    xs = [k * stride for k in range(math.ceil((width - window) / stride) + 1)]
    masks = torch.zeros(len(ys) * len(xs), 1, height, width)
    for p, (y, x) in enumerate((y, x) for y in ys for x in xs):
        masks[p, 0, y:y + window, x:x + window] = 1.0
    return masks


def occlusion(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None,
              window: int = OcclusionOptions.window, stride: int = OcclusionOptions.stride,
              baseline: str | float | torch.Tensor | None = None, *,
              score: str = "logit", batch_size: int | None = None, spec: ModelSpec | None = None,
              mean: Sequence[float] | None = None, std: Sequence[float] | None = None, seed: int = 0,
              offset: int = 0, quiet: bool = True) -> Attribution:
    """Occlusion attributions with the shape of ``x``; ``baseline`` as for integrated gradients."""
    import torch

    from netviz.progress import progress

    x = check_input(x)
    masks = window_masks(x.shape[2], x.shape[3], int(window), int(stride))
    b = make_baseline(x, baseline, spec=spec, mean=mean, std=std, seed=seed, offset=offset)
    count = masks.sum(0)  # windows covering each pixel (>= 1 everywhere: stride <= window)
    n, positions = x.shape[0], masks.shape[0]
    with opening(model, x, target, score, batch_size) as o, torch.no_grad():
        t, f_x, batch_size, dev = o.target, o.score_input, o.batch_size, o.device
        masks_dev = masks.to(dev)
        xs, bs, ts, fs = x.to(dev), b.to(dev), t.to(dev), f_x.to(dev)
        total = torch.zeros(n, 1, *x.shape[2:], device=dev)
        # A window over pixels that already equal the baseline changes nothing: its drop is 0
        # without running the model (on MNIST the black border is about half of the windows).
        differs = ((xs != bs).any(1, keepdim=True).float().unsqueeze(1) * masks_dev.unsqueeze(0)).flatten(2)
        pairs = differs.amax(2).flatten().nonzero().flatten()  # (image, window) pairs that matter
        with progress(total=len(pairs), quiet=quiet, desc="occlusion", unit="window") as bar:
            # the pairs fill whole batches across images
            layout = fast_format(model, xs)
            for start in range(0, len(pairs), batch_size):
                pair = pairs[start:start + batch_size]
                img, m = pair // positions, masks_dev[pair % positions]
                occluded = (xs[img] * (1 - m) + bs[img] * m).contiguous(memory_format=layout)
                drop = fs[img] - model_score(model, occluded, ts[img], score).double()
                total.index_add_(0, img, drop.float().view(-1, 1, 1, 1) * m)
                bar.update(len(pair))
        out = (total.cpu() / count).expand(-1, x.shape[1], -1, -1).contiguous()
    return Attribution(out, "occlusion", t, score, score_input=f_x,
                       settings={"window": int(window), "stride": int(stride), "positions": positions,
                                 "batch_size": batch_size})


occlusion = register(Method("occlusion", occlusion, "the score's drop when a sliding window is hidden (Zeiler & "
                            "Fergus 2014)", OcclusionOptions)).function
