"""EigenCAM (Muhammad & Yeasin 2020): the first principal component of a layer's activations.

At each position of the layer the channels form a vector; the vectors, centred, are projected on
their first right singular vector (pytorch-grad-cam's ``get_2d_projection``), and the projection,
ReLU'd, is the map. No gradient and no class: it shows what the layer responds to most, which is
why it is used on detectors (YOLO) whose outputs have no gradient-friendly score. The singular
vector's sign is arbitrary; it is taken so that the map correlates positively with the layer's
mean activation (the component points where the layer is active).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from netviz.attribute._cam import LayerReading, cam_method

if TYPE_CHECKING:
    import torch


def project(r: LayerReading) -> torch.Tensor:
    """(n, h, w): each image's activations projected on their first principal component."""
    import torch

    a = torch.nan_to_num(r.activations.double())
    n, k, h, w = a.shape
    flat = a.flatten(2).transpose(1, 2)  # (n, h*w, k): one vector of channels per position
    centred = flat - flat.mean(1, keepdim=True)
    v = torch.linalg.svd(centred, full_matrices=False).Vh[:, 0]  # (n, k)
    projection = (centred @ v[:, :, None])[..., 0]  # (n, h*w)
    mean = flat.mean(2)
    sign = torch.sign(((projection - projection.mean(1, keepdim=True)) * (mean - mean.mean(1, keepdim=True))).sum(1))
    sign[sign == 0] = 1
    return (projection * sign[:, None]).view(n, h, w).to(r.activations.dtype)


eigen_cam = cam_method("eigencam", project, "EigenCAM: the first principal component of a layer's activations, "
                       "class-agnostic, no gradient (Muhammad & Yeasin 2020)", gradients=False)
