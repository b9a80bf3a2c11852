"""How much each channel of a layer contributed to a target's score: the channel methods of `netviz explain`.

Each method returns a :class:`ChannelAttribution`: per image the contribution of every channel,
where in the image each top channel contributed, and the layer's total map. Methods are registered
objects (:data:`CHANNEL_METHODS`), as the attribution methods are; nothing branches on a name.

- ``grad-x-act``: sum over positions of A * dF/dA, one backward pass (Olah et al. 2018).
- ``layer-integrated``: integrated gradients at the layer (Captum's ``LayerIntegratedGradients``):
  the layer's output moves on a straight line from its value on the baseline input to its value on
  the image; contributions add up to F(x) - F(baseline) up to the completeness error.
- ``lrp``: the relevance each channel receives under an LRP composite (zennit), and its
  conditional heat map (Concept Relevance Propagation, Achtibat et al. 2023): the input relevance
  when only that channel passes relevance down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netviz.attribute import (
    COMPOSITES,
    IntegratedOptions,
    LrpOptions,
    Options,
    forward_scores,
    make_baseline,
    model_score,
    opening,
    option,
    options_of,
    passes,
    quadrature_rule,
    relative_error,
    relevance_rules,
    seed_relevance,
    step_schedule,
    zennit,
)
from netviz.device import model_device
from netviz.errors import NetvizError, close_matches
from netviz.heads import head_of
from netviz.layers import layer_tapped

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.registry import ModelSpec
    from netviz.tokens import Grid


@dataclass
class ChannelAttribution:
    """What a channel method found for N images at one layer of K channels (CPU tensors).

    ``order[i]`` ranks image i's channels by contribution, largest first; ``maps[i, r]`` is where
    the channel of rank r contributed (at the layer's resolution, or the input's for ``lrp``);
    ``total`` is all channels' map together. ``completeness_error`` (None for grad-x-act):
    |sum of contributions - reference| / |reference|, the reference being F(x) - F(baseline) for
    layer-integrated and F(x) for lrp (relevance conservation).
    """

    method: str
    layer: str
    target: torch.Tensor  # (N,)
    score: torch.Tensor  # (N,) F(x)
    contributions: torch.Tensor  # (N, K) float64
    order: torch.Tensor  # (N, K)
    maps: torch.Tensor  # (N, top, h, w)
    total: torch.Tensor  # (N, h, w)
    score_baseline: torch.Tensor | None = None
    completeness_error: torch.Tensor | None = None
    steps: torch.Tensor | None = None


@dataclass(frozen=True)
class ChannelMethod:
    name: str
    function: Callable[..., ChannelAttribution]
    summary: str
    options: type[Options] = Options
    reference: str | None = None  # what the completeness error compares the contributions' sum with
    check: Callable[[Any], None] | None = None  # refuses bad options in one line, before any work

    def checked(self, options: Options) -> Options:
        options.check()
        if self.check is not None:
            self.check(options)
        return options

    def make_options(self, values: dict[str, Any]) -> Options:
        return self.options.from_values(values)


CHANNEL_METHODS: dict[str, ChannelMethod] = {}


def register(method: ChannelMethod) -> ChannelMethod:
    CHANNEL_METHODS[method.name] = method
    return method


def all_channel_options() -> dict[str, Any]:
    """Every option of the channel methods (dataclass fields) by name, in first-seen order."""
    return options_of(CHANNEL_METHODS.values())


def get_channel_method(name: str) -> ChannelMethod:
    if name not in CHANNEL_METHODS:
        names = list(CHANNEL_METHODS)
        raise NetvizError(f"unknown explain method '{name}': use one of {', '.join(names)}"
                          f"{close_matches(name, names)}")
    return CHANNEL_METHODS[name]


def ranked(contributions: torch.Tensor, positions: torch.Tensor, top: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(order (N, K), the top channels' maps (N, top, h, w)) from per-position contributions."""
    import torch

    order = torch.argsort(contributions, dim=1, descending=True, stable=True)
    pick = order[:, :top]
    return order, torch.gather(positions, 1, pick[:, :, None, None].expand(-1, -1, *positions.shape[2:]))


def _spatial(a: torch.Tensor, layer: str) -> None:
    if a.ndim != 4:
        raise NetvizError(f"layer {layer} gives {tuple(a.shape[1:])} per image: explain needs a layer with "
                          "channels x height x width (see `netviz layers`)")


