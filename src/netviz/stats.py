"""Summary statistics of weight tensors, recorded per epoch by training and read by `histogram`."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# TensorBoard's "distributions" bands: max/93/84/69/50/31/16/7/min %.
PERCENTILES = (0, 7, 16, 31, 50, 69, 84, 93, 100)


def tensor_stats(t: torch.Tensor, bins: int = 60,
                 value_range: tuple[float, float] | None = None) -> dict[str, Any]:
    """Count, moments, percentiles and a histogram of one tensor; NaN/Inf are counted, not binned.

    The histogram counts of the finite values plus ``nan`` plus ``inf`` add up to ``count``.
    ``value_range`` fixes the bin range (it must cover the finite values), so that several
    tensors can share bins; by default it is the tensor's own min..max.
    """
    import torch

    flat = t.detach().float().flatten().cpu()
    finite = flat[torch.isfinite(flat)]
    nan = int(torch.isnan(flat).sum())
    inf = int(torch.isinf(flat).sum())
    out: dict[str, Any] = {"count": flat.numel(), "nan": nan, "inf": inf}
    if finite.numel() == 0:
        out.update(mean=math.nan, std=math.nan, min=math.nan, max=math.nan,
                   percentiles=[math.nan] * len(PERCENTILES), edges=[], counts=[])
        return out
    lo, hi = value_range if value_range is not None else (float(finite.min()), float(finite.max()))
    if lo == hi:  # zero variance: one bin around the value
        lo, hi = lo - 0.5, hi + 0.5
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    counts = torch.histc(finite.double(), bins=bins, min=lo, max=hi).long()
    levels = torch.tensor([p / 100 for p in PERCENTILES], dtype=torch.float64)
    q = torch.quantile(finite.double(), levels) if finite.numel() <= 16_000_000 \
        else _approx_quantiles(finite)
    out.update(
        mean=float(finite.double().mean()),
        std=float(finite.double().std(unbiased=False)),
        min=float(finite.min()), max=float(finite.max()),
        percentiles=[float(v) for v in q],
        edges=[float(e) for e in edges], counts=[int(c) for c in counts],
    )
    return out


def _approx_quantiles(finite: torch.Tensor) -> torch.Tensor:
    # torch.quantile refuses tensors above 16M elements; sort instead.
    import torch

    s, _ = finite.double().sort()
    idx = torch.tensor([round(p / 100 * (s.numel() - 1)) for p in PERCENTILES])
    return s[idx]


def state_stats(state: dict[str, torch.Tensor], bins: int = 60,
                include_bias: bool = True) -> dict[str, dict[str, Any]]:
    """``tensor_stats`` for every floating-point parameter of a state dict (buffers excluded)."""
    out = {}
    for name, t in state.items():
        if not t.is_floating_point() or name.endswith(("running_mean", "running_var")):
            continue
        if not include_bias and name.endswith("bias"):
            continue
        out[name] = tensor_stats(t, bins)
    return out
