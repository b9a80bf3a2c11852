"""Input x gradient (Shrikumar et al. 2016): x * dF/dx, x in the normalised input space."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from netviz.attribute._common import Attribution, plain_gradients
from netviz.attribute._registry import Method, register

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.registry import ModelSpec


def input_x_gradient(model: nn.Module, x: torch.Tensor,
                     target: int | Sequence[int] | torch.Tensor | None = None, *,
                     score: str = "logit", batch_size: int | None = None,
                     spec: ModelSpec | None = None, quiet: bool = True) -> Attribution:
    """x * dF/dx, with x in the normalised input space (as Captum's ``InputXGradient``)."""
    x, grad, t, f_x = plain_gradients(model, x, target, score, batch_size, quiet)
    return Attribution(x * grad, "inputxgrad", t, score, score_input=f_x)


input_x_gradient = register(Method("inputxgrad", input_x_gradient, "input x gradient (Shrikumar et al. 2016)",
                                   from_gradient=lambda x, grad: x * grad)).function
