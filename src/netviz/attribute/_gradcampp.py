"""Grad-CAM++ (Chattopadhyay et al. 2018): positive gradients weighted per position (eq. 19)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from netviz.attribute._cam import LayerReading, cam_method

if TYPE_CHECKING:
    import torch


EPS = 1e-6  # as pytorch-grad-cam: keeps alpha finite where the denominator vanishes


def weigh(r: LayerReading) -> torch.Tensor:
    import torch

    g2 = r.gradients.pow(2)
    a_sum = r.activations.sum((2, 3), keepdim=True)
    alpha = g2 / (2 * g2 + a_sum * g2 * r.gradients + EPS)
    alpha = torch.where(r.gradients != 0, alpha, torch.zeros_like(alpha))
    return (alpha * torch.relu(r.gradients)).sum((2, 3))


grad_cam_plus_plus = cam_method("gradcam++", weigh, "Grad-CAM++: "
                                "positive gradients weighted per position (Chattopadhyay et al. 2018)")
