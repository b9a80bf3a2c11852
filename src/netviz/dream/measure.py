"""What the model makes of a dream: measured on the pixels as the saved 8-bit PNG holds them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netviz.device import model_device
from netviz.dream.objectives import OUTPUT, Objective, activations
from netviz.heads import head_of
from netviz.layers import eval_mode

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.dream.loop import DreamResult
    from netviz.registry import ModelSpec

def saved_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] as the 8-bit PNG will hold them (uint8, rounded as the PNG writer does)."""
    import torch

    return (pixels.clamp(0, 1) * 255.0 + 0.5).floor().to(torch.uint8)


def saved_probability(model: nn.Module, spec: ModelSpec, pixels: torch.Tensor,
                      classes: Sequence[int]) -> torch.Tensor:
    """p(class_i | image_i) as the model will see image i once saved as an 8-bit PNG (CPU)."""
    import torch

    from netviz.data import normalise

    with torch.no_grad():
        logits = model(normalise(saved_pixels(pixels), spec, pixels.device))
        probs = head_of(model).probabilities(logits.float())
    return probs[torch.arange(len(classes)), torch.as_tensor(list(classes), device=probs.device)].cpu()


@dataclass
class Measurement:
    """What the model makes of images: the objective, and class probabilities."""

    objective: list[float]
    probabilities: torch.Tensor  # (N, classes) softmax of the output

    def top(self, k: int = 3) -> list[list[tuple[int, float]]]:
        p, idx = self.probabilities.topk(min(k, self.probabilities.shape[1]), dim=1)
        return [[(int(i), float(v)) for i, v in zip(row_idx, row_p, strict=True)]
                for row_idx, row_p in zip(idx, p, strict=True)]


def _first_column(t: torch.Tensor) -> torch.Tensor:
    return t[:, 0]


def measure(model: nn.Module, spec: ModelSpec, objective: Objective, images: torch.Tensor
            ) -> Measurement:
    """Score images (uint8, or floats in [0, 1]; (N, C, H, W), one per target of ``objective``)."""
    import torch

    from netviz.data import normalise

    with eval_mode(model), torch.no_grad():
        x = normalise(images, spec, model_device(model))
        # the same (possibly truncated) pass as the optimisation: a module called twice
        # (torchvision ResNets reuse one ReLU) is read at its first call in both
        values = objective(activations(model, x, objective, detach=True)).float().cpu().tolist()
        logits = activations(model, x, Objective(((OUTPUT, 1.0, _first_column),), ""),
                             detach=True)[OUTPUT]
        probs = head_of(model).probabilities(logits.float()).cpu()
    return Measurement(values, probs)


def measure_result(model: nn.Module, spec: ModelSpec, result: DreamResult, images: torch.Tensor,
                   batch_size: int | None = None) -> Measurement:
    """:func:`measure` for the images of ``result`` (e.g. re-loaded from disk), in chunks."""
    import torch

    from netviz.batching import batches

    values: list[float] = []
    probs = []
    for which in batches(len(result.targets), model, spec.input_shape, "dream-measure", batch_size,
                         gradients=False):
        m = measure(model, spec, result.make_objective(result.targets[which]), images[which])
        values += m.objective
        probs.append(m.probabilities)
    return Measurement(values, torch.cat(probs))
