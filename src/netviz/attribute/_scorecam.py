"""Score-CAM (Wang et al. 2020): channels weighted by the score of the input masked by each."""

from __future__ import annotations

from typing import TYPE_CHECKING

from netviz.attribute._cam import LayerReading, cam_method
from netviz.attribute._common import fast_inference, model_score, passes, score_of
from netviz.heads import head_of

if TYPE_CHECKING:
    import torch



def weigh(r: LayerReading) -> torch.Tensor:
    """softmax over channels of F(x * mask_k), mask_k = channel k upsampled and scaled to [0, 1].

    The masked inputs go through the model ``batch_size`` at a time, but only those that differ: a
    constant channel (all zero after a ReLU, common in late layers) scales to the all-zero mask, so
    every such channel of every image gives the all-zero input, scored once per target."""
    import torch
    from torch.nn import functional as F

    n, k = r.activations.shape[:2]
    masks = F.interpolate(r.activations, size=tuple(r.x.shape[2:]), mode="bilinear", align_corners=True)
    flat = masks.flatten(2)
    lo, hi = flat.min(2).values[..., None, None], flat.max(2).values[..., None, None]
    masks = (masks - lo) / (hi - lo + 1e-8)
    constant = (hi == lo).flatten()  # (n * k,): their masks are exactly 0
    owner = torch.arange(n, device=r.x.device).repeat_interleave(k)
    model, layout = fast_inference(r.model, r.x)
    scores = torch.empty(n * k, device=r.x.device)
    varying = torch.nonzero(~constant)[:, 0]
    with torch.inference_mode():
        for which in passes(r.model, r.x, len(varying), "scorecam", r.batch_size, gradients=False):
            pairs = varying[which]
            who = owner[pairs]
            masked = (r.x[who] * masks.flatten(0, 1)[pairs, None]).contiguous(memory_format=layout)
            scores[pairs] = model_score(model, masked, r.target[who], r.score).float()
        if bool(constant.any()):
            zero = torch.zeros_like(r.x[:1]).contiguous(memory_format=layout)  # what x * 0 is, for any image
            logits = model(zero).expand(n, -1)  # one pass; each image's target read from it
            scores[constant] = score_of(logits, r.target, r.score, head_of(r.model).activation).float()[owner[constant]]
    return torch.softmax(scores.view(n, k), dim=1)


score_cam = cam_method("scorecam", weigh, "Score-CAM: "
                       "channels weighted by the score of the input they mask (Wang et al. 2020)", gradients=False)
