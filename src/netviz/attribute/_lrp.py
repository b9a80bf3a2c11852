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
    check_batch_size,
    check_input,
    check_score,
    eval_mode,
    norm_params,
    read_scores,
    resolve_target,
)
from netviz.attribute._registry import Method, Options, option, register
from netviz.device import model_device
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
    return (z.types.Convolution, z.types.Linear, z.types.BatchNorm, z.types.AvgPool)


def probe(model: nn.Module, sample: torch.Tensor, method: str) -> list[tuple[list[str], str]]:
    """One forward pass of ``sample`` that checks every layer can be propagated and finds which
    BatchNorm follows which convolution or linear layer: [([conv name], bn name), ...]."""
    import torch

    z = zennit()
    ruled = _rule_types()
    for name, module in model.named_modules():
        own = next(module.parameters(recurse=False), None) is not None
        if name and own and not isinstance(module, ruled):
            raise NetvizError(f"{method} cannot propagate relevance through layer {name} "
                              f"({type(module).__name__}): zennit has no rule for it; use a gradient "
                              "method (e.g. --method inputxgrad) or integrated")
    made_by: dict[int, str] = {}  # id of a conv/linear output -> its module's name
    pairs: list[tuple[list[str], str]] = []
    calls: dict[str, int] = {}
    handles = []

    def hook(name: str):
        def run(mod: nn.Module, args: tuple, output: Any) -> None:
            calls[name] = calls.get(name, 0) + 1
            if isinstance(mod, (z.types.Convolution, z.types.Linear)) and isinstance(output, torch.Tensor):
                made_by[id(output)] = name
            elif isinstance(mod, z.types.BatchNorm) and args and id(args[0]) in made_by:
                pairs.append(([made_by[id(args[0])]], name))
        return run

    try:
        for name, module in model.named_modules():
            if name and isinstance(module, ruled):
                handles.append(module.register_forward_hook(hook(name)))
        with torch.no_grad():
            model(sample)
    finally:
        for h in handles:
            h.remove()
    again = [n for n, k in calls.items() if k > 1]
    if again:
        raise NetvizError(f"{method} cannot propagate relevance through layer {again[0]}: the model calls it "
                          f"{calls[again[0]]} times in one forward pass; use a gradient method instead")
    return pairs


@contextlib.contextmanager
def relevance_rules(model: nn.Module, sample: torch.Tensor, method: str, options: LrpOptions,
                    spec: ModelSpec | None = None) -> Iterator[nn.Module]:
    """Inside the block, gradients through ``model`` are relevance under ``method``'s composite
    (BatchNorms merged); every hook and merged weight is removed on exit."""
    z = zennit()
    pairs = probe(model, sample, method)
    mean, std = norm_params(spec)
    low = _pixel(0.0, sample, mean, std)
    high = _pixel(1.0, sample, mean, std)
    canonizers = [z.canonizers.NamedMergeBatchNorm(pairs)] if pairs else []
    composite = COMPOSITES[method](options, low, high, canonizers)
    with composite.context(model) as modified:
        yield modified


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

    from netviz.progress import progress

    x = check_input(x)
    check_score(options.score)
    batch_size = check_batch_size(options.batch_size, model, x)
    dev = model_device(model)
    out = []
    with eval_mode(model):
        t, f_x = resolve_target(model, x, target, options.score, batch_size)
        with relevance_rules(model, x[:1].to(dev), method, options, spec) as ruled, \
                progress(total=x.shape[0], quiet=quiet, desc=method, unit="image") as bar:
            for start in range(0, x.shape[0], batch_size):
                chunk = x[start:start + batch_size].to(dev).requires_grad_(True)
                with torch.enable_grad():
                    logits = ruled(chunk)
                    seed = seed_relevance(logits, t[start:start + batch_size].to(dev), options.score,
                                          head_of(model).activation)
                    (rel,) = torch.autograd.grad(logits, chunk, seed)
                out.append(rel.detach().float().cpu())
                bar.update(chunk.shape[0])
    return Attribution(torch.cat(out), method, t, options.score, score_input=f_x,
                       settings={"batch_size": batch_size, "epsilon": options.epsilon})


def lrp_method(name: str, make: MakeComposite, summary: str) -> Callable[..., Attribution]:
    """Register the LRP method ``name`` whose composite ``make`` builds; returns its function
    ``f(model, x, target=None, *, epsilon, gamma, score, batch_size, spec, quiet)``."""

    def attribute(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None,
                  *, spec: ModelSpec | None = None, quiet: bool = True, **options: Any) -> Attribution:
        return lrp(model, x, target, method=name, options=LrpOptions(**options), spec=spec, quiet=quiet)

    attribute.__doc__ = f"{summary}: the input relevance, shape of x."
    attribute.__name__ = attribute.__qualname__ = name.replace("-", "_")
    COMPOSITES[name] = make
    register(Method(name, attribute, summary, LrpOptions, requires="zennit"))
    return attribute
