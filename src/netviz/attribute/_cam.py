"""Class-activation maps: what every CAM method shares (the role of pytorch-grad-cam's base_cam.py).

A CAM method reads one layer's output A (N, K, h, w) and, for most, the gradient of the score F
with respect to it, and returns weights: one per channel (N, K) or one per position (N, K, h, w),
or the map itself (N, h, w) for a method that is no weighted sum (EigenCAM).
The map is ReLU(sum_k w_k A_k) at the layer's resolution (Selvaraju et al. 2017), upsampled
bilinearly to the input. Each method is one small ``weigh`` function in its own file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netviz.attribute._common import Attribution, check_input, model_score, opening, used_batch_size
from netviz.attribute._registry import LayerOptions, Method, register
from netviz.errors import NetvizError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.registry import ModelSpec


@dataclass
class LayerReading:
    """What a CAM method sees for a batch of images (all on the model's device)."""

    model: nn.Module
    x: torch.Tensor  # (n, C, H, W) normalised inputs
    target: torch.Tensor  # (n,)
    score: str
    activations: torch.Tensor  # (n, K, h, w), detached
    gradients: torch.Tensor | None  # dF/dA (n, K, h, w), None for gradient-free methods
    batch_size: int | None  # for methods that run the model again (Score-CAM); None: measured


Weigh = Callable[[LayerReading], "torch.Tensor"]


def cam_layer(model: nn.Module, layer: str | int | None, input_shape: Sequence[int],
              notes: list[str] | None = None) -> str:
    """The dotted name of ``layer`` (a name or number), or the last layer with a spatial output (in a
    detector with a ``backbone``, the backbone's: its region proposals carry no gradient)."""
    from netviz.detection import is_detector
    from netviz.layers import last_spatial_layer, resolve_layer

    if layer is not None:
        return resolve_layer(model, layer)
    detector = is_detector(model)
    within = "backbone." if detector and hasattr(model, "backbone") else ""
    return last_spatial_layer(model, input_shape, notes, within, maps_only=detector)


def read_layer(model: nn.Module, x: torch.Tensor, target: torch.Tensor, layer: str, score: str,
               gradients: bool, batch_size: int | None) -> LayerReading:
    """One forward pass (and backward, for gradients) recording ``layer``'s output."""
    import torch

    from netviz.layers import capture_activations, layer_grid

    x = x.detach().requires_grad_(True)  # activations need a graph even if the weights are frozen
    with torch.enable_grad(), capture_activations(model, [layer], detach=False, maps=False) as store:
        f = model_score(model, x, target, score)
    if layer not in store:
        raise NetvizError(f"layer {layer} produced no tensor output: pick another --layer")
    out = store[layer]  # as the layer gives it: the gradient is taken there, then both read as maps
    grid = layer_grid(model, out.shape[1:], x.shape[-2:])
    if grid is None or grid.height * grid.width < 1:
        raise NetvizError(f"layer {layer} has no spatial output (it gives {tuple(out.shape[1:])} per "
                          "image): class-activation maps need channels x height x width or tokens; pass "
                          "a convolutional --layer (see `netviz layers`), or say --reshape")
    grads = None
    if gradients:
        (grad,) = torch.autograd.grad(f.sum(), out, allow_unused=True)
        if grad is None:
            raise NetvizError(f"layer {layer} does not reach the score (its output has no gradient): pick a "
                              "--layer before the head (see `netviz layers`)")
        grads = grid.to_map(grad.detach())
    return LayerReading(model, x.detach(), target, score, grid.to_map(out.detach()).float(), grads, batch_size)


def class_activation_maps(model: nn.Module, x: torch.Tensor,
                          target: int | Sequence[int] | torch.Tensor | None, *, method: str,
                          weigh: Weigh, gradients: bool = True, layer: str | int | None = None,
                          score: str = "logit", batch_size: int | None = None,
                          quiet: bool = True) -> Attribution:
    """The maps of ``weigh`` for every image: ``.maps`` (N, 1, h, w) ReLU'd, ``.attributions``
    upsampled bilinearly to the input (the same map in every channel)."""
    import torch
    from torch.nn import functional as F

    x = check_input(x)
    name = cam_layer(model, layer, x.shape[1:])
    with opening(model, x, target, score, batch_size) as o:

        def cam(xb: torch.Tensor, tb: torch.Tensor) -> torch.Tensor:
            reading = read_layer(model, xb, tb, name, score, gradients, o.batch_size)
            w = weigh(reading)
            if w.ndim == 3:  # the map itself
                return torch.relu(w[:, None])
            w = w[:, :, None, None] if w.ndim == 2 else w
            return torch.relu((w * reading.activations).sum(1, keepdim=True))

        cams = o.each(cam, quiet, method)
    up = F.interpolate(cams, size=tuple(x.shape[2:]), mode="bilinear", align_corners=False)
    return Attribution(up.expand(-1, x.shape[1], -1, -1).contiguous(), method, o.target, score,
                       score_input=o.score_input, maps=cams, layer=name,
                       settings={"layer": name, "batch_size": used_batch_size(model, x, method, o.batch_size)})


def cam_method(name: str, weigh: Weigh, summary: str, *, gradients: bool = True) -> Callable[..., Attribution]:
    """Register the CAM method ``name`` that weighs a layer's channels with ``weigh``; returns its
    function ``f(model, x, target=None, layer=None, *, score, batch_size, spec, quiet)``."""

    def cam(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None,
            layer: str | int | None = None, *, score: str = "logit", batch_size: int | None = None,
            spec: ModelSpec | None = None, quiet: bool = True) -> Attribution:
        return class_activation_maps(model, x, target, method=name, weigh=weigh, gradients=gradients,
                                     layer=layer, score=score, batch_size=batch_size, quiet=quiet)

    cam.__doc__ = (f"{summary}, of ``layer`` (default: the last layer with a spatial output): "
                   "``.maps`` (N, 1, h, w), ReLU'd, and ``.attributions`` upsampled to the input.")
    return register(Method(name, cam, summary, LayerOptions, signed=False, layer=True)).function
