"""LayerCAM (Jiang et al. 2021): every position weighted by its own positive gradient."""

from __future__ import annotations

from typing import TYPE_CHECKING

from netviz.attribute._cam import LayerReading, cam_method

if TYPE_CHECKING:
    import torch



def weigh(r: LayerReading) -> torch.Tensor:
    import torch

    return torch.relu(r.gradients)  # spatial weights (N, K, h, w)


layer_cam = cam_method("layercam", weigh, "LayerCAM: "
                       "each position weighted by its positive gradient (Jiang et al. 2021)")
