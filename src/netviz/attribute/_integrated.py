"""Integrated gradients (Sundararajan, Taly, Yan 2017) with bounded memory and adaptive steps.

IG_i(x) = (x_i - b_i) * integral_0^1 dF(b + a (x - b)) / dx_i da, approximated by a quadrature
rule sum_k w_k grad F(b + a_k (x - b)). Every (image, step) pair is one interpolated input; they
are evaluated ``batch_size`` at a time, so memory does not grow with the step count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netviz.attribute._common import (
    Attribution,
    check_input,
    forward_scores,
    input_gradients,
    make_baseline,
    model_device,
    opening,
    passes,
    used_batch_size,
)
from netviz.attribute._registry import BaselineOptions, Method, SeededOptions, option, register
from netviz.errors import NetvizError, close_matches

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from netviz.registry import ModelSpec

QUADRATURES = ("riemann-left", "riemann-right", "riemann-middle", "trapezoid", "gauss-legendre")
DEFAULT_STEPS = 50
ADAPTIVE_START = 8
DEFAULT_MAX_STEPS = 1024
# numpy's leggauss builds an n x n matrix: 4096 points take 128 MiB, 100,000 would take 75 GiB.
MAX_GAUSS_LEGENDRE = 4096


@dataclass(frozen=True)
class IntegratedOptions(BaselineOptions, SeededOptions):
    steps: int | None = option(None, "integrated: quadrature points (default 50; with --tolerance the first "
                               "count tried, default 8).", "int")
    quadrature: str = option("gauss-legendre", "riemann-left, riemann-right, riemann-middle, trapezoid or "
                             "gauss-legendre.")
    tolerance: float | None = option(None, "integrated: adaptive steps; images whose relative completeness "
                                     "error is above this (e.g. 0.01) are redone with more steps.", "positive")
    max_steps: int = option(DEFAULT_MAX_STEPS, "integrated: the most steps --tolerance may use.", "count")


def quadrature_rule(name: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(alphas, weights) on [0, 1] for ``steps`` points; the weights sum to 1.

    Riemann rules use weights 1/n at k/n (left), (k+1)/n (right), (k+1/2)/n (middle), as Captum.
    ``trapezoid`` is the true trapezoid rule on linspace(0, 1, n): weights 1/(n-1), ends halved
    (Captum's ``riemann_trapezoid`` uses 1/n, so its weights sum to (n-1)/n instead of 1).
    ``gauss-legendre``: numpy's leggauss nodes and weights mapped from [-1, 1] to [0, 1].
    """
    import numpy as np

    check_quadrature(name)
    steps = check_steps(steps)
    n = steps
    if name == "gauss-legendre":
        if n > MAX_GAUSS_LEGENDRE:
            raise NetvizError(f"{n} Gauss-Legendre steps cannot be computed in memory: use at most "
                              f"{MAX_GAUSS_LEGENDRE} steps, or --quadrature riemann-middle for more")
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return 0.5 * (nodes + 1.0), 0.5 * weights
    if name == "trapezoid":
        if n < 2:
            raise NetvizError("the trapezoid rule needs at least 2 steps: pass --steps 2 or more")
        w = np.full(n, 1.0 / (n - 1))
        w[0] = w[-1] = 0.5 / (n - 1)
        return np.linspace(0.0, 1.0, n), w
    k = np.arange(n, dtype=np.float64)
    offset = {"riemann-left": 0.0, "riemann-right": 1.0, "riemann-middle": 0.5}[name]
    return (k + offset) / n, np.full(n, 1.0 / n)


def check_quadrature(name: str) -> str:
    if name not in QUADRATURES:
        raise NetvizError(f"unknown quadrature '{name}': use one of {', '.join(QUADRATURES)}"
                          f"{close_matches(name, QUADRATURES)}")
    return name


def check_steps(steps: int) -> int:
    if isinstance(steps, bool) or int(steps) != steps or steps <= 0:
        raise NetvizError(f"steps must be a positive whole number, not {steps}")
    return int(steps)


def _integrate(model: nn.Module, x: torch.Tensor, b: torch.Tensor, target: torch.Tensor,
               score: str, alphas: np.ndarray, weights: np.ndarray, batch_size: int | None,
               bar=None) -> torch.Tensor:
    """sum_k w_k grad F(b + a_k (x - b)) for every image (CPU, float32); the (image, step) pairs
    fill whole batches across images."""
    import torch

    dev = model_device(model)
    n = len(alphas)
    a_all = torch.tensor(alphas, dtype=torch.float32, device=dev)
    w_all = torch.tensor(weights, dtype=torch.float32, device=dev)
    total = torch.zeros(x.shape, dtype=torch.float32, device=dev)
    done = 0
    for which in passes(model, x, x.shape[0] * n, "integrated", batch_size):
        p = torch.arange(which.start, which.stop)
        img, k = p // n, (p % n).to(dev)
        xs, bs = x[img].to(dev), b[img].to(dev)
        inputs = bs + a_all[k].view(-1, 1, 1, 1) * (xs - bs)
        grad, _ = input_gradients(model, inputs, target[img].to(dev), score)
        total.index_add_(0, img.to(dev), grad * w_all[k].view(-1, 1, 1, 1))
        finished = which.stop // n  # images whose every step is summed
        if bar is not None:
            bar.update(finished - done)
        done = finished
    return total.cpu()


