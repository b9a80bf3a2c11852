"""D-RISE (Petsiuk et al. CVPR 2021), RISE (Petsiuk et al. BMVC 2018) for any model: random masks,
each scored by what the model says of the masked image; a pixel's saliency is the mean of the
scores of the masks that keep it, less the mean score: sum_i (w_i - mean w) M_i / (N p). The
papers' map, sum_i w_i M_i / (N p), is this plus mean(w) times the mean mask over p, a floor that
is the same everywhere up to sampling noise: taking it off leaves the ranking of the pixels and
lets the map be drawn (positive: keeping the pixel raises the score; negative: lowers it).

A mask is a coarse grid of ``cells`` x ``cells`` cells, each kept with probability ``keep``,
upsampled bilinearly and shifted by a random fraction of a cell (so the masks are smooth and
their edges fall anywhere). The masked image is ``baseline + (x - baseline) * mask``. No gradient:
it explains any detector, whatever its post-processing. For a detection the score is D-RISE's
similarity of the masked image's detections to it (:func:`netviz.detection.drise_similarity`);
for a classifier it is the target's ``--score`` (RISE: use ``--score prob``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netviz.attribute._common import Attribution, check_input, make_baseline, opening, score_of
from netviz.attribute._registry import BaselineOptions, Method, SeededOptions, option, register
from netviz.errors import NetvizError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.registry import ModelSpec


@dataclass(frozen=True)
class DriseOptions(BaselineOptions, SeededOptions):
    masks: int = option(500, "drise: random masks per image (more: a smoother map, one forward pass each).",
                        "count")
    cells: int = option(16, "drise: the masks' grid, cells a side (16 for detections as D-RISE, 7 for RISE's "
                        "classifiers).", "count")
    keep: float = option(0.5, "drise: the probability that a cell of a mask is kept.", "float")

    def check(self) -> None:
        super().check()
        if not 0 < self.keep < 1:
            raise NetvizError(f"--keep {self.keep}: the probability a cell is kept is between 0 and 1")


def random_masks(count: int, height: int, width: int, cells: int, keep: float,
                 generator: torch.Generator) -> torch.Tensor:
    """(count, 1, H, W) RISE masks in [0, 1]: a ``cells`` x ``cells`` grid of kept cells upsampled
    bilinearly to one cell more than the image, then cropped at a random shift within a cell."""
    import torch
    from torch.nn import functional as F

    if not 1 <= cells <= min(height, width):
        raise NetvizError(f"--cells {cells} does not fit the {width}x{height} image: use 1 to {min(height, width)}")
    ch, cw = math.ceil(height / cells), math.ceil(width / cells)
    grid = (torch.rand(count, 1, cells, cells, generator=generator) < keep).float()
    up = F.interpolate(grid, size=((cells + 1) * ch, (cells + 1) * cw), mode="bilinear", align_corners=False)
    dy = torch.randint(0, ch, (count,), generator=generator)
    dx = torch.randint(0, cw, (count,), generator=generator)
    rows = (dy[:, None] + torch.arange(height)[None, :])[:, None, :, None].expand(-1, 1, -1, up.shape[3])
    picked = up.gather(2, rows)
    cols = (dx[:, None] + torch.arange(width)[None, :])[:, None, None, :].expand(-1, 1, height, -1)
    return picked.gather(3, cols).clamp_(0, 1)  # bilinear weights may round past 1


def drise(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None,
          masks: int = DriseOptions.masks, cells: int = DriseOptions.cells, keep: float = DriseOptions.keep,
          baseline: str | float | torch.Tensor | None = None, *, score: str = "logit",
          batch_size: int | None = None, spec: ModelSpec | None = None, seed: int = 0, offset: int = 0,
          quiet: bool = True) -> Attribution:
    """D-RISE/RISE saliency with the shape of ``x`` (the same map in every channel): per image,
    sum_i (score_i - mean score) * mask_i / (masks * keep), over ``masks`` random masks drawn from
    ``seed`` (image ``k`` of a selection draws the same masks whatever the share it is in).

    Consecutive rows of one image and baseline (a detector's detections of an image, each a row
    with its own target) share their masks and forward passes: a pass scores every target of the
    image at once, so explaining five detections costs the passes of one."""
    import torch

    from netviz.heads import head_of
    from netviz.progress import progress

    x = check_input(x)
    n, _, height, width = x.shape
    b = make_baseline(x, baseline, spec=spec, seed=seed, offset=offset)
    with opening(model, x, target, score, batch_size) as o, torch.no_grad():
        dev = o.device
        activation = head_of(model).activation
        maps = torch.zeros(n, 1, height, width)
        groups = _same_image(x, b)
        with progress(total=len(groups) * int(masks), quiet=quiet, desc="drise", unit="mask") as bar:
            for rows in groups:
                i = rows.start
                g = torch.Generator().manual_seed(seed * 1_000_003 + offset + i)
                m = random_masks(int(masks), height, width, int(cells), float(keep), g)
                xi, bi, ti = x[i:i + 1].to(dev), b[i:i + 1].to(dev), o.target[rows].to(dev)
                scores = torch.empty(int(masks), len(rows))
                for which in o.passes(int(masks), "drise", gradients=False):
                    mb = m[which].to(dev)
                    logits = model(bi + (xi - bi) * mb)
                    for k in range(len(rows)):  # every row's target read from the same passes
                        scores[which, k] = score_of(logits, ti[k:k + 1].expand(len(mb), *ti.shape[1:]), score,
                                                    activation).float().cpu()
                    bar.update(len(mb))
                weights = scores - scores.double().mean(0).float()
                for k, row in enumerate(rows):
                    maps[row] = (weights[:, k].view(-1, 1, 1, 1) * m).sum(0)
        maps /= int(masks) * float(keep)
    return Attribution(maps.expand(-1, x.shape[1], -1, -1).contiguous(), "drise", o.target, score,
                       score_input=o.score_input,
                       settings={"masks": int(masks), "cells": int(cells), "keep": float(keep), "seed": seed})


def _same_image(x: torch.Tensor, baseline: torch.Tensor) -> list[range]:
    """``range(len(x))`` cut into runs of consecutive rows holding the same image and baseline."""
    import torch

    groups: list[range] = []
    start = 0
    for i in range(1, len(x) + 1):
        if i == len(x) or not (torch.equal(x[i], x[start]) and torch.equal(baseline[i], baseline[start])):
            groups.append(range(start, i))
            start = i
    return groups


drise = register(Method("drise", drise, "D-RISE / RISE: random masks weighted by the score of what they keep; "
                        "for a detection, D-RISE's similarity (Petsiuk et al. 2018, 2021)", DriseOptions,
                        detection_similarity="drise")).function
