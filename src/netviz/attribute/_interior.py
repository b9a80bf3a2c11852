"""Interior gradients (Sundararajan, Taly, Yan, "Gradients of Counterfactuals", 2016).

The gradient of the score at scaled copies of the input, from the baseline (black) at alpha = 0
to the image at alpha = 1: ``b + alpha (x - b)``, i.e. alpha * x in pixel space. Averaging them
over alpha and multiplying by (x - b) gives integrated gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from netviz.attribute._common import (
    check_input,
    input_gradients,
    make_baseline,
    opening,
    used_batch_size,
)
from netviz.attribute._registry import BaselineOptions, Method, SeededOptions, option, register
from netviz.errors import NetvizError
from netviz.files import finite_number

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.registry import ModelSpec

# The alphas of the 2018 blog post.
DEFAULT_ALPHAS = (0.01, 0.02, 0.03, 0.04, 0.1, 0.5, 0.6, 0.7, 0.8, 1.0)


@dataclass
class InteriorGradients:
    """Gradients at scaled inputs: ``gradients`` (N, A, C, H, W) for the A ``alphas``.

    ``scores`` (N, A) is F at each scaled input (it saturates long before alpha = 1, which is
    why the gradient at the image alone says little); ``baseline`` (N, C, H, W) lets you rebuild
    each scaled input as ``baseline + alpha * (x - baseline)`` (see :meth:`scaled_inputs`).
    """

    gradients: torch.Tensor
    alphas: tuple[float, ...]
    scores: torch.Tensor
    x: torch.Tensor
    baseline: torch.Tensor
    target: torch.Tensor
    score: str
    method: str = "interior"
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def attributions(self) -> torch.Tensor:
        """The gradients (N, A, C, H, W): interior gradients are gradients."""
        return self.gradients

    def image_record(self, i: int) -> dict[str, Any]:
        """What attribute.json keeps of image ``i``: F and the gradient's norm at each alpha."""
        norms = self.gradients[i].flatten(1).norm(dim=1)
        return {"alphas": list(self.alphas), "scores": [finite_number(v) for v in self.scores[i]],
                "gradient_norms": [finite_number(v) for v in norms]}

    def scaled_inputs(self) -> torch.Tensor:
        import torch

        a = torch.tensor(self.alphas, dtype=self.x.dtype).view(1, -1, 1, 1, 1)
        return self.baseline.unsqueeze(1) + a * (self.x - self.baseline).unsqueeze(1)


@dataclass(frozen=True)
class InteriorOptions(BaselineOptions, SeededOptions):
    alphas: str | None = option(None, "interior: scale factors, e.g. 0.01,0.1,0.5,1 (default: 0.01, 0.02, 0.03, "
                                "0.04, 0.1, 0.5, 0.6, 0.7, 0.8, 1.0).")


def parse_alphas(alphas: str | Sequence[float] | None) -> tuple[float, ...]:
    """"0.1,0.5,1" or a sequence -> a tuple of alphas in [0, 1]; None -> the 2018 all-convolutional
    post's (docs/techniques.md §5)."""
    if alphas is None:
        return DEFAULT_ALPHAS
    items = [a for a in alphas.split(",") if a.strip()] if isinstance(alphas, str) else list(alphas)
    try:
        values = tuple(float(a) for a in items)
    except ValueError as exc:
        raise NetvizError(f"alphas must be numbers separated by commas, e.g. 0.1,0.5,1 "
                          f"(got {alphas})") from exc
    if not values or any(not 0.0 <= a <= 1.0 for a in values):
        raise NetvizError(f"alphas must be one or more numbers in [0, 1], not {alphas}")
    return values


def interior_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: int | Sequence[int] | torch.Tensor | None = None,
    alphas: str | Sequence[float] | None = None,
    baseline: str | float | torch.Tensor | None = None,
    batch_size: int | None = None,
    *,
    score: str = "logit",
    spec: ModelSpec | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    seed: int = 0,
    offset: int = 0,
    quiet: bool = True,
) -> InteriorGradients:
    """Gradients of ``score`` of ``target`` at ``baseline + alpha (x - baseline)`` for each alpha.

    ``baseline`` None is black: the normalised image of pixel 0, which needs ``spec`` or
    ``mean``/``std`` (with neither, 0 is black). Alphas default to the 2018 all-convolutional post's ten.
    """
    import torch

    from netviz.progress import progress

    x = check_input(x)
    alpha_t = parse_alphas(alphas)
    b = make_baseline(x, baseline, spec=spec, mean=mean, std=std, seed=seed, offset=offset)
    n, a = x.shape[0], len(alpha_t)
    grads = torch.zeros((n, a, *x.shape[1:]))
    scores = torch.zeros((n, a), dtype=torch.float64)
    with opening(model, x, target, score, batch_size) as o:
        target, dev = o.target, o.device
        alpha_dev = torch.tensor(alpha_t, dtype=torch.float32, device=dev)
        pairs = n * a
        with progress(total=n, quiet=quiet, desc="interior gradients", unit="image") as bar:
            done = 0
            for which in o.passes(pairs, "interior"):
                p = torch.arange(which.start, which.stop)
                img, k = p // a, p % a
                xs, bs = x[img].to(dev), b[img].to(dev)
                inputs = bs + alpha_dev[k.to(dev)].view(-1, 1, 1, 1) * (xs - bs)
                grad, f = input_gradients(model, inputs, target[img].to(dev), score)
                grads[img, k] = grad.cpu()
                scores[img, k] = f.double().cpu()
                finished = int(img[-1]) + 1 if int(k[-1]) == a - 1 else int(img[-1])
                bar.update(finished - done)
                done = finished
    return InteriorGradients(gradients=grads, alphas=alpha_t, scores=scores, x=x,
                             baseline=b.contiguous(), target=target, score=score,
                             settings={"batch_size": used_batch_size(model, x, "interior", o.batch_size),
                                       "alphas": list(alpha_t)})


interior_gradients = register(Method("interior", interior_gradients,
                                     "gradients at scaled inputs alpha * x, as a strip and a GIF "
                                     "(Sundararajan et al. 2016)",
                                     InteriorOptions,
                                     figures=("interior",), evaluate=False)).function
