"""LayerCAM (Jiang et al. 2021): every position weighted by its own positive gradient."""

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
    import torch

    return torch.relu(r.gradients)  # spatial weights (N, K, h, w)


def layer_cam(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None,
              layer: str | int | None = None, *, score: str = "logit", batch_size: int | None = None,
              spec: ModelSpec | None = None, quiet: bool = True) -> Attribution:
    """LayerCAM of ``layer``: ``.maps`` (N, 1, h, w) and ``.attributions`` as :func:`grad_cam`."""
    return class_activation_maps(model, x, target, method="layercam", weigh=weigh, layer=layer,
                                 score=score, batch_size=batch_size, quiet=quiet)


register(Method("layercam", layer_cam, "LayerCAM: each position weighted by its positive gradient "
                "(Jiang et al. 2021)", CAM_OPTIONS, signed=False, layer=True))
