"""A class's images split into clusters by their activations and attribution maps.

The features are the top principal components of each (10 of the activations, 10 of the maps, each
block scaled to unit variance), as Activation Clustering (Chen et al. 2018) reduces activations
before clustering and SpRAy (Lapuschkin et al. 2019) clusters heat maps. k-means (k-means++ starts,
a few restarts) for k = 2..4; the k with the best silhouette wins, and one cluster when no split is
clear (its silhouette below :data:`MIN_SILHOUETTE`). Seeded: the same data gives the same clusters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

COMPONENTS = 10
MAX_K = 4
MIN_SILHOUETTE = 0.3
SILHOUETTE_SAMPLE = 1500
MIN_CLUSTER = 10  # a class with fewer images is one cluster
FIT_SAMPLE = 2000  # the components and the centres are fitted on at most this many images of a class


def features(activations: torch.Tensor, maps: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(n, <= 20) float32: the leading principal components of both, each block of unit variance."""
    import torch

    blocks = []
    fit = torch.randperm(activations.shape[0], generator=generator)[:FIT_SAMPLE]
    for block in (activations.float(), maps.flatten(1).float()):
        centred = block - block[fit].mean(0, keepdim=True)
        q = min(COMPONENTS, len(fit) - 1, centred.shape[1])
        if q < 1:
            continue
        # the principal axes from the D x D covariance of a sample (D <= ~1000): far cheaper than an SVD
        _, vectors = torch.linalg.eigh((centred[fit].T @ centred[fit]).double())
        scores = centred @ vectors[:, -q:].flip(1).float()
        total = scores.pow(2).sum(1).mean().sqrt()
        blocks.append(scores / total if total > 0 else scores)
    return torch.cat(blocks, 1) if blocks else torch.zeros(activations.shape[0], 1)


def kmeans(x: torch.Tensor, k: int, generator: torch.Generator, restarts: int = 3, steps: int = 30
           ) -> tuple[torch.Tensor, float]:
    """(assignment (n,), inertia) of the best of ``restarts`` k-means runs from k-means++ starts,
    the centres fitted on a sample of at most :data:`FIT_SAMPLE` points, every point then assigned."""
    import torch

    fit = x[torch.randperm(len(x), generator=generator)[:FIT_SAMPLE]]
    best, best_inertia = None, float("inf")
    for _ in range(restarts):
        centres = fit[torch.randint(len(fit), (1,), generator=generator)]
        for _ in range(1, k):  # k-means++: the next start far from the chosen ones
            d = torch.cdist(fit, centres).min(1).values.pow(2)
            centres = torch.cat([centres, fit[torch.multinomial(d + 1e-12, 1, generator=generator)]])
        for _ in range(steps):
            assign = torch.cdist(fit, centres).argmin(1)
            counts = torch.bincount(assign, minlength=k).float()
            sums = torch.zeros_like(centres).index_add_(0, assign, fit)
            moved = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centres)
            if torch.allclose(moved, centres):
                break
            centres = moved
        inertia = float(torch.cdist(fit, centres).min(1).values.pow(2).sum())
        if inertia < best_inertia:
            best, best_inertia = centres, inertia
    return torch.cdist(x, best).argmin(1), best_inertia


def silhouette(x: torch.Tensor, assign: torch.Tensor, generator: torch.Generator) -> float:
    """The mean silhouette of a sample of the points (Rousseeuw 1987)."""
    import torch

    if len(x) > SILHOUETTE_SAMPLE:
        pick = torch.randperm(len(x), generator=generator)[:SILHOUETTE_SAMPLE]
        x, assign = x[pick], assign[pick]
    labels = assign.unique()
    if len(labels) < 2:
        return 0.0
    idx = torch.searchsorted(labels, assign)  # each point's cluster, 0..k-1
    d = torch.cdist(x, x)
    sums = torch.stack([d[:, assign == j].sum(1) for j in labels], 1)  # (n, k)
    sizes = torch.bincount(idx, minlength=len(labels)).float()
    own = sizes[idx]
    a = sums.gather(1, idx[:, None])[:, 0] / (own - 1).clamp(min=1)
    means = sums / sizes
    means[torch.arange(len(x)), idx] = float("inf")
    b = means.min(1).values
    s = ((b - a) / torch.maximum(a, b).clamp(min=1e-12)).masked_fill(own == 1, 0.0)
    return float(s.mean())


def split_class(activations: torch.Tensor, maps: torch.Tensor, seed: int) -> tuple[torch.Tensor, float]:
    """(cluster per image, the silhouette of the split; 0.0 for one cluster)."""
    import torch

    n = activations.shape[0]
    if n < MIN_CLUSTER:
        return torch.zeros(n, dtype=torch.long), 0.0
    g = torch.Generator().manual_seed(seed)
    x = features(activations, maps, g)
    best, best_score = torch.zeros(n, dtype=torch.long), 0.0
    for k in range(2, MAX_K + 1):
        assign, _ = kmeans(x, k, g)
        score = silhouette(x, assign, g)
        if score > best_score:
            best, best_score = assign, score
    if best_score < MIN_SILHOUETTE:
        return torch.zeros(n, dtype=torch.long), best_score
    # clusters numbered by size, largest first
    sizes = torch.bincount(best)
    order = torch.argsort(sizes, descending=True, stable=True)
    renumber = torch.empty_like(order)
    renumber[order] = torch.arange(len(order))
    return renumber[best], best_score