def relative_error(total: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """|total - delta| / |delta| (absolute where |delta| < 1e-12, e.g. x == baseline)."""
    err = (total - delta).abs()
    scale = delta.abs()
    return err / scale.where(scale > 1e-12, scale.new_ones(()))


def step_schedule(steps: int | None, tolerance: float | None, max_steps: int, quadrature: str) -> list[int]:
    """The step counts to try in turn: ``[steps]`` (default 50), or with a ``tolerance`` from
    ``steps`` (default 8) doubling up to ``max_steps``. Every count is checked against the
    quadrature before any work (e.g. the trapezoid rule needs 2 points)."""
    if tolerance is not None and not tolerance > 0:
        raise NetvizError(f"tolerance must be a positive number such as 0.01, not {tolerance}")
    first = check_steps(steps if steps is not None else
                        (DEFAULT_STEPS if tolerance is None else ADAPTIVE_START))
    max_steps = check_steps(max_steps)
    schedule = [first]
    if tolerance is not None:
        while schedule[-1] < max_steps:
            schedule.append(min(2 * schedule[-1], max_steps))
    for n in schedule:
        quadrature_rule(quadrature, n)
    return schedule


def integrated_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: int | Sequence[int] | torch.Tensor | None = None,
    baseline: str | float | torch.Tensor | None = None,
    steps: int | None = None,
    quadrature: str = IntegratedOptions.quadrature,
    batch_size: int | None = None,
    tolerance: float | None = None,
    *,
    max_steps: int = DEFAULT_MAX_STEPS,
    score: str = "logit",
    spec: ModelSpec | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    seed: int = 0,
    offset: int = 0,
    quiet: bool = True,
) -> Attribution:
    """Integrated gradients of ``score`` of class ``target`` for the batch ``x`` (normalised).

    - ``target``: a class for all images, one per image, or None for each image's prediction.
    - ``baseline``: None or "black" (the normalised image of pixel 0: needs ``spec`` or
      ``mean``/``std``, else 0 is taken as black), "white", "blur", "noise", a number, or a tensor.
    - ``steps``: quadrature points (default 50). With ``tolerance`` (e.g. 0.01) the steps are
      adaptive: every image starts at ``steps`` (default 8) and only the images whose relative
      completeness error is above ``tolerance`` are recomputed with twice the steps, up to
      ``max_steps``; ``.steps`` says what each image needed.
    - ``batch_size``: at most this many interpolated inputs per forward/backward (default 256).
    - ``score``: "logit" (default), "logprob" or "prob": F, the function differentiated.

    Returns an :class:`Attribution` with ``.attributions`` (shape of x), ``.completeness_error``
    and ``.steps`` per image. The model is evaluated in eval mode; its mode is restored after.
    """
    import torch

    from netviz.progress import progress

    x = check_input(x)
    check_quadrature(quadrature)
    schedule = step_schedule(steps, tolerance, max_steps, quadrature)
    b = make_baseline(x, baseline, spec=spec, mean=mean, std=std, seed=seed, offset=offset)
    n_img = x.shape[0]
    with opening(model, x, target, score, batch_size) as o:
        target, f_x, batch_size = o.target, o.score_input, o.batch_size
        f_b, _ = forward_scores(model, b, target, score, batch_size)
        delta = f_x - f_b
        attributions = torch.zeros_like(x)
        error = torch.full((n_img,), float("nan"), dtype=torch.float64)
        used = torch.zeros(n_img, dtype=torch.long)
        active = torch.arange(n_img)
        for n in schedule:
            alphas, weights = quadrature_rule(quadrature, n)
            with progress(total=len(active), quiet=quiet, desc=f"integrated gradients, {n} steps",
                          unit="image") as bar:
                grads = _integrate(model, x[active], b[active], target[active], score, alphas,
                                   weights, batch_size, bar)
            attr = (x[active] - b[active].cpu()) * grads
            attributions[active] = attr
            error[active] = relative_error(attr.flatten(1).double().sum(1), delta[active])
            used[active] = n
            if tolerance is None:
                break
            active = active[error[active] > tolerance]
            if len(active) == 0:
                break
    settings = {"quadrature": quadrature, "schedule": schedule, "tolerance": tolerance,
                "batch_size": used_batch_size(model, x, "integrated", batch_size),
                "baseline": baseline if isinstance(baseline, (str, float, int)) or baseline is None
                else "tensor"}
    return Attribution(attributions=attributions, method="integrated", target=target, score=score,
                       completeness_error=error, steps=used, score_input=f_x, score_baseline=f_b,
                       settings=settings)


integrated_gradients = register(Method("integrated", integrated_gradients,
                                       "integrated gradients from a baseline, with a completeness check "
                                       "(Sundararajan et al. 2017)",
                                       IntegratedOptions, figures=("grid", "panels", "completeness"))).function