def _grid(model: nn.Module, a: torch.Tensor, x: torch.Tensor, layer: str) -> Grid:
    """How the layer's output reads as maps: channels x height x width, tokens or channels-last."""
    from netviz.layers import layer_grid

    grid = layer_grid(model, a.shape[1:], x.shape[-2:])
    if grid is None:
        raise NetvizError(f"layer {layer} gives {tuple(a.shape[1:])} per image: explain needs a layer with "
                          "channels x height x width, or tokens (see `netviz layers`, and --reshape)")
    return grid


# -- grad-x-act ------------------------------------------------------------------------------------

def grad_x_act(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None, layer: str, top: int, *,
               options: Options, spec: ModelSpec | None = None) -> ChannelAttribution:
    """Per channel, the sum over positions of activation x gradient of the score."""
    import torch

    positions, sums = [], []
    with opening(model, x, target, options.score, options.batch_size) as o:
        t, f_x = o.target, o.score_input
        for _, chunk, tb in o.batches():
            chunk = chunk.requires_grad_(True)
            with layer_tapped(model, layer) as tap, torch.enable_grad():
                f = model_score(model, chunk, tb, options.score)
                a = tap["output"]
                grid = _grid(model, a, chunk, layer)
                (g,) = torch.autograd.grad(f.sum(), a)
            product = (a * g).detach().double().cpu()
            sums.append(grid.channel_sums(product))  # every position, a class token's too
            positions.append(grid.to_map(product))
    pos = torch.cat(positions)
    contributions = torch.cat(sums)
    order, maps = ranked(contributions, pos, top)
    return ChannelAttribution("grad-x-act", layer, t, f_x, contributions, order, maps.float(), pos.sum(1).float())


register(ChannelMethod("grad-x-act", grad_x_act, "activation x gradient, summed over positions (one backward pass)"))


# -- layer-integrated ------------------------------------------------------------------------------

def _layer_output(model: nn.Module, x: torch.Tensor, layer: str, batch_size: int | None) -> torch.Tensor:
    import torch

    from netviz.layers import forward_to

    dev = model_device(model)
    with torch.no_grad():
        return torch.cat([forward_to(model, x[s].to(dev), [layer], maps=False)[layer].float().cpu()
                          for s in passes(model, x, x.shape[0], "forward", batch_size, gradients=False)])


def _integrate_layer(model: nn.Module, x: torch.Tensor, a_x: torch.Tensor, a_b: torch.Tensor, target: torch.Tensor,
                     layer: str, score: str, alphas: Any, weights: Any, batch_size: int | None) -> torch.Tensor:
    """sum_k w_k dF/dA at A = A(b) + a_k (A(x) - A(b)) for every image (CPU); the (image, step)
    pairs fill whole batches across images."""
    import torch

    dev = model_device(model)
    n = len(alphas)
    a_all = torch.tensor(alphas, dtype=torch.float32, device=dev)
    w_all = torch.tensor(weights, dtype=torch.float32, device=dev)
    total = torch.zeros(a_x.shape, dtype=torch.float32, device=dev)
    shape = (-1,) + (1,) * (a_b.ndim - 1)  # images, or token sequences
    for which in passes(model, x, x.shape[0] * n, "layer-integrated", batch_size):
        p = torch.arange(which.start, which.stop)
        img, k = p // n, (p % n).to(dev)
        base = a_b[img].to(dev)
        point = (base + a_all[k].view(shape) * (a_x[img].to(dev) - base)).requires_grad_(True)
        with layer_tapped(model, layer, replace=lambda out, point=point: point), torch.enable_grad():
            f = model_score(model, x[img].to(dev), target[img].to(dev), score)
            (g,) = torch.autograd.grad(f.sum(), point)
        total.index_add_(0, img.to(dev), g * w_all[k].view(shape))
    return total.cpu()


