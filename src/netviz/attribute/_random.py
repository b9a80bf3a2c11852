"""A random map: the control every method must beat in `netviz evaluate`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from netviz.attribute._common import Attribution, check_input, eval_mode, resolve_target, seeded_uniform
from netviz.attribute._registry import Method, SeededOptions, register

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.registry import ModelSpec


def random_map(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None,
               *, seed: int = 0, offset: int = 0, score: str = "logit", batch_size: int | None = None,
               spec: ModelSpec | None = None, quiet: bool = True) -> Attribution:
    """Uniform noise in [0, 1) with the shape of ``x``, from a generator seeded with ``seed``: it
    says nothing about the model (its sanity correlation is 1: randomising layers cannot move it)."""
    x = check_input(x)
    with eval_mode(model):
        t, f_x = resolve_target(model, x, target, score)  # batch_size: every method takes it; no use here
    noise = seeded_uniform(x.shape, seed, offset)
    return Attribution(noise, "random", t, score, score_input=f_x, settings={"seed": seed})


random_map = register(Method("random", random_map, "a random map from --seed: the control for `netviz evaluate`",
                             SeededOptions, signed=False)).function
