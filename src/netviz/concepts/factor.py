"""The dictionary: a layer's activations A (rows: positions, columns: channels) factorised as
A ~= U W, U >= 0 the codes (one row per position, one column per concept), W the concepts (K x C).

``nmf`` (W >= 0 too, for non-negative layers such as a ReLU's output) is scikit-learn's NMF
(coordinate descent from a seeded random start: NNDSVD starts are the same whatever the seed, and
two dictionaries that share a start cannot say how stable a dictionary is). ``semi-nmf`` (W of any
sign: pre-activation layers, transformer tokens) is Ding, Li and Jordan's Semi-NMF (TPAMI 2010): W
by least squares, U by their multiplicative update. ``sae`` is a TopK sparse autoencoder (Gao et al.
2024; the kind Overcomplete trains), for large K: an encoder keeps each position's ``active`` largest
codes, W is its unit-norm decoder. Codes of new rows under a fixed W (:func:`encode`) come from
projected gradient descent on ||A - U W||^2 with U >= 0, for every method: the concepts are then
measured, drawn and explained one way whatever fitted them (the SAE's own encoder is saved beside
its dictionary for those who want its codes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz.errors import NetvizError

if TYPE_CHECKING:
    import torch

METHODS = ("nmf", "semi-nmf", "sae")
# projected-gradient steps from the clamped least-squares codes: on mnist-fast's relu2, r2 is within
# 1e-4 of 500 steps' and every concept's strongest position the same
ENCODE_STEPS = 20


@dataclass
class Dictionary:
    """K concepts over a layer's C channels."""

    components: torch.Tensor  # (K, C) float32
    method: str
    iterations: int  # of the fit (epochs for sae)
    converged: bool = True
    encoder: TopK | None = None  # the SAE's; None: non-negative least squares under the concepts

    @property
    def size(self) -> int:
        return self.components.shape[0]

    def encode(self, a: torch.Tensor) -> torch.Tensor:
        """The codes U >= 0 of the rows ``a`` (n x C): (n x K)."""
        return encode(a, self.components) if self.encoder is None else self.encoder(a)


@dataclass
class TopK:
    """A TopK SAE's encoder on the layer's own scale: codes = scale * the ``active`` largest of
    relu(a / scale @ weight' + bias)."""

    weight: torch.Tensor  # (K, C)
    bias: torch.Tensor  # (K,)
    active: int
    scale: float

    def __call__(self, a: torch.Tensor) -> torch.Tensor:
        import torch

        pre = torch.relu(a / self.scale @ self.weight.to(a).T + self.bias.to(a))
        kept = pre.topk(min(self.active, pre.shape[1]), dim=1)
        return torch.zeros_like(pre).scatter(1, kept.indices, kept.values * self.scale)

    def tensors(self) -> dict[str, torch.Tensor]:
        import torch

        return {"encoder": self.weight.float().contiguous(), "encoder_bias": self.bias.float().contiguous(),
                "encoder_active": torch.tensor([self.active]), "encoder_scale": torch.tensor([self.scale])}

    @classmethod
    def read(cls, tensors: dict[str, torch.Tensor]) -> TopK | None:
        if "encoder" not in tensors:
            return None
        return cls(tensors["encoder"].float(), tensors["encoder_bias"].float(), int(tensors["encoder_active"][0]),
                   float(tensors["encoder_scale"][0]))


def fit(rows: torch.Tensor, k: int, method: str, seed: int, active: int | None = None) -> Dictionary:
    """The dictionary of ``k`` concepts for ``rows`` (n x C, float32 on the CPU); ``active``: the
    SAE's codes kept per position."""
    check(rows, k, method)
    fits = {"nmf": _nmf, "semi-nmf": _semi_nmf, "sae": lambda r, n, s: _sae(r, n, s, active or default_active(n))}
    return fits[method](rows, k, seed)


def default_active(k: int) -> int:
    """The SAE's codes kept per position: an eighth of the concepts, 4 to 64 (NMF's codes on a
    ReLU layer are about this sparse)."""
    return max(4, min(64, k // 8))


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


def _sae(rows: torch.Tensor, k: int, seed: int, active: int, epochs: int = 30, batch: int = 1024) -> Dictionary:
    """A TopK sparse autoencoder: codes = the ``active`` largest of relu(x E + b), x ~= codes D with
    D's rows of unit norm; Adam on the squared error. A concept that fired on no row in an epoch is
    started again on the worst-reconstructed rows (Bricken et al. 2023's resampling), except in the
    last epochs, so that the dictionary ends settled."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    scale = rows.norm(dim=1).mean().clamp(min=1e-12)
    x_all = rows.float() / scale
    n, c = x_all.shape
    decoder = torch.nn.functional.normalize(torch.randn(k, c, generator=gen), dim=1)
    params = {"encoder": torch.nn.Parameter(decoder.T.clone()), "bias": torch.nn.Parameter(torch.zeros(k)),
              "decoder": torch.nn.Parameter(decoder)}
    optimiser = torch.optim.Adam(params.values(), lr=1e-3)

    codes = TopK(params["encoder"].T, params["bias"], active, 1.0)  # the encoder as it trains, on the scaled rows

    for epoch in range(epochs):
        fired = torch.zeros(k, dtype=torch.bool)
        for x in x_all[torch.randperm(n, generator=gen)].split(batch):
            u = codes(x)
            loss = ((x - u @ params["decoder"]) ** 2).sum(1).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                params["decoder"].copy_(torch.nn.functional.normalize(params["decoder"], dim=1))
            fired |= (u > 0).any(0)
        if epoch < epochs - 5 and not bool(fired.all()):
            _resample(x_all, ~fired, params, codes, gen)
    encoder = TopK(params["encoder"].detach().T.contiguous(), params["bias"].detach().clone(), active, float(scale))
    return Dictionary(params["decoder"].detach().contiguous(), "sae", epochs, encoder=encoder)


def _resample(x: torch.Tensor, dead: torch.Tensor, params: dict, codes: Any, gen: torch.Generator) -> None:
    """Dead concepts start again on rows drawn by their squared reconstruction error."""
    import torch

    with torch.no_grad():
        sample = x[torch.randperm(x.shape[0], generator=gen)[:8192]]
        error = ((sample - codes(sample) @ params["decoder"]) ** 2).sum(1)
        chosen = sample[torch.multinomial(error + 1e-12, int(dead.sum()), generator=gen)]
        new = torch.nn.functional.normalize(chosen, dim=1)
        params["decoder"][dead] = new
        params["encoder"][:, dead] = new.T * 0.2
        params["bias"][dead] = 0.0


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

    dictionary: Dictionary
    model: str
    layer: str
    folder: Path  # its concepts folder (the cards concept-<k>.png are there)

    @property
    def components(self) -> torch.Tensor:
        return self.dictionary.components


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
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as exc:
        raise NetvizError(f"{path} is not a dictionary `netviz concepts` wrote: {exc}") from None
    components = tensors.get("components")
    if components is None or components.ndim != 2 or not {"model", "layer"} <= set(meta):
        raise NetvizError(f"{path} is not a dictionary `netviz concepts` wrote (no components, model and layer)")
    if model is not None and meta["model"] != model:
        raise NetvizError(f"the dictionary in {folder} was learnt on model {meta['model']}, not {model}: run "
                          "`netviz concepts` on this model")
    dictionary = Dictionary(components.float(), meta.get("method", ""), 0, encoder=TopK.read(tensors))
    return SavedDictionary(dictionary, meta["model"], meta["layer"], path.parent)
