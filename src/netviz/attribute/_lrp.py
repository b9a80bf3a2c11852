"""Layer-wise relevance propagation (Bach et al. 2015; Montavon et al. 2019) through zennit.

What every LRP method shares (as ``_cam.py`` for the CAMs): the target's score is the relevance
put on its output, and each layer passes it down by a rule; the relevance reaching the input is
the map. A method is a *composite* (which rule for which layer type) and one small file that
registers it. BatchNorm is merged into the convolution or linear layer that feeds it first
(zennit's canonizer), found by one probe forward pass, so any model's BatchNorms are merged, not
only those of an ``nn.Sequential``. A layer with weights that no rule covers (LayerNorm, attention,
embeddings) or a rule-bearing module called twice in one forward would give wrong relevance
without a word: both are refused in one line that names the layer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netviz.attribute._common import (
    Attribution,
    _pixel,
    as_columns,
    norm_params,
    opening,
    read_scores,
)
from netviz.attribute._registry import Method, Options, option, register
from netviz.errors import NetvizError
from netviz.heads import head_of

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.registry import ModelSpec

# builds a zennit composite from (options, low, high, canonizers); low/high: normalised pixel 0 and 1
MakeComposite = Callable[["LrpOptions", "torch.Tensor", "torch.Tensor", list], Any]
COMPOSITES: dict[str, MakeComposite] = {}


@dataclass(frozen=True)
class LrpOptions(Options):
    epsilon: float = option(1e-6, "LRP methods: the epsilon rule's stabiliser (larger keeps only the strongest "
                            "relevance).", "positive")
    gamma: float = option(0.25, "lrp-epsilon-gamma-box: how much the gamma rule favours positive "
                          "contributions in the convolutions.", "nonneg")


def zennit() -> Any:
    """The zennit package, or one line saying how to install it."""
    try:
        import zennit
        import zennit.canonizers
        import zennit.composites
        import zennit.rules
    except ImportError:
        raise NetvizError("the LRP methods need zennit: pip install 'netviz[lrp]'") from None
    return zennit


def _rule_types() -> tuple[type, ...]:
    """Module types a composite gives a rule (or passes through on purpose)."""
    z = zennit()
    from zennit.layer import Sum

    return (z.types.Convolution, z.types.Linear, z.types.BatchNorm, z.types.AvgPool, Sum)


def probe(model: nn.Module, sample: torch.Tensor, method: str) -> list[tuple[list[str], str]]:
    """One forward pass of ``sample`` that checks every layer can be propagated and finds which
    BatchNorm follows which convolution or linear layer: [([conv name], bn name), ...].

    A BatchNorm may follow its layer through max-pools (mnist-fast's conv -> pool -> bn): a
    per-channel ``a x + b`` with ``a >= 0`` commutes with a maximum, so it merges into the layer
    before the pool. A BatchNorm that cannot be merged is refused: LRP would pass relevance
    through it unchanged, which is silently wrong."""
    import torch
    from torch import nn

    z = zennit()
    ruled = _rule_types()
    for name, module in model.named_modules():
        own = next(module.parameters(recurse=False), None) is not None
        if name and own and not isinstance(module, ruled):
            raise NetvizError(f"{method} cannot propagate relevance through layer {name} "
                              f"({type(module).__name__}): zennit has no rule for it; use a gradient "
                              "method (e.g. --method inputxgrad) or integrated")
    # tensor id -> (name of the conv/linear layer that made it, the tensor, seen through a pool); the
    # tensor is held so that its id cannot be reused by another tensor during the pass
    made_by: dict[int, tuple[str, torch.Tensor, bool]] = {}
    pairs: list[tuple[list[str], str]] = []
    unmerged: list[tuple[str, str]] = []
    calls: dict[str, int] = {}
    handles = []
    passes = (z.types.MaxPool, nn.Dropout, nn.Identity)

    inside: set[Any] = set()  # autograd nodes made inside a layer that has a rule

    def hook(name: str):
        def run(mod: nn.Module, args: tuple, output: Any) -> None:
            calls[name] = calls.get(name, 0) + 1
            first = args[0] if args and isinstance(args[0], torch.Tensor) else None
            source = made_by.get(id(first)) if first is not None else None
            if not isinstance(output, torch.Tensor):
                return
            if isinstance(mod, ruled):
                inside.update(_nodes_between(output.grad_fn, first.grad_fn if first is not None else None))
            if isinstance(mod, (z.types.Convolution, z.types.Linear)):
                made_by[id(output)] = (name, output, False)
            elif isinstance(mod, passes) and source is not None:
                made_by[id(output)] = (source[0], output, source[2] or isinstance(mod, z.types.MaxPool))
            elif isinstance(mod, z.types.BatchNorm):
                why = _unmergeable(mod, source)
                if why:
                    unmerged.append((name, why))
                else:
                    pairs.append(([source[0]], name))  # type: ignore[index]
        return run

    try:
        for name, module in model.named_modules():
            if name and isinstance(module, (*ruled, *passes)):
                handles.append(module.register_forward_hook(hook(name)))
        with torch.enable_grad():
            leaf = sample.detach().clone().requires_grad_(True)
            leaf._netviz_probe_input = True  # type: ignore[attr-defined]
            scores = model(leaf)
    finally:
        for h in handles:
            h.remove()
        made_by.clear()
    again = [n for n, k in calls.items() if k > 1 and isinstance(model.get_submodule(n), ruled)]
    if again:
        raise NetvizError(f"{method} cannot propagate relevance through layer {again[0]}: the model calls it "
                          f"{calls[again[0]]} times in one forward pass; use a gradient method instead")
    if unmerged:
        name, why = unmerged[0]
        raise NetvizError(f"{method} cannot propagate relevance through BatchNorm {name}: {why}, so it cannot "
                          "be merged into that layer's weights; use a gradient method (e.g. --method inputxgrad)")
    op = _unruled_operation(scores.grad_fn, inside)
    if op:
        raise NetvizError(f"{method} cannot share relevance by contribution through {op}; or use a gradient "
                          "method (e.g. --method inputxgrad)")
    return pairs


# autograd nodes of linear operations that LRP must share relevance through by contribution, with
# what a user wrote to make them
_AS_MODULE = "write it as a module (nn.AdaptiveAvgPool2d, nn.AvgPool2d) so that a rule reaches it"
_POOLING = {"MeanBackward": f"a mean written as a function (e.g. x.mean((2, 3))): {_AS_MODULE}",
            "SumBackward": f"a sum written as a function: {_AS_MODULE}",
            "AvgPool": f"an average pool written as a function: {_AS_MODULE}",
            "AdaptiveAvgPool": f"an adaptive average pool written as a function: {_AS_MODULE}",
            "Upsample": "an interpolation (F.interpolate), which has no rule"}
_JOINING = {"AddBackward": "an addition of two branches (a residual connection) outside torchvision's ResNet blocks",
            "SubBackward": "a subtraction of two branches", "MulBackward": "a product of two branches (a gate)",
            "DivBackward": "a division of two branches"}


def _nodes_between(top: Any, bottom: Any) -> set[Any]:
    """The autograd nodes from ``top`` down to (not including) ``bottom``: one layer's own operations."""
    seen: set[Any] = set()
    stack = [top]
    while stack:
        node = stack.pop()
        if node is None or node is bottom or node in seen:
            continue
        seen.add(node)
        stack.extend(n for n, _ in node.next_functions)
    return seen


def _unruled_operation(top: Any, inside: set[Any]) -> str:
    """What in the graph below ``top``, outside the ruled layers, would pass relevance by gradient
    where LRP shares it by contribution ('' when nothing): a pooling or interpolation written as a
    function, or two input-dependent branches joined by +, -, * or /."""
    depends: dict[Any, bool] = {}

    def on_input(node: Any) -> bool:  # iterative: deep nets would overflow Python's recursion
        stack = [(node, False)]
        while stack:
            n, expanded = stack.pop()
            if n is None or n in depends:
                continue
            children = [c for c, _ in n.next_functions if c is not None]
            if type(n).__name__ == "AccumulateGrad":
                depends[n] = getattr(n.variable, "_netviz_probe_input", False)
            elif expanded:
                depends[n] = any(depends.get(c, False) for c in children)
            else:
                stack.append((n, True))
                stack.extend((c, False) for c in children if c not in depends)
        return depends.get(node, False)

    on_input(top)
    for node, feeds in depends.items():
        if not feeds or node in inside:
            continue
        kind = type(node).__name__
        pooled = next((what for key, what in _POOLING.items() if kind.startswith(key)), None)
        if pooled:
            return pooled
        joined = next((what for key, what in _JOINING.items() if kind.startswith(key)), None)
        if joined and sum(depends.get(c, False) for c, _ in node.next_functions if c is not None) >= 2:
            return joined
    return ""


def _unmergeable(bn: nn.Module, source: tuple[str, Any, bool] | None) -> str:
    """Why ``bn`` cannot merge into the layer that made its input ('' when it can)."""
    if source is None:
        return "its input does not come straight from a convolution or linear layer"
    if getattr(bn, "running_var", None) is None or getattr(bn, "weight", None) is None:
        return "it has no running statistics or no learned scale (track_running_stats and affine)"
    if source[2] and bool((bn.weight.detach() < 0).any()):
        return (f"a max-pool stands between it and layer {source[0]} and some of its scales are negative "
                "(a negative scale does not commute with the maximum)")
    return ""


@contextlib.contextmanager
def relevance_rules(model: nn.Module, sample: torch.Tensor, method: str, options: LrpOptions,
                    spec: ModelSpec | None = None) -> Iterator[nn.Module]:
    """Inside the block, gradients through ``model`` are relevance under ``method``'s composite
    (BatchNorms merged); every hook and merged weight is removed on exit."""
    z = zennit()
    with _residual_sums(model):
        pairs = probe(model, sample, method)
        mean, std = norm_params(spec)
        low = _pixel(0.0, sample, mean, std)
        high = _pixel(1.0, sample, mean, std)
        canonizers = [z.canonizers.NamedMergeBatchNorm(pairs)] if pairs else []
        composite = COMPOSITES[method](options, low, high, canonizers)
        with composite.context(model) as modified:
            yield modified


@contextlib.contextmanager
def _residual_sums(model: nn.Module) -> Iterator[None]:
    """torchvision ResNet blocks with their residual sum as a module that carries a rule (zennit's
    canonizers); the blocks are as they were on exit."""
    import zennit.torchvision as ztv

    instances = [i for c in (ztv.ResNetBasicBlockCanonizer(), ztv.ResNetBottleneckCanonizer())
                 for i in c.apply(model)]
    try:
        yield
    finally:
        for instance in reversed(instances):
            instance.remove()


def seed_relevance(logits: torch.Tensor, target: torch.Tensor, score: str, activation: str = "softmax"
                   ) -> torch.Tensor:
    """The relevance put on the output: each target's score on its own logit, 0 elsewhere (their
    sum is F; several targets per image for a multi-label target)."""
    import torch

    t = as_columns(target)
    f = read_scores(logits.detach(), score, activation).gather(1, t)  # each target's own score
    seed = torch.zeros_like(logits)
    return seed.scatter_(1, t, f.to(seed.dtype))


def lrp(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None, *, method: str,
        options: LrpOptions, spec: ModelSpec | None = None, quiet: bool = True) -> Attribution:
    """The input relevance of every image under ``method``'s composite (shape of x; it sums to the
    target's score when the rules conserve relevance)."""
    import torch

    with opening(model, x, target, options.score, options.batch_size) as o, \
            relevance_rules(model, o.x[:1].to(o.device), method, options, spec) as ruled:

        def relevance(xb: torch.Tensor, tb: torch.Tensor) -> torch.Tensor:
            xb = xb.requires_grad_(True)
            with torch.enable_grad():
                logits = ruled(xb)
                seed = seed_relevance(logits, tb, options.score, head_of(model).activation)
                (rel,) = torch.autograd.grad(logits, xb, seed)
            return rel.detach().float()

        out = o.each(relevance, quiet, method)
    return Attribution(out, method, o.target, options.score, score_input=o.score_input,
                       settings={"batch_size": o.batch_size, "epsilon": options.epsilon})


def lrp_method(name: str, make: MakeComposite, summary: str) -> Callable[..., Attribution]:
    """Register the LRP method ``name`` whose composite ``make`` builds; returns its function
    ``f(model, x, target=None, *, epsilon, gamma, score, batch_size, spec, quiet)``."""

    def attribute(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None,
                  *, spec: ModelSpec | None = None, quiet: bool = True, **options: Any) -> Attribution:
        return lrp(model, x, target, method=name, options=LrpOptions(**options), spec=spec, quiet=quiet)

    attribute.__doc__ = f"{summary}: the input relevance, shape of x."
    attribute.__name__ = attribute.__qualname__ = name.replace("-", "_")
    COMPOSITES[name] = make
    return register(Method(name, attribute, summary, LrpOptions, requires="zennit")).function
