"""Guided Grad-CAM (Selvaraju et al. 2017): guided backpropagation times the upsampled Grad-CAM."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from netviz.attribute._common import Attribution
from netviz.attribute._gradcam import grad_cam
from netviz.attribute._guided import guided_backprop
from netviz.attribute._registry import LayerOptions, Method, register

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.registry import ModelSpec


def guided_grad_cam(model: nn.Module, x: torch.Tensor,
                    target: int | Sequence[int] | torch.Tensor | None = None,
                    layer: str | int | None = None, *, score: str = "logit",
                    batch_size: int | None = None, spec: ModelSpec | None = None,
                    quiet: bool = True) -> Attribution:
    """Guided backprop x Grad-CAM (bilinear to the input); ``.maps`` are Grad-CAM's."""
    cam = grad_cam(model, x, target, layer, score=score, batch_size=batch_size, quiet=quiet)
    guided = guided_backprop(model, x, cam.target, score=score, batch_size=batch_size, quiet=quiet)
    return Attribution(guided.attributions * cam.attributions, "guided-gradcam", cam.target, score,
                       score_input=cam.score_input, maps=cam.maps, layer=cam.layer,
                       settings=dict(cam.settings))


guided_grad_cam = register(Method("guided-gradcam", guided_grad_cam, "guided backprop times Grad-CAM (Selvaraju et al. "
                                  "2017)", LayerOptions, layer=True)).function
