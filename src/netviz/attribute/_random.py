"""A random map: the control every method must beat in `netviz evaluate`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from netviz.attribute._common import Attribution, opening, seeded_uniform
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
    with opening(model, x, target, score, batch_size) as o:
        noise = seeded_uniform(o.x.shape, seed, offset)
    return Attribution(noise, "random", o.target, score, score_input=o.score_input, settings={"seed": seed})


random_map = register(Method("random", random_map, "a random map from --seed: the control for `netviz evaluate`",
                             SeededOptions, signed=False)).function
