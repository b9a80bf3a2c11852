"""The dictionary: a layer's activations A (rows: positions, columns: channels) factorised as
A ~= U W, U >= 0 the codes (one row per position, one column per concept), W the concepts (K x C).

``nmf`` (W >= 0 too, for non-negative layers such as a ReLU's output) is scikit-learn's NMF
(coordinate descent from a seeded random start: NNDSVD starts are the same whatever the seed, and
two dictionaries that share a start cannot say how stable a dictionary is). ``semi-nmf`` (W of any
sign: pre-activation layers, transformer tokens) is Ding, Li and Jordan's Semi-NMF (TPAMI 2010): W
by least squares, U by their multiplicative update. Codes of new rows under a fixed W
(:func:`encode`) come from projected gradient descent on ||A - U W||^2 with U >= 0, for both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from netviz.errors import NetvizError

if TYPE_CHECKING:
    import torch

METHODS = ("nmf", "semi-nmf")
# projected-gradient steps from the clamped least-squares codes: on mnist-fast's relu2, r2 is within
# 1e-4 of 500 steps' and every concept's strongest position the same
ENCODE_STEPS = 20


@dataclass
class Dictionary:
    """K concepts over a layer's C channels."""

    components: torch.Tensor  # (K, C) float32
    method: str
    iterations: int  # of the fit
    converged: bool = True

    @property
    def size(self) -> int:
        return self.components.shape[0]


def fit(rows: torch.Tensor, k: int, method: str, seed: int) -> Dictionary:
    """The dictionary of ``k`` concepts for ``rows`` (n x C, float32 on the CPU)."""
    check(rows, k, method)
    return _nmf(rows, k, seed) if method == "nmf" else _semi_nmf(rows, k, seed)


def check(rows: torch.Tensor, k: int, method: str) -> None:
    """One line for a fit that cannot be made, before any work."""
    if method not in METHODS:
        raise NetvizError(f"unknown --method '{method}': use one of {', '.join(METHODS)}")
    if k > rows.shape[0]:
        raise NetvizError(f"--concepts {k} is more than the {rows.shape[0]} positions read: use fewer concepts "
                          "or more images")
    if method == "nmf" and float(rows.min()) < 0:
        raise NetvizError(f"the layer has negative activations (min {float(rows.min()):.3g}): nmf needs a "
                          "non-negative layer (a ReLU's output); use --method semi-nmf")


def _nmf(rows: torch.Tensor, k: int, seed: int) -> Dictionary:
    import numpy as np
    import torch

    try:
        from sklearn.decomposition import NMF
    except ImportError as exc:
        raise NetvizError("--method nmf needs scikit-learn: pip install 'netviz[concepts]'") from exc
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    model = NMF(n_components=k, init="random", random_state=seed, max_iter=400, tol=1e-4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(rows.numpy().astype(np.float32))
    # components_ is not C-contiguous: a copy, so whatever reads its buffer reads the values
    w = torch.from_numpy(np.ascontiguousarray(model.components_, dtype=np.float32))
    converged = not any(issubclass(c.category, ConvergenceWarning) for c in caught)
    return Dictionary(w, "nmf", int(model.n_iter_), converged)


def _semi_nmf(rows: torch.Tensor, k: int, seed: int, iterations: int = 200) -> Dictionary:
    """Ding, Li and Jordan's Semi-NMF: W = (U'U)^-1 U'A, then U <- U sqrt((AW'+ + U(WW')-) /
    (AW'- + U(WW')+)), from a seeded k-means-like start (each row on its nearest of k sampled rows)."""
    import torch

    a = rows.double()
    gen = torch.Generator().manual_seed(seed)
    centres = a[torch.randperm(a.shape[0], generator=gen)[:k]]
    nearest = torch.cdist(a, centres).argmin(1)
    u = torch.full((a.shape[0], k), 0.2, dtype=torch.float64)
    u[torch.arange(a.shape[0]), nearest] += 1.0
    eps = 1e-12
    for _ in range(iterations):
        w = torch.linalg.lstsq(u, a).solution  # (k, C)
        aw, ww = a @ w.T, w @ w.T
        u = u * torch.sqrt((aw.clamp(min=0) + u @ (-ww).clamp(min=0) + eps)
                           / ((-aw).clamp(min=0) + u @ ww.clamp(min=0) + eps))
    w = torch.linalg.lstsq(u, a).solution
    scale = w.norm(dim=1, keepdim=True).clamp(min=eps)  # unit concepts; the codes carry the size
    return Dictionary((w / scale).float().contiguous(), "semi-nmf", iterations)


def encode(a: torch.Tensor, w: torch.Tensor, steps: int = ENCODE_STEPS) -> torch.Tensor:
    """Codes U >= 0 of the rows ``a`` (n x C) under the fixed concepts ``w`` (K x C): projected
    gradient descent on ||a - U w||^2 from the clamped least-squares codes (any device)."""
    import torch

    w = w.to(a.device, a.dtype)
    ww = w @ w.T
    step = 1.0 / float(torch.linalg.eigvalsh(ww.double()).max().clamp(min=1e-12))
    aw = a @ w.T
    u = (a @ torch.linalg.pinv(w)).clamp(min=0)
    for _ in range(steps):
        u = (u - step * (u @ ww - aw)).clamp(min=0)
    return u


def matched_cosine(w1: torch.Tensor, w2: torch.Tensor) -> float:
    """The mean cosine of two dictionaries' concepts, paired one to one by the Hungarian algorithm
    (the pairing with the largest total cosine)."""
    import torch
    from scipy.optimize import linear_sum_assignment

    a = torch.nn.functional.normalize(w1.double(), dim=1)
    b = torch.nn.functional.normalize(w2.double(), dim=1)
    cos = (a @ b.T).numpy()
    rows, cols = linear_sum_assignment(-cos)
    return float(cos[rows, cols].mean())


FILE = "dictionary.safetensors"


@dataclass
class SavedDictionary:
    """A dictionary as `netviz concepts` wrote it, with what it was fitted on."""

    components: torch.Tensor  # (K, C)
    model: str
    layer: str
    method: str
    folder: Path  # its concepts folder (the cards concept-<k>.png are there)


def load_dictionary(folder: str | os.PathLike, model: str | None = None) -> SavedDictionary:
    """The dictionary of a `netviz concepts` output folder (or its dictionary.safetensors); one line
    when there is none, it is not one, or it was learnt on another model than ``model``."""
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    path = Path(folder)
    path = path / FILE if path.is_dir() else path
    if not path.is_file():
        raise NetvizError(f"no {FILE} in {folder}: give the output folder of `netviz concepts`")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            components = f.get_tensor("components") if "components" in f.keys() else None  # noqa: SIM118
    except (SafetensorError, OSError) as exc:
        raise NetvizError(f"{path} is not a dictionary `netviz concepts` wrote: {exc}") from None
    if components is None or components.ndim != 2 or not {"model", "layer"} <= set(meta):
        raise NetvizError(f"{path} is not a dictionary `netviz concepts` wrote (no components, model and layer)")
    if model is not None and meta["model"] != model:
        raise NetvizError(f"the dictionary in {folder} was learnt on model {meta['model']}, not {model}: run "
                          "`netviz concepts` on this model")
    return SavedDictionary(components.float(), meta["model"], meta["layer"], meta.get("method", ""), path.parent)
