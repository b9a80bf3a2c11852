"""Score-CAM (Wang et al. 2020): channels weighted by the score of the input masked by each."""

from __future__ import annotations

from typing import TYPE_CHECKING

from netviz.attribute._cam import LayerReading, cam_method
from netviz.attribute._common import fast_format, score_of

if TYPE_CHECKING:
    import torch



def weigh(r: LayerReading) -> torch.Tensor:
    """softmax over channels of F(x * mask_k), mask_k = channel k upsampled and scaled to [0, 1].

    All n x K masked inputs go through the model ``batch_size`` at a time."""
    import torch
    from torch.nn import functional as F

    n, k = r.activations.shape[:2]
    masks = F.interpolate(r.activations, size=tuple(r.x.shape[2:]), mode="bilinear", align_corners=True)
    flat = masks.flatten(2)
    lo, hi = flat.min(2).values[..., None, None], flat.max(2).values[..., None, None]
    masks = (masks - lo) / (hi - lo + 1e-8)
    owner = torch.arange(n, device=r.x.device).repeat_interleave(k)
    layout = fast_format(r.model, r.x)
    scores = []
    with torch.inference_mode():
        for start in range(0, n * k, r.batch_size):
            who = owner[start:start + r.batch_size]
            m = masks.flatten(0, 1)[start:start + r.batch_size, None]
            masked = (r.x[who] * m).contiguous(memory_format=layout)
            scores.append(score_of(r.model(masked), r.target[who], r.score).float())
    return torch.softmax(torch.cat(scores).view(n, k), dim=1)


score_cam = cam_method("scorecam", weigh, "Score-CAM: "
                       "channels weighted by the score of the input they mask (Wang et al. 2020)", gradients=False)
