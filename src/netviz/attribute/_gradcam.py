"""Grad-CAM (Selvaraju et al. 2017): each channel weighted by its gradient averaged over positions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from netviz.attribute._cam import LayerReading, cam_method

if TYPE_CHECKING:
    import torch



def weigh(r: LayerReading) -> torch.Tensor:
    return r.gradients.mean((2, 3))


grad_cam = cam_method("gradcam", weigh, "Grad-CAM: "
                      "a layer's channels weighted by their mean gradient (Selvaraju et al. 2017)")
