"""`netviz attribute` as a plain function: pick the images of a run, attribute, sanity-check.

The result (:class:`AttributeReport`) is drawn and written by :mod:`netviz.draw.attribute`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netviz.attribute._common import BASELINES, Attribution, check_score, mean_baseline
from netviz.attribute._gradients import input_x_gradient, saliency, smoothgrad
from netviz.attribute._integrated import integrated_gradients
from netviz.attribute._interior import InteriorGradients, interior_gradients
from netviz.attribute._sanity import SanityResult, model_randomisation
from netviz.errors import NetvizError, close_matches
from netviz.selection import parse_int_list

if TYPE_CHECKING:
    import torch

    from netviz.registry import ModelSpec
    from netviz.runs import Run

METHODS = ("integrated", "interior", "saliency", "inputxgrad", "smoothgrad")
DEFAULT_INDICES = "0-7"


@dataclass
class AttributeReport:
    """Everything `netviz attribute` computed, ready to be drawn."""

    spec: ModelSpec
    run_path: Path | None
    method: str
    names: list[str]  # "index 12" or the image file name
    indices: list[int | None]  # index in the eval set, None for image files
    labels: list[int | None]  # true class when known
    preds: list[int]
    pixels: torch.Tensor  # (N, C, H, W) images in [0, 1], for drawing
    result: Attribution | InteriorGradients
    sanity: SanityResult | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def check_method(method: str) -> str:
    if method not in METHODS:
        raise NetvizError(f"unknown method '{method}': use one of {', '.join(METHODS)}"
                          f"{close_matches(method, METHODS)}")
    return method


def method_function(method: str) -> Callable[..., Any]:
    """The function of :mod:`netviz.attribute` behind a ``--method`` name."""
    return {"integrated": integrated_gradients, "interior": interior_gradients,
            "saliency": saliency, "inputxgrad": input_x_gradient,
            "smoothgrad": smoothgrad}[check_method(method)]


def parse_indices(text: str, n: int) -> list[int]:
    """"0-99", "7" or "1,3,10-12" -> indices, checked against a data set of ``n`` images."""
    out = parse_int_list(text, "--index")
    if max(out) >= n:
        raise NetvizError(f"index {max(out)} is out of range: the eval set has {n} images (0..{n - 1})")
    return out


def _label_from_folder(path: Path, spec: ModelSpec) -> int | None:
    names = list(spec.class_names)
    return names.index(path.parent.name) if path.parent.name in names else None


def load_baseline(baseline: str | None, run: Run, data_dir: str | os.PathLike | None
                  ) -> str | torch.Tensor | None:
    """A baseline name, or the tensor for "mean" or an image file (which must fit the model)."""
    from netviz.data import load_image, normalise

    if baseline is None or baseline.lower() in ("black", "white", "blur", "noise"):
        return baseline.lower() if baseline else None
    if baseline.lower() == "mean":
        return mean_baseline(run.eval_data(data_dir).images, run.spec)
    path = Path(baseline)
    if not path.is_file():
        raise NetvizError(f"unknown baseline '{baseline}': use one of {', '.join(BASELINES)} or an "
                          f"image file{close_matches(baseline, BASELINES)}")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError) as exc:
        raise NetvizError(f"baseline file {path} is not an image PIL can read") from exc
    _, mh, mw = run.spec.input_shape
    if (w, h) != (mw, mh):
        raise NetvizError(f"baseline image {path} is {w}x{h} but model '{run.spec.name}' takes "
                          f"{mw}x{mh} images: give a baseline of that size")
    pixels, _ = load_image(path, run.spec)
    return normalise(pixels, run.spec)


def attribute_run(
    run: Run,
    method: str = "integrated",
    *,
    images: Sequence[str | os.PathLike] = (),
    indices: str | Sequence[int] | None = None,
    target: int | None = None,
    score: str = "logit",
    baseline: str | None = "black",
    steps: int | None = None,
    quadrature: str = "gauss-legendre",
    batch_size: int | None = None,
    tolerance: float | None = None,
    max_steps: int = 1024,
    alphas: str | Sequence[float] | None = None,
    samples: int = 50,
    noise: float = 0.15,
    sanity: bool = False,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    quiet: bool = False,
) -> AttributeReport:
    """Attribute the run's eval images ``indices`` (default 0-7) or the files ``images``."""
    import torch

    from netviz.attribute._common import eval_mode, forward_scores
    from netviz.data import load_image, normalise
    from netviz.device import seed_everything
    from netviz.progress import say

    check_method(method)
    check_score(score)
    if sanity and method == "interior":
        raise NetvizError("--sanity needs a method with one map per image: integrated, saliency, "
                          "inputxgrad or smoothgrad")
    if images and indices is not None:
        raise NetvizError("pass --image or --index, not both")
    seed_everything(seed)
    spec = run.spec
    notes: list[str] = []
    if images:
        loaded = []
        for p in images:
            pixels, note = load_image(p, spec)
            if note:
                notes.append(f"{Path(p).name}: {note}")
                say(f"{Path(p).name}: {note}", quiet)
            loaded.append(pixels)
        uint8 = torch.cat(loaded)
        names = [Path(p).name for p in images]
        idx: list[int | None] = [None] * len(images)
        labels = [_label_from_folder(Path(p), spec) for p in images]
    else:
        data = run.eval_data(data_dir)
        indices = DEFAULT_INDICES if indices is None else indices
        chosen = (parse_indices(indices, len(data)) if isinstance(indices, str)
                  else [int(i) for i in indices])
        if any(not 0 <= i < len(data) for i in chosen):
            raise NetvizError(f"index out of range: the eval set has {len(data)} images")
        uint8 = data.images[chosen]
        names = [f"index {i}" for i in chosen]
        idx = list(chosen)
        labels = [int(data.labels[i]) for i in chosen]
    x = normalise(uint8, spec)
    model = run.model
    with eval_mode(model):
        _, preds = forward_scores(model, x, None, "logit", batch_size or 256)

    base = load_baseline(baseline, run, data_dir)
    common: dict[str, Any] = {"score": score, "batch_size": batch_size, "quiet": quiet}
    if method == "integrated":
        kwargs = dict(common, baseline=base, steps=steps, quadrature=quadrature,
                      tolerance=tolerance, max_steps=max_steps, spec=spec, seed=seed)
    elif method == "interior":
        kwargs = dict(common, baseline=base, alphas=alphas, spec=spec, seed=seed)
    elif method == "smoothgrad":
        kwargs = dict(common, samples=samples, noise=noise, spec=spec, seed=seed)
    else:
        kwargs = common
    fn = method_function(method)
    result = fn(model, x, target, **kwargs)
    sanity_result = None
    if sanity:
        say("sanity check: randomising the layers from the top down", quiet)
        sanity_result = model_randomisation(model, x, fn, result.target, method_kwargs=kwargs,
                                            seed=seed, quiet=quiet)
    settings = {"method": method, "score": score, "target": target,
                "baseline": baseline if method in ("integrated", "interior") else None,
                "steps": steps, "quadrature": quadrature if method == "integrated" else None,
                "tolerance": tolerance if method == "integrated" else None,
                "batch_size": batch_size, "seed": seed}
    if method == "interior":
        settings["alphas"] = list(result.alphas)
    if method == "smoothgrad":
        settings.update(samples=samples, noise=noise)
    return AttributeReport(spec=spec, run_path=run.path, method=method, names=names, indices=idx,
                           labels=labels, preds=[int(p) for p in preds],
                           pixels=uint8.float() / 255.0, result=result, sanity=sanity_result,
                           settings=settings, notes=notes)
