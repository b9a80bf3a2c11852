"""Guided backpropagation (Springenberg et al. 2014): the input gradient where every ReLU passes
back only positive gradients, and only where its input was positive."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

from netviz.attribute._common import Attribution, plain_gradients
from netviz.attribute._registry import Method, register
from netviz.layers import outputs_replaced

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


def guided_relus(model: nn.Module) -> contextlib.AbstractContextManager[int]:
    """Inside the block every ``nn.ReLU`` of ``model`` back-propagates the guided way (forward
    values unchanged); yields how many. A functional ``F.relu`` in a forward is left as it is."""
    from torch import nn

    fn = _guided_relu()
    return outputs_replaced(model, (nn.ReLU,), lambda module, z: fn.apply(z))


def guided_backprop(model: nn.Module, x: torch.Tensor,
                    target: int | Sequence[int] | torch.Tensor | None = None, *, score: str = "logit",
                    batch_size: int | None = None, spec: ModelSpec | None = None,
                    quiet: bool = True) -> Attribution:
    """Guided backpropagation of the score of ``target``; like Captum's ``GuidedBackprop``."""
    with guided_relus(model):
        _, grad, t, f_x = plain_gradients(model, x, target, score, batch_size, quiet,
                                          desc="guided backprop")
    return Attribution(grad, "guided-backprop", t, score, score_input=f_x)


register(Method("guided-backprop", guided_backprop, "gradient through ReLUs that pass only positive "
                "signals (Springenberg et al. 2014)"))
