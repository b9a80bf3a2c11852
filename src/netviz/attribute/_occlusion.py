"""Occlusion (Zeiler & Fergus 2014): the drop of the score when a window of the image is hidden.

Windows of ``window`` x ``window`` pixels (all channels) slide over every position with ``stride``,
the last one in each direction clipped at the border (as Captum's ``Occlusion``); each is replaced
by the baseline. A pixel's attribution is the mean drop F(x) - F(x occluded) over the windows
that cover it. Every occluded copy goes through the model in batches of ``batch_size``, except
the copies equal to the image (a window over pixels that are already the baseline): their drop
is 0 without a forward pass. A model that traces with ``torch.fx`` runs each copy incrementally
(:mod:`netviz.attribute._incremental`): only what the window changes is recomputed, exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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

CLEAN_BYTES = 2**29  # the clean layer outputs kept at once for incremental occlusion

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.registry import ModelSpec


@dataclass(frozen=True)
class OcclusionOptions(BaselineOptions, SeededOptions):
    window: int = option(4, "occlusion: the side of the square window hidden, in pixels.", "count")
    stride: int = option(2, "occlusion: pixels between window positions (at most --window).", "int")
    incremental: bool = option(True, "occlusion: recompute only the part of each layer a window changes (exact; "
                               "--no-incremental runs whole passes).", "switch")


def window_starts(height: int, width: int, window: int, stride: int) -> list[tuple[int, int]]:
    """(top, left) of every window position, row by row; the last in each direction is clipped."""
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
    return [(y, x) for y in ys for x in xs]


def window_masks(height: int, width: int, window: int, stride: int) -> torch.Tensor:
    """(P, 1, H, W) masks of every window position, 1 inside the window."""
    import torch

    starts = window_starts(height, width, window, stride)
    masks = torch.zeros(len(starts), 1, height, width)
    for p, (y, x) in enumerate(starts):
        masks[p, 0, y:y + window, x:x + window] = 1.0
    return masks


def occlusion(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None,
              window: int = OcclusionOptions.window, stride: int = OcclusionOptions.stride,
              baseline: str | float | torch.Tensor | None = None, *,
              score: str = "logit", batch_size: int | None = None, spec: ModelSpec | None = None,
              mean: Sequence[float] | None = None, std: Sequence[float] | None = None, seed: int = 0,
              offset: int = 0, quiet: bool = True, incremental: bool = OcclusionOptions.incremental) -> Attribution:
    """Occlusion attributions with the shape of ``x``; ``baseline`` as for integrated gradients."""
    import torch

    from netviz.progress import progress

    x = check_input(x)
    starts = window_starts(x.shape[2], x.shape[3], int(window), int(stride))
    masks = window_masks(x.shape[2], x.shape[3], int(window), int(stride))
    b = make_baseline(x, baseline, spec=spec, mean=mean, std=std, seed=seed, offset=offset)
    count = masks.sum(0)  # windows covering each pixel (>= 1 everywhere: stride <= window)
    n, positions = x.shape[0], masks.shape[0]
    with opening(model, x, target, score, batch_size) as o, torch.no_grad():
        t, f_x, dev = o.target, o.score_input, o.device
        copies = Copies(model, x.to(dev), b.to(dev), masks.to(dev), starts, int(window), t.to(dev), score,
                        incremental)
        total = torch.zeros(n, 1, *x.shape[2:], device=dev)
        f_dev = f_x.to(dev)
        pairs = copies.pairs()
        with progress(total=len(pairs), quiet=quiet, desc="occlusion", unit="window") as bar:
            for group in copies.groups(pairs):  # the pairs fill whole batches across images
                batches = o.passes(len(group), copies.work, gradients=False)
                for which in batches:
                    pair = group[which]
                    img, m = pair // positions, copies.masks[pair % positions]
                    drop = f_dev[img] - copies.scores(img, pair % positions).double()
                    total.index_add_(0, img, drop.float().view(-1, 1, 1, 1) * m)
                    bar.update(len(pair))
        out = (total.cpu() / count).expand(-1, x.shape[1], -1, -1).contiguous()
    return Attribution(out, "occlusion", t, score, score_input=f_x,
                       settings={"window": int(window), "stride": int(stride), "positions": positions,
                                 "batch_size": batches.size if len(pairs) else o.batch_size, **copies.how()})


class Copies:
    """The scores of occluded copies of the images: incrementally where the model traces, else by
    whole forward passes."""

    def __init__(self, model: nn.Module, x: torch.Tensor, baseline: torch.Tensor, masks: torch.Tensor,
                 starts: list[tuple[int, int]], window: int, target: torch.Tensor, score: str,
                 incremental: bool) -> None:
        import torch

        from netviz.attribute import _incremental
        from netviz.heads import head_of

        self.model, self.x, self.baseline, self.masks, self.window = model, x, baseline, masks, window
        self.target, self.score, self.activation = target, score, head_of(model).activation
        self.layout = fast_format(model, x)
        size = torch.tensor([[x.shape[2] - window, x.shape[3] - window]], device=x.device)
        self.tops = torch.tensor(starts, device=x.device).clamp(max=size)  # boxes of whole windows
        self.engine, self.why_whole = None, "--no-incremental"
        if incremental:
            try:
                self.engine = _incremental.Incremental(model)
            except _incremental.NotTraceable as e:
                self.why_whole = str(e)
        self.work = "occlusion" if self.engine is None else "occlusion-incremental"
        self.clean: dict = {}
        self.first = 0  # the first image whose clean outputs self.clean holds

    def pairs(self) -> torch.Tensor:
        """The (image, window) pairs that change the image, as image * P + window. A window over
        pixels that already equal the baseline changes nothing: its drop is 0 without running the
        model (on MNIST the black border is about half of the windows)."""
        differs = (self.x != self.baseline).any(1, keepdim=True).float().unsqueeze(1) * self.masks.unsqueeze(0)
        return differs.flatten(2).amax(2).flatten().nonzero().flatten()

    def groups(self, pairs: torch.Tensor) -> Iterator[torch.Tensor]:
        """The pairs in groups of images whose clean layer outputs fit in memory together."""
        if self.engine is None:
            yield pairs
            return
        import torch

        per_image = sum(v.numel() * v.element_size() for v in self._clean(0, 1).values()
                        if isinstance(v, torch.Tensor))
        size = max(1, CLEAN_BYTES // max(1, per_image))
        img = pairs // self.masks.shape[0]
        for first in range(0, self.x.shape[0], size):
            group = pairs[(img >= first) & (img < first + size)]
            if len(group):
                self.clean, self.first = self._clean(first, first + size), first
                yield group

    def scores(self, img: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
        """F of the copies of images ``img``, each with its window hidden."""
        from netviz.attribute._common import score_of
        from netviz.attribute._incremental import Clean, Patched, gather_box

        if self.engine is None:
            m = self.masks[window]
            occluded = (self.x[img] * (1 - m) + self.baseline[img] * m).contiguous(memory_format=self.layout)
            return model_score(self.model, occluded, self.target[img], self.score)
        top, left = self.tops[window, 0], self.tops[window, 1]
        box = [top, left, self.window, self.window]
        m = gather_box(self.masks, window, *box)
        patch = gather_box(self.x, img, *box) * (1 - m) + gather_box(self.baseline, img, *box) * m
        first = Patched(Clean(self.clean[self.engine.input]), img - self.first, top, left, patch)
        return score_of(self.engine.run(self.clean, first), self.target[img], self.score, self.activation)

    def how(self) -> dict[str, Any]:
        """How the copies were run, for the record."""
        if self.engine is None:
            return {"incremental": False, "why_whole": self.why_whole}
        return {"incremental": True, "whole_from": list(self.engine.whole_from)}

    def _clean(self, first: int, stop: int) -> dict:
        return self.engine.clean(self.x[first:stop].contiguous(memory_format=self.layout))


occlusion = register(Method("occlusion", occlusion, "the score's drop when a sliding window is hidden (Zeiler & "
                            "Fergus 2014)", OcclusionOptions)).function
