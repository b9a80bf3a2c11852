"""Guided backpropagation (Springenberg et al. 2014): the input gradient where every ReLU passes
back only positive gradients, and only where its input was positive."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from netviz.attribute._common import Attribution, plain_gradients
from netviz.attribute._registry import Method, register
from netviz.errors import NetvizError
from netviz.layers import outputs_replaced, plain_relus

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.registry import ModelSpec


@functools.cache
def _guided_relu():
    import torch

    class GuidedReLU(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z: torch.Tensor) -> torch.Tensor:
            ctx.save_for_backward(z)
            return z.clamp(min=0)

        @staticmethod
        def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
            (z,) = ctx.saved_tensors
            return grad * ((z > 0) & (grad > 0)).to(grad.dtype)

    return GuidedReLU


@contextlib.contextmanager
def guided_relus(model: nn.Module, sample: torch.Tensor | None = None) -> Iterator[int]:
    """Inside the block every ``nn.ReLU`` of ``model`` back-propagates the guided way (forward
    values unchanged); yields how many. Only modules can be swapped: with ``sample``, a model that
    also applies ReLUs as functions (``F.relu``) is refused, since its gradient would be partly
    plain under the guided name."""
    from torch import nn

    fn = _guided_relu()
    with outputs_replaced(model, (nn.ReLU,), lambda module, z: fn.apply(z)) as count:
        plain = plain_relus(model, sample) if sample is not None else 0
        if plain:
            raise NetvizError(f"guided backprop swaps the backward pass of nn.ReLU modules, but this model "
                              f"also applies {plain} ReLU(s) as functions (F.relu / torch.relu) that it cannot "
                              "reach: the map would not be guided; use saliency or gradcam, or write those "
                              "ReLUs as nn.ReLU modules")
        yield count


def guided_backprop(model: nn.Module, x: torch.Tensor,
                    target: int | Sequence[int] | torch.Tensor | None = None, *, score: str = "logit",
                    batch_size: int | None = None, spec: ModelSpec | None = None,
                    quiet: bool = True) -> Attribution:
    """Guided backpropagation of the score of ``target``; like Captum's ``GuidedBackprop``."""
    with guided_relus(model, x):
        _, grad, t, f_x = plain_gradients(model, x, target, score, batch_size, quiet,
                                          desc="guided backprop")
    return Attribution(grad, "guided-backprop", t, score, score_input=f_x)


guided_backprop = register(Method("guided-backprop", guided_backprop, "gradient through ReLUs that pass only positive "
                                  "signals (Springenberg et al. 2014)")).function
