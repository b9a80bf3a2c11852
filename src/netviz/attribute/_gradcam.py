"""Grad-CAM (Selvaraju et al. 2017): each channel weighted by its gradient averaged over positions."""

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


def weigh(r: LayerReading) -> torch.Tensor:
    return r.gradients.mean((2, 3))


def grad_cam(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None,
             layer: str | int | None = None, *, score: str = "logit", batch_size: int | None = None,
             spec: ModelSpec | None = None, quiet: bool = True) -> Attribution:
    """Grad-CAM of ``layer`` (default: the last layer with a spatial output): ``.maps`` (N, 1, h, w),
    ReLU'd, and ``.attributions`` upsampled to the input."""
    return class_activation_maps(model, x, target, method="gradcam", weigh=weigh, layer=layer,
                                 score=score, batch_size=batch_size, quiet=quiet)


register(Method("gradcam", grad_cam, "Grad-CAM: a layer's channels weighted by their mean gradient "
                "(Selvaraju et al. 2017)", CAM_OPTIONS, signed=False, layer=True))
