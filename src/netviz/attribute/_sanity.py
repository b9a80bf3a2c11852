"""The model-randomisation sanity check (Adebayo et al., "Sanity Checks for Saliency Maps", 2018).

Re-initialise the layers from the output down, one more at a time (cascading), recompute the
attribution after each, and compare it with the original by Spearman rank correlation. A method
that explains the *model* must change as the model is destroyed; a map that stays correlated is
mostly an edge detector of the input. Everything happens on a deep copy of the model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from netviz.attribute._common import Attribution, check_input, eval_mode, resolve_target
from netviz.errors import NetvizError, close_matches

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn


@dataclass
class SanityResult:
    """``layers[j]`` is the j-th layer re-initialised (top first), cumulatively.

    ``rank_correlation[j, i]``: Spearman correlation between image i's original map and its map
    with layers[:j+1] randomised, on |attribution| summed over channels (the absolute, as in the
    paper's main figures); ``signed_correlation`` the same on the signed sum. ``maps`` (L+1, N, H,
    W) are those channel-summed maps, the original first.
    """

    method: str
    layers: list[str]
    rank_correlation: torch.Tensor
    signed_correlation: torch.Tensor
    maps: torch.Tensor
    target: torch.Tensor
    settings: dict[str, Any] = field(default_factory=dict)


def _average_ranks(v: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 with ties sharing their average rank (as scipy.stats.rankdata - 1)."""
    import numpy as np

    _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + ends - 1) / 2.0)[inverse]


def spearman(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Spearman rank correlation of two equally sized arrays (nan when one is constant)."""
    import numpy as np

    ra = _average_ranks(np.asarray(a, dtype=np.float64).ravel())
    rb = _average_ranks(np.asarray(b, dtype=np.float64).ravel())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def parameter_layers(model: nn.Module) -> list[str]:
    """The numbered layers (modules holding parameters of their own), top (nearest the output) first."""
    from netviz.layers import weight_layers

    return weight_layers(model)[::-1]


def _reinitialise(module: nn.Module, seed: int) -> None:
    import torch

    cuda = sorted({p.device.index or 0 for p in module.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda), torch.no_grad():
        torch.manual_seed(seed)
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        else:  # no init of its own: fresh noise with each parameter's current spread
            for p in module.parameters(recurse=False):
                p.normal_(0.0, float(p.std()) if p.numel() > 1 else 1.0)


def model_randomisation(
    model: nn.Module,
    x: torch.Tensor,
    attribute: Callable[..., Attribution],
    target: int | Sequence[int] | torch.Tensor | None = None,
    layers: Sequence[str] | None = None,
    *,
    method_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    quiet: bool = True,
    original: Attribution | None = None,
    last_only: bool = False,
) -> SanityResult:
    """Cascading randomisation of ``layers`` (default: every layer with parameters, top first).

    ``attribute(model, x, target, **method_kwargs)`` is any method of :mod:`netviz.attribute`
    returning an :class:`Attribution`. The target is fixed to the original model's (its
    prediction when None), so every map explains the same class. ``seed`` seeds the
    re-initialisations. ``model`` itself is never modified. ``original``: the unrandomised
    model's result for ``x`` and ``target``, when the caller has it (saves computing it again).
    ``last_only``: one map, with every layer of ``layers`` re-initialised (the cascade's last
    step, the same weights: each layer's seed is its own), instead of one map per step.
    """
    import torch

    from netviz.progress import progress

    x = check_input(x)
    kwargs = dict(method_kwargs or {}, quiet=True)
    with eval_mode(model):
        target, _ = resolve_target(model, x, target)
    work = copy.deepcopy(model).eval()
    names = parameter_layers(work)
    if layers is not None:
        layers = list(layers)
        for name in layers:
            if name not in names:
                raise NetvizError(f"layer '{name}' has no parameters to randomise"
                                  f"{close_matches(name, names)}")
        names = [n for n in names if n in layers]
    if not names:
        raise NetvizError("the model has no layers with parameters to randomise")

    def channel_map(a: Attribution) -> torch.Tensor:
        return a.attributions.sum(1).double()

    # the original map: given (already computed for these images and targets), or computed here
    maps = [channel_map(original if original is not None else attribute(work, x, target, **kwargs))]
    for j, name in enumerate(progress(names, quiet=quiet, desc="randomising layers", unit="layer")):
        _reinitialise(work.get_submodule(name), seed + j)
        if not last_only or j == len(names) - 1:
            maps.append(channel_map(attribute(work, x, target, **kwargs)))
    stacked = torch.stack(maps)
    n = x.shape[0]
    rank = torch.tensor([[spearman(stacked[0, i].abs(), stacked[j, i].abs()) for i in range(n)]
                         for j in range(1, len(maps))])
    signed = torch.tensor([[spearman(stacked[0, i], stacked[j, i]) for i in range(n)]
                           for j in range(1, len(maps))])
    return SanityResult(method=getattr(attribute, "__name__", "attribution"),
                        layers=names[-1:] if last_only else names,
                        rank_correlation=rank, signed_correlation=signed, maps=stacked.float(),
                        target=target,
                        settings={"seed": seed, **{k: v for k, v in kwargs.items()
                                                   if isinstance(v, (int, float, str))
                                                   and k != "quiet"}})
