"""What a dictionary is worth: how much of the layer it explains, how sparse and alive its codes are,
how much each concept weighs in each class's score, and whether removing a class's top concepts
changes the score more than removing random ones or the class's top channels.

Importance is the concept-level gradient x activation: with A ~= U W, the layer's grad x act
sum_p <A_p, G_p> splits into sum_k sum_p U_pk <W_k, G_p>, one term per concept (G = dF/dA).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from netviz.concepts.factor import Dictionary
from netviz.concepts.passes import rows_of
from netviz.errors import NetvizError

if TYPE_CHECKING:
    import torch

    from netviz.runs import Run

ACTIVE = 1e-3  # a code counts as active above this share of its concept's largest code


@dataclass
class Quality:
    r2: float  # explained variance of the rows fitted on
    sparsity: float  # mean active concepts per position
    dead: list[int]  # concepts active at no position of the data set

    def record(self) -> dict[str, Any]:
        return {"r2": round(self.r2, 4), "sparsity": round(self.sparsity, 3), "dead": self.dead}


def quality(rows: torch.Tensor, dictionary: Dictionary, largest: torch.Tensor) -> Quality:
    """r2 and sparsity on the fitted ``rows``; dead concepts from ``largest`` (N, K), every image's
    largest code per concept."""
    u, w = dictionary.encode(rows), dictionary.components
    residual = ((rows - u @ w) ** 2).sum()
    total = ((rows - rows.mean(0)) ** 2).sum().clamp(min=1e-12)
    peak = largest.max(0).values
    active = u > ACTIVE * peak.clamp(min=1e-12)
    dead = [int(k) for k in (peak <= 0).nonzero().flatten()]
    return Quality(float(1 - residual / total), float(active.sum(1).float().mean()), dead)


@dataclass
class Reading:
    """For some images of one class: the layer A, the gradient of the class's logit G (as maps) and
    the codes U."""

    a: torch.Tensor  # (n, C, h, w)
    g: torch.Tensor  # (n, C, h, w)
    u: torch.Tensor  # (n, K, h, w)

    def concept_contributions(self, w: torch.Tensor) -> torch.Tensor:
        """(n, K): sum over positions of U_pk <W_k, G_p>."""
        import torch

        return torch.einsum("nkhw,kc,nchw->nk", self.u.double(), w.double(), self.g.double())

    def channel_contributions(self) -> torch.Tensor:
        """(n, C): the layer's grad x act per channel, summed over positions."""
        return (self.a.double() * self.g.double()).sum((2, 3))


def read_class(run: Run, x: torch.Tensor, target: torch.Tensor, layer: str, dictionary: Dictionary) -> Reading:
    """:class:`Reading` of the normalised images ``x`` for class ``target`` (one per image)."""
    import torch

    from netviz.attribute import model_score
    from netviz.layers import eval_mode, layer_grid, layer_tapped

    x = x.detach()
    with eval_mode(run.model), torch.enable_grad(), layer_tapped(run.model, layer) as tap:
        f = model_score(run.model, x, target, "logit")
        out = tap["output"]
        (g,) = torch.autograd.grad(f.sum(), out)
    grid = layer_grid(run.model, out.shape[1:], x.shape[-2:])
    a, g = grid.to_map(out.detach()).float(), grid.to_map(g).float()
    n, channels, h, wd = a.shape
    w = dictionary.components
    if channels != w.shape[1]:
        raise NetvizError(f"the dictionary's concepts have {w.shape[1]} channels, layer {layer} has {channels}: it "
                          "was learnt on another model or layer")
    u = dictionary.encode(rows_of(a)).view(n, h, wd, -1).permute(0, 3, 1, 2)
    return Reading(a, g, u)


def score_replaced(run: Run, x: torch.Tensor, target: torch.Tensor, layer: str, maps: torch.Tensor) -> torch.Tensor:
    """The class logits of ``x`` when ``layer`` gives ``maps`` (N, C, h, w) instead of its output."""
    import torch

    from netviz.attribute import model_score
    from netviz.layers import eval_mode, layer_grid, layer_tapped

    def replace(out: torch.Tensor) -> torch.Tensor:
        return layer_grid(run.model, out.shape[1:], x.shape[-2:]).from_map(maps, out)

    with eval_mode(run.model), torch.no_grad(), layer_tapped(run.model, layer, replace=replace):
        return model_score(run.model, x, target, "logit").double().cpu()


@dataclass
class Faithfulness:
    """Per image, from the layer's reconstruction U W (what the concepts can account for): the score's
    drop when its class's top-k concepts are taken out of it, when k random concepts are, and when
    its class's top-k channels are zeroed in it; and the score kept when only the top-k concepts stay
    (C-insertion). One starting point for the three, so the drops compare the two ways of cutting
    the layer (concepts or channels) and nothing else."""

    k: int
    concepts: list[float] = field(default_factory=list)
    random: list[float] = field(default_factory=list)
    channels: list[float] = field(default_factory=list)
    kept: list[float] = field(default_factory=list)  # F(top-k concepts alone) / F(reconstruction)

    def add(self, run: Run, x: torch.Tensor, target: torch.Tensor, layer: str, w: torch.Tensor, reading: Reading,
            top_concepts: list[int], top_channels: list[int], generator: Any) -> None:
        import torch

        u, w_ = reading.u.to(x.device), w.to(x.device)

        def rebuilt(keep: torch.Tensor) -> torch.Tensor:
            return torch.einsum("nkhw,kc->nchw", u * keep.view(1, -1, 1, 1), w_)

        all_k = torch.ones(w.shape[0], device=x.device)
        top = torch.zeros_like(all_k)
        top[top_concepts] = 1
        draw = torch.randperm(w.shape[0], generator=generator)[:len(top_concepts)].to(x.device)
        rand = torch.zeros_like(all_k)
        rand[draw] = 1
        whole = rebuilt(all_k)
        full = score_replaced(run, x, target, layer, whole)
        zeroed = whole.clone()
        zeroed[:, top_channels] = 0
        self.concepts += (full - score_replaced(run, x, target, layer, rebuilt(all_k - top))).tolist()
        self.random += (full - score_replaced(run, x, target, layer, rebuilt(all_k - rand))).tolist()
        self.channels += (full - score_replaced(run, x, target, layer, zeroed)).tolist()
        only = score_replaced(run, x, target, layer, rebuilt(top))
        self.kept += (only / full.abs().clamp(min=1e-12)).tolist()

    def record(self) -> dict[str, Any]:
        import numpy as np

        c, r, ch = (np.asarray(v, dtype=np.float64) for v in (self.concepts, self.random, self.channels))
        if not len(c):
            return {"k": self.k, "images": 0}
        return {"k": self.k, "images": len(c),
                "beats_random": round(float((c > r).mean()), 4), "beats_channels": round(float((c > ch).mean()), 4),
                "drop_concepts": round(float(c.mean()), 4), "drop_random": round(float(r.mean()), 4),
                "drop_channels": round(float(ch.mean()), 4),
                "insertion": round(float(np.mean(self.kept)), 4)}
