"""Objectives: what an image should make the network do, one score per image (higher is better).

Small and composable, as in Lucent: ``channel("conv3", [5]) - 0.1 * class_logit([2])``.
Each term reads one layer's output (``OUTPUT`` for the model's logits); image ``i`` of the batch
has its own target, and the scores of the images never mix, so batching does not change them.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netviz.errors import NetvizError
from netviz.layers import outputs_replaced

if TYPE_CHECKING:
    import torch
    from torch import nn

OUTPUT = "<output>"  # the key of the model's output in an activations dict

Score = Callable[["torch.Tensor"], "torch.Tensor"]  # activations (N, ...) -> scores (N,)


@dataclass(frozen=True)
class Objective:
    terms: tuple[tuple[str, float, Score], ...]  # (layer or OUTPUT, weight, score function)
    description: str

    @property
    def layers(self) -> list[str]:
        """The inner layers the objective reads (without OUTPUT), in first-use order."""
        return list(dict.fromkeys(layer for layer, _, _ in self.terms if layer != OUTPUT))

    @property
    def needs_output(self) -> bool:
        return any(layer == OUTPUT for layer, _, _ in self.terms)

    def __call__(self, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        total = None
        for layer, weight, score in self.terms:
            value = weight * score(acts[layer])
            total = value if total is None else total + value
        return total

    def __add__(self, other: Objective) -> Objective:
        return Objective(self.terms + other.terms, f"{self.description} + {other.description}")

    def __mul__(self, weight: float) -> Objective:
        return Objective(tuple((lay, w * weight, f) for lay, w, f in self.terms),
                         f"{weight:g} * ({self.description})")

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return self * -1.0

    def __sub__(self, other: Objective) -> Objective:
        return self + (-other)


def _index(targets: Sequence[int], device: torch.device) -> torch.Tensor:
    import torch

    return torch.as_tensor(list(targets), dtype=torch.long, device=device)


def _dead_floor(picked: torch.Tensor) -> torch.Tensor:
    """Zero in value; gives a gradient of 1 to a target that is exactly 0 everywhere.

    The square of a dead ReLU output has no gradient at all; with this floor (and
    :func:`redirected_relus`) the optimiser can still raise it, as Lucid does.
    """
    total = picked.sum(1)
    dead = (picked == 0).all(1).to(total.dtype)
    return dead * (total - total.detach())


def class_logprob(targets: Sequence[int], weight: float = 10.0) -> Objective:
    """The 2019 MNIST post's ``-(-w * logp[target] + sum(logp))``: the target up, every class down."""
    def score(logits: torch.Tensor) -> torch.Tensor:
        import torch

        logp = torch.log_softmax(logits.float(), dim=1)
        rows = torch.arange(logp.shape[0], device=logp.device)
        return weight * logp[rows, _index(targets, logp.device)] - logp.sum(1)

    return Objective(((OUTPUT, 1.0, score),), f"{weight:g} * logp[target] - sum(logp)")


def class_logit(targets: Sequence[int]) -> Objective:
    """The raw logit of each image's target class."""
    def score(logits: torch.Tensor) -> torch.Tensor:
        import torch

        rows = torch.arange(logits.shape[0], device=logits.device)
        return logits.float()[rows, _index(targets, logits.device)]

    return Objective(((OUTPUT, 1.0, score),), "logit[target]")


def channel(layer: str, channels: Sequence[int]) -> Objective:
    """Total squared activation of each image's channel (a unit, for a flat layer)."""
    def score(act: torch.Tensor) -> torch.Tensor:
        import torch

        rows = torch.arange(act.shape[0], device=act.device)
        picked = act[rows, _index(channels, act.device)].float().reshape(act.shape[0], -1)
        return picked.pow(2).sum(1) + _dead_floor(picked)

    return Objective(((layer, 1.0, score),), f"sum({layer}[channel]^2)")


def neuron(layer: str, channels: Sequence[int], y: int, x: int) -> Objective:
    """Squared activation of one position (y, x) of each image's channel."""
    def score(act: torch.Tensor) -> torch.Tensor:
        import torch

        rows = torch.arange(act.shape[0], device=act.device)
        picked = act[rows, _index(channels, act.device), y, x].float()
        return picked.pow(2) + _dead_floor(picked[:, None])

    return Objective(((layer, 1.0, score),), f"{layer}[channel, {y}, {x}]^2")


def direction(layer: str, vectors: torch.Tensor) -> Objective:
    """Each image's activation along its own direction of the layer's channels (``vectors``: one
    row per image), summed over positions: a concept of `netviz concepts`, sum_p <A_p, w>."""
    def score(act: torch.Tensor) -> torch.Tensor:
        w = vectors.to(act.device, act.dtype)
        return (act * w.view(*w.shape, *([1] * (act.ndim - 2)))).flatten(1).sum(1).float()

    return Objective(((layer, 1.0, score),), f"sum_p <{layer}_p, w>")


def activations(model: nn.Module, x: torch.Tensor, objective: Objective,
                detach: bool = False) -> dict[str, torch.Tensor]:
    """The tensors ``objective`` reads, from as short a forward pass as possible.

    Hooks live only inside the layers.py context managers; with ``detach=False`` the tensors
    stay in the autograd graph.
    """
    import torch

    from netviz.layers import capture_activations, forward_to

    inner = objective.layers
    if not objective.needs_output:
        return forward_to(model, x, inner, detach=detach)
    with capture_activations(model, inner, detach=detach) as store:
        out = model(x)
    missing = [name for name in inner if name not in store]
    if missing:
        raise NetvizError(f"layer(s) {', '.join(missing)} produced no tensor output")
    logits = out  # the model's head (netviz.heads) has read the class scores out of it
    if not isinstance(logits, torch.Tensor):
        raise NetvizError("the model's output is not a tensor: cannot score classes")
    return {**store, OUTPUT: logits.detach() if detach else logits}


@functools.cache
def _redirected_relu():
    import torch

    class RedirectedReLU(torch.autograd.Function):
        """ReLU (or ReLU6) whose gradient, for an image where none gets through, still passes
        the part that raises a negative input (Lucid's redirected_relu_grad)."""

        @staticmethod
        def forward(ctx, z: torch.Tensor, upper: float | None) -> torch.Tensor:
            ctx.save_for_backward(z)
            ctx.upper = upper
            return z.clamp(0, upper)

        @staticmethod
        def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
            (z,) = ctx.saved_tensors
            inside = z > 0 if ctx.upper is None else (z > 0) & (z < ctx.upper)
            relu_grad = grad * inside
            # grad > 0 at z < 0 would push the input further down: never pass that part
            redirected = torch.where((z < 0) & (grad > 0), torch.zeros_like(grad), grad)
            blocked = relu_grad.flatten(1).abs().amax(1) == 0
            use = blocked.view(-1, *([1] * (grad.ndim - 1)))
            return torch.where(use, redirected, relu_grad), None

    return RedirectedReLU


def redirected_relus(model: nn.Module) -> contextlib.AbstractContextManager[int]:
    """Inside the block, every ``nn.ReLU`` / ``nn.ReLU6`` of ``model`` back-propagates as
    :func:`_redirected_relu` does (the forward values are unchanged). Yields how many modules.

    Only modules are redirected: a functional ``F.relu`` in a model's forward is left as is.
    """
    from torch import nn

    fn = _redirected_relu()
    return outputs_replaced(model, (nn.ReLU, nn.ReLU6),
                            lambda module, z: fn.apply(z, 6.0 if isinstance(module, nn.ReLU6) else None))
