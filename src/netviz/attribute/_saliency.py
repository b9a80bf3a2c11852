"""Saliency (Simonyan, Vedaldi, Zisserman 2013): |dF/dx| per input value; and the signed gradient."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from netviz.attribute._common import Attribution, plain_gradients
from netviz.attribute._registry import Method, register

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.registry import ModelSpec


def gradient(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None
             = None, *, score: str = "logit", batch_size: int | None = None,
             spec: ModelSpec | None = None, quiet: bool = True) -> Attribution:
    """The signed gradient dF/dx of the score of ``target`` (None: the predicted class)."""
    _, grad, t, f_x = plain_gradients(model, x, target, score, batch_size, quiet)
    return Attribution(grad, "gradient", t, score, score_input=f_x)


def saliency(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None
             = None, *, score: str = "logit", batch_size: int | None = None,
             spec: ModelSpec | None = None, quiet: bool = True) -> Attribution:
    """Saliency: |dF/dx| per input value; like Captum's ``Saliency``."""
    _, grad, t, f_x = plain_gradients(model, x, target, score, batch_size, quiet)
    return Attribution(grad.abs(), "saliency", t, score, score_input=f_x)


saliency = register(Method("saliency", saliency, "|gradient| of the score (Simonyan et al. 2013)", signed=False,
                           from_gradient=lambda x, grad: grad.abs())).function
