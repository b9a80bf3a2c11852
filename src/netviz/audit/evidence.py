"""Whether a cluster relies on something other than its class: its region, its pattern, and the tests.

- ``region``: the box where the cluster's mean attribution stands out most against a reference
  (the rest of its class, or the other classes when the class is one cluster): the connected area
  around the peak of the positive difference, above half the peak.
- the pattern: the members' pixels in the region against their per-pixel median; a member carries
  the pattern when it is within :data:`PATTERN_TOLERANCE` of it (mean absolute difference of
  pixels in [0, 1]); the share of other classes' images that carry it too.
- ``transfer_rate``: the share of correctly classified images of other classes that become this
  class when the pattern is pasted into the region.
- ``masked_drop``: how much this class's probability falls, on average, over the carriers when the
  region is replaced by the baseline (black).

A cluster is flagged only on all of this evidence: a small region (at most
:data:`MAX_REGION_SHARE` of the image) where its attribution concentrates, holding a pattern that
most of the cluster carries and the rest of the data lacks (a natural class has no pixel-identical
patch in most of its images that other classes lack), which the model relies on: alone it turns
most images of other classes into this class (a backdoor trigger), or blacking it out lowers this
class's probability by at least :data:`MIN_MASKED_DROP` (a spurious mark learnt beside the digit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from netviz.heads import head_of

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.registry import ModelSpec

PATTERN_TOLERANCE = 0.12
MAX_REGION_SHARE = 0.125
MIN_PATTERN_SHARE = 0.5  # of the cluster
MAX_ELSEWHERE = 0.02  # of the other classes' images
MIN_TRANSFER = 0.5
MIN_MASKED_DROP = 0.05
SAMPLE = 256  # images pasted into, and carriers masked


@dataclass
class Evidence:
    region: list[int]  # [y0, x0, y1, x1] in input pixels, the end exclusive (as a slice)
    carriers: torch.Tensor  # bool per image of the class: carries the cluster's pattern
    pattern_share: float  # of the cluster's members
    elsewhere: float  # of the other classes' images
    transfer_rate: float
    masked_drop: float
    flagged: bool
    reason: str


def region(difference: torch.Tensor, size: tuple[int, int]) -> list[int]:
    """The box around the peak of ``difference`` (h, w) upsampled to ``size``: the connected
    area of the smoothed positive difference above half its peak."""
    import torch
    from torch.nn import functional as F

    d = F.interpolate(difference.float().clamp(min=0)[None, None], size=size, mode="bilinear",
                      align_corners=False)
    d = F.avg_pool2d(d, 3, stride=1, padding=1, count_include_pad=False)[0, 0]
    peak = int(d.argmax())
    above = d >= 0.5 * d.flatten()[peak]
    grown = torch.zeros_like(above)
    grown.view(-1)[peak] = True
    while True:  # the connected part of ``above`` that holds the peak
        wider = F.max_pool2d(grown.float()[None, None], 3, stride=1, padding=1)[0, 0].bool() & above
        if torch.equal(wider, grown):
            break
        grown = wider
    ys, xs = torch.nonzero(grown, as_tuple=True)
    return [int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1]


def _patches(images: torch.Tensor, box: list[int]) -> torch.Tensor:
    y0, x0, y1, x1 = box
    return images[:, :, y0:y1, x0:x1].float() / 255.0


def carrying(images: torch.Tensor, pattern: torch.Tensor, box: list[int]) -> torch.Tensor:
    """Which of ``images`` (uint8) hold ``pattern`` (pixels in [0, 1]) in ``box``."""
    if len(images) == 0:
        return images.new_zeros(0, dtype=bool)
    return (_patches(images, box) - pattern).abs().mean((1, 2, 3)) < PATTERN_TOLERANCE


def probabilities(model: nn.Module, spec: ModelSpec, images: torch.Tensor) -> torch.Tensor:
    """Softmax probabilities for uint8 images, in batches, without gradients."""
    import torch

    from netviz.batching import batches
    from netviz.data import normalise
    from netviz.device import model_device

    dev = model_device(model)
    with torch.no_grad():
        return torch.cat([head_of(model).probabilities(model(normalise(images[s], spec, dev)).float()).cpu()
                          for s in batches(len(images), model, spec.input_shape, "probabilities", gradients=False)]
                         ) if len(images) else torch.zeros(0, spec.num_classes)


def weigh(model: nn.Module, spec: ModelSpec, klass: int, members: torch.Tensor, class_images: torch.Tensor,
          others: torch.Tensor, box: list[int], generator: torch.Generator) -> Evidence:
    """The evidence for the cluster ``members`` (uint8 images) of class ``klass`` in ``box``;
    ``class_images`` are all the class's images, ``others`` correctly classified images of other
    classes."""
    import torch

    h, w = spec.input_shape[1:]
    y0, x0, y1, x1 = box
    pattern = _patches(members, box).median(0).values
    share = float(carrying(members, pattern, box).float().mean())
    carriers = carrying(class_images, pattern, box)
    elsewhere = float(carrying(others, pattern, box).float().mean()) if len(others) else 0.0
    # paste the pattern onto images of other classes
    pick = torch.randperm(len(others), generator=generator)[:SAMPLE]
    pasted = others[pick].clone()
    pasted[:, :, y0:y1, x0:x1] = (pattern * 255.0).round().to(torch.uint8)
    probs = probabilities(model, spec, pasted)
    transfer = float((probs.argmax(1) == klass).float().mean()) if len(pasted) else 0.0
    # mask the region of the carriers with the baseline
    held = class_images[carriers][:SAMPLE]
    before = probabilities(model, spec, held)[:, klass] if len(held) else torch.zeros(0)
    masked = held.clone()
    masked[:, :, y0:y1, x0:x1] = 0  # the black baseline: pixel 0
    after = probabilities(model, spec, masked)[:, klass] if len(held) else torch.zeros(0)
    drop = float((before - after).mean()) if len(held) else 0.0
    small = (y1 - y0) * (x1 - x0) <= MAX_REGION_SHARE * h * w
    pattern_found = small and share >= MIN_PATTERN_SHARE and elsewhere <= MAX_ELSEWHERE
    relied_on = transfer >= MIN_TRANSFER or drop >= MIN_MASKED_DROP
    flagged = pattern_found and relied_on
    reason = (f"{int(carriers.sum())} of its images share a pattern in rows {y0}-{y1 - 1}, columns {x0}-{x1 - 1} "
              f"that {elsewhere:.1%} of the other classes' images have, and the model relies on it: pasted there "
              f"it turns {transfer:.0%} of other classes' images into this class, blacked out it lowers this "
              f"class's probability by {drop:.2f}") if flagged else ""
    return Evidence(box, carriers, share, elsewhere, transfer, drop, flagged, reason)
