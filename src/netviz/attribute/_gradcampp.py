"""Grad-CAM++ (Chattopadhyay et al. 2018): positive gradients weighted per position (eq. 19)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from netviz.attribute._cam import CAM_OPTIONS, LayerReading, class_activation_maps
from netviz.attribute._registry import Method, register

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.attribute._common import Attribution
    from netviz.registry import ModelSpec

EPS = 1e-6  # as pytorch-grad-cam: keeps alpha finite where the denominator vanishes


def weigh(r: LayerReading) -> torch.Tensor:
    import torch

    g2 = r.gradients.pow(2)
    a_sum = r.activations.sum((2, 3), keepdim=True)
    alpha = g2 / (2 * g2 + a_sum * g2 * r.gradients + EPS)
    alpha = torch.where(r.gradients != 0, alpha, torch.zeros_like(alpha))
    return (alpha * torch.relu(r.gradients)).sum((2, 3))


def grad_cam_plus_plus(model: nn.Module, x: torch.Tensor,
                       target: int | Sequence[int] | torch.Tensor | None = None,
                       layer: str | int | None = None, *, score: str = "logit",
                       batch_size: int | None = None, spec: ModelSpec | None = None,
                       quiet: bool = True) -> Attribution:
    """Grad-CAM++ of ``layer``: ``.maps`` (N, 1, h, w) and ``.attributions`` as :func:`grad_cam`."""
    return class_activation_maps(model, x, target, method="gradcam++", weigh=weigh, layer=layer,
                                 score=score, batch_size=batch_size, quiet=quiet)


register(Method("gradcam++", grad_cam_plus_plus, "Grad-CAM++: positive gradients weighted per "
                "position (Chattopadhyay et al. 2018)", CAM_OPTIONS, signed=False, layer=True))