def layer_integrated(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None, layer: str, top: int, *,
                     options: IntegratedOptions, spec: ModelSpec | None = None) -> ChannelAttribution:
    """Integrated gradients at ``layer``, summed over positions per channel; images whose
    completeness error is above ``options.tolerance`` are redone with twice the steps."""
    import torch

    schedule = step_schedule(options.steps, options.tolerance, options.max_steps, options.quadrature)
    b = make_baseline(x, options.baseline, spec=spec, seed=options.seed, offset=options.offset)
    with opening(model, x, target, options.score, options.batch_size) as o:
        t, f_x, batch_size = o.target, o.score_input, o.batch_size
        f_b, _ = forward_scores(model, b, t, options.score, batch_size)
        a_x, a_b = _layer_output(model, x, layer, batch_size), _layer_output(model, b, layer, batch_size)
        grid = _grid(model, a_x, x, layer)
        pos = torch.zeros(a_x.shape, dtype=torch.float64)
        error = torch.full((x.shape[0],), float("nan"), dtype=torch.float64)
        used = torch.zeros(x.shape[0], dtype=torch.long)
        active = torch.arange(x.shape[0])
        for n in schedule:
            alphas, weights = quadrature_rule(options.quadrature, n)
            grads = _integrate_layer(model, x[active], a_x[active], a_b[active], t[active], layer, options.score,
                                     alphas, weights, batch_size)
            pos[active] = ((a_x[active] - a_b[active]) * grads).double()
            error[active] = relative_error(pos[active].flatten(1).sum(1), (f_x - f_b)[active])
            used[active] = n
            active = active[error[active] > options.tolerance] if options.tolerance is not None else active[:0]
            if len(active) == 0:
                break
    contributions = grid.channel_sums(pos)
    pos = grid.to_map(pos)
    order, maps = ranked(contributions, pos, top)
    return ChannelAttribution("layer-integrated", layer, t, f_x, contributions, order, maps.float(),
                              pos.sum(1).float(), score_baseline=f_b, completeness_error=error, steps=used)


register(ChannelMethod("layer-integrated", layer_integrated, "integrated gradients at the layer, summed over "
                       "positions; adds up to F(x) - F(baseline)", IntegratedOptions, "F(x) - F(baseline)",
                       lambda o: step_schedule(o.steps, o.tolerance, o.max_steps, o.quadrature)))


# -- lrp -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChannelLrpOptions(LrpOptions):
    rule: str = option("lrp-epsilon-plus", "lrp: the composite, as the attribution method of that name: "
                       "lrp-epsilon, lrp-epsilon-plus or lrp-epsilon-gamma-box.")


def _check_rule(options: ChannelLrpOptions) -> None:
    if options.rule not in COMPOSITES:
        raise NetvizError(f"unknown LRP rule '{options.rule}': use one of {', '.join(COMPOSITES)}"
                          f"{close_matches(options.rule, list(COMPOSITES))}")
    zennit()


def lrp_channels(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None, layer: str, top: int, *,
                 options: ChannelLrpOptions, spec: ModelSpec | None = None) -> ChannelAttribution:
    """Each channel's relevance at ``layer`` under the composite ``options.rule``, and per top
    channel the input relevance when only it passes relevance down (its conditional heat map)."""
    import torch

    _check_rule(options)
    rel, orders, cond, totals = [], [], [], []
    with opening(model, x, target, options.score, options.batch_size) as o:
        t, f_x, dev = o.target, o.score_input, o.device
        with relevance_rules(model, x[:1].to(dev), options.rule, options, spec) as ruled:
            for _, chunk, tb in o.batches():
                chunk = chunk.requires_grad_(True)
                with layer_tapped(ruled, layer) as tap, torch.enable_grad():
                    logits = ruled(chunk)
                    a = tap["output"]
                    _spatial(a, layer)
                    seed = seed_relevance(logits, tb, options.score,
                                          head_of(model).activation)
                    r_layer, r_input = torch.autograd.grad(logits, (a, chunk), seed, retain_graph=True)
                    order = torch.argsort(r_layer.double().sum((2, 3)).cpu(), dim=1, descending=True, stable=True)
                    maps = []
                    for r in range(min(top, a.shape[1])):
                        keep = torch.zeros_like(r_layer).scatter_(
                            1, order[:, r].to(dev).view(-1, 1, 1, 1).expand(-1, 1, *a.shape[2:]), 1.0)
                        (c,) = torch.autograd.grad(a, chunk, r_layer * keep, retain_graph=True)
                        maps.append(c.sum(1).detach().float().cpu())
                rel.append(r_layer.detach().double().cpu())
                orders.append(order)
                cond.append(torch.stack(maps, 1))
                totals.append(r_input.sum(1).detach().float().cpu())
    pos = torch.cat(rel)
    contributions = pos.sum((2, 3))
    error = relative_error(contributions.sum(1), f_x)
    return ChannelAttribution("lrp", layer, t, f_x, contributions, torch.cat(orders), torch.cat(cond),
                              torch.cat(totals), completeness_error=error)


register(ChannelMethod("lrp", lrp_channels, "each channel's relevance under an LRP composite (zennit), with its "
                       "conditional heat map (CRP)", ChannelLrpOptions, "F(x) (relevance conserved)", _check_rule))
