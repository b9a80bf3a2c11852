"""How faithful is an attribution map? Deletion and insertion curves for every method, one table.

Deletion and insertion (Petsiuk et al. 2018, RISE): pixels are ranked by the method's map summed
over channels; deletion replaces the top-ranked ones by the baseline, insertion puts them into
the baseline, a fraction of the image at a time; the target class's probability after each step
traces a curve whose area (on a 0..1 fraction axis) scores the map: a low deletion AUC (the score
falls fast) and a high insertion AUC (it rises fast) mean the map found what the model uses.
Also the cascading randomisation check (Spearman correlation of |map| with the map of a model
whose top half of layers is re-initialised, as Adebayo et al.; lower is better) and the seconds
per image. Every curve's model evaluations go in batches. ``random`` is the control.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from netviz.errors import NetvizError
from netviz.heads import head_of
from netviz.inputs import ImageOptions
from netviz.options import data_dir_option, dataset_option, detection_option, images_option, option, seed_option

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.detection import Targets
    from netviz.inputs import Inputs
    from netviz.registry import ModelSpec
    from netviz.runs import Run

CURVE_BASELINES = ("black", "blur", "mean")
# A map whose rank correlation with the randomised model's map is at least this fails the sanity
# check: it hardly depends on what the model learned (Adebayo et al. 2018)
SANITY_LIMIT = 0.9


@dataclass(frozen=True)
class EvaluateOptions(ImageOptions):
    """`netviz evaluate`: the methods and images, the curves' step and baseline, the randomisation
    check; the methods' own options come beside these (``baseline``, ``layer`` and ``batch_size``
    serve the curves and every method alike)."""

    sets: ClassVar[tuple[str, ...]] = ("score",)  # every method explains the logit

    methods: str | Sequence[str] | None = option(
        None, "Methods to score, e.g. integrated,gradcam,saliency,random (default: every method with one map per "
        "image; random is the control).")
    images: Any = images_option()
    indices: str | Sequence[int] | None = option(None, "Eval-set images: 0-49 (the default), 7 or 1,5,10-12.",
                                                 flags=("--index",))
    steps_frac: float = option(0.05, "The fraction of the pixels removed or inserted per step of the curves.",
                               "float")
    baseline: str = option("black", "What deleted pixels become and insertion starts from (and the methods' own "
                           "baseline).", "choice", choices=CURVE_BASELINES)
    layer: str | int | None = option(None, "The layer of the CAM methods (default: the last spatial one).")
    batch_size: int | None = option(None, "Images per forward pass of the curves and of the methods (default as "
                                    "for `netviz attribute`).", "count")
    sanity: bool = option(True, "Also the randomisation check (one more map per method).", "switch")
    sanity_layers: int | None = option(None, "How many layers, from the top, the check re-initialises (default: "
                                       "half).", "count")
    detection: str | None = detection_option()
    dataset: str | None = dataset_option()
    data_dir: str | None = data_dir_option()
    seed: int = seed_option()


def default_methods() -> list[str]:
    """Every registered method with one map per image whose optional package is installed (the LRP
    methods need zennit), in registry order; ``random``, the control, last."""
    from netviz.attribute import METHODS

    names = [m.name for m in METHODS.values() if m.evaluate and m.available]
    return [n for n in names if n != "random"] + ["random"]


@dataclass
class MethodScores:
    """One method's curves and scores over the images (tensors on the CPU)."""

    name: str
    deletion: torch.Tensor  # (N, S) target probability after each step, step 0 = the image itself
    insertion: torch.Tensor  # (N, S), step 0 = the baseline
    deletion_auc: torch.Tensor  # (N,)
    insertion_auc: torch.Tensor  # (N,)
    sanity: torch.Tensor  # (N,) Spearman of |map| after randomising the top layers (nan: not run)
    seconds: float  # computing the maps, all images

    def summary(self, n: int) -> dict[str, Any]:
        def mean(t: torch.Tensor) -> float | None:
            v = float(t.double().nanmean()) if t.numel() else float("nan")
            return None if math.isnan(v) else v

        return {"deletion_auc": mean(self.deletion_auc), "insertion_auc": mean(self.insertion_auc),
                "sanity_spearman": mean(self.sanity), "sanity_passed": self.sanity_passed(),
                "seconds_per_image": self.seconds / max(n, 1)}

    def sanity_passed(self) -> bool | None:
        """Whether the map depends on the model (None: the check did not run)."""
        if not self.sanity.numel() or bool(self.sanity.isnan().all()):
            return None
        return float(self.sanity.double().nanmean()) < SANITY_LIMIT


@dataclass
class Evaluation:
    """The scores of every method on the same images, targets and baseline."""

    methods: dict[str, MethodScores]
    fractions: torch.Tensor  # (S,) the fraction of pixels removed/inserted at each step
    inputs: Inputs
    targets: torch.Tensor  # (N,)
    spec: ModelSpec
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # a method that could not run -> why
    sanity_limit: float = SANITY_LIMIT

    def ranked(self) -> list[str]:
        """Methods best first: those that pass the sanity check (or were not checked) before those
        that fail it, each group by insertion AUC minus deletion AUC (both in [0, 1])."""
        def key(name: str) -> tuple[bool, float]:
            s = self.methods[name].summary(len(self.inputs))
            return s["sanity_passed"] is not False, s["insertion_auc"] - s["deletion_auc"]

        return sorted(self.methods, key=key, reverse=True)

    def summary(self) -> dict[str, Any]:
        """Key numbers: the ranking with each method's AUCs, and the methods that could not run."""
        n = len(self.inputs)
        return {"images": n, "ranking": [{"method": name, **self.methods[name].summary(n)}
                                         for name in self.ranked()], "failed": dict(self.failed)}

    def record(self) -> dict[str, Any]:
        """The contents of evaluate.json."""
        n = len(self.inputs)
        methods = {}
        for name in self.ranked():
            m = self.methods[name]
            methods[name] = {**m.summary(n), "per_image": [
                {"name": self.inputs.names[i], "index": self.inputs.indices[i], "target": int(self.targets[i]),
                 "deletion_auc": float(m.deletion_auc[i]), "insertion_auc": float(m.insertion_auc[i]),
                 "sanity_spearman": None if math.isnan(float(m.sanity[i])) else float(m.sanity[i]),
                 "deletion": [round(float(v), 6) for v in m.deletion[i]],
                 "insertion": [round(float(v), 6) for v in m.insertion[i]]}
                for i in range(n)]}
        return {"model": self.spec.name, "ranking": self.ranked(),
                "definition": {
                    "deletion_auc": "area under the target probability as the top-ranked pixels are replaced by the "
                                    "baseline, fraction 0..1 (lower is better)",
                    "insertion_auc": "area under the target probability as the top-ranked pixels are put into the "
                                     "baseline (higher is better)",
                    "sanity_spearman": "Spearman correlation of |map| with the map after randomising the top layers "
                                       "(lower is better: the map depends on the model)",
                    "sanity_passed": f"sanity_spearman < {SANITY_LIMIT} (null: not checked)",
                    "ranking": "insertion_auc - deletion_auc, best first, the methods that fail the sanity "
                               "check after those that pass it",
                    "failed": "methods that could not run on this model, with why"},
                "fractions": [round(float(f), 6) for f in self.fractions],
                "methods": methods, "failed": self.failed, "settings": self.settings, "notes": self.notes}


def fraction_steps(steps_frac: float, pixels: int) -> torch.Tensor:
    """0, f, 2f, ..., 1 (the last step always the whole image)."""
    import torch

    if not 0 < steps_frac <= 1:
        raise NetvizError(f"--steps-frac must be a fraction in (0, 1], e.g. 0.05, not {steps_frac}")
    k = max(1, math.ceil(1 / steps_frac - 1e-9))
    return torch.tensor([min(1.0, j * steps_frac) for j in range(k + 1)], dtype=torch.float64)


def auc(curves: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    """Trapezoid area under each row of ``curves`` over ``fractions``."""
    import torch

    return torch.trapezoid(curves.double(), fractions.double(), dim=1)


def perturbation_curves(model: nn.Module, x: torch.Tensor, baseline: torch.Tensor, target: torch.Tensor,
                        maps: torch.Tensor, fractions: torch.Tensor, batch_size: int | None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(deletion, insertion) target probabilities, each (N, S), for pixels ranked by ``maps``
    (N, C, H, W, summed over channels; ties in image order). All N x S x 2 images in batches."""
    import torch

    from netviz.attribute import fast_inference, passes
    from netviz.device import model_device

    n, _, h, w = x.shape
    hw = h * w
    order = torch.argsort(maps.double().sum(1).flatten(1), dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(hw).expand(n, hw).contiguous())
    counts = torch.round(fractions * hw).long()
    s = len(fractions)
    dev = model_device(model)
    fast, layout = fast_inference(model, x)
    # job j = (image, step, kind): built a batch at a time so memory stays at batch_size images
    jobs = torch.arange(n * s * 2)
    probs = torch.empty(n * s * 2)
    with torch.inference_mode():
        for which in passes(model, x, len(jobs), "curves", batch_size, gradients=False):
            j, start = jobs[which], which.start
            img, step, kind = j // (2 * s), (j // 2) % s, j % 2
            top = (rank[img] < counts[step][:, None]).view(-1, 1, h, w).to(dev)
            xs, bs = x[img].to(dev), baseline[img].to(dev)
            deleted = torch.where(top, bs, xs)  # kind 0: the top pixels replaced by the baseline
            inserted = torch.where(top, xs, bs)  # kind 1: the top pixels put into the baseline
            inputs = torch.where((kind == 0).view(-1, 1, 1, 1).to(dev), deleted, inserted)
            logits = fast(inputs.contiguous(memory_format=layout))
            p = head_of(model).probabilities(logits.float())
            probs[start:start + len(j)] = p.gather(1, target[img].view(-1, 1).to(dev)).squeeze(1).cpu()
    probs = probs.view(n, s, 2)
    return probs[..., 0], probs[..., 1]


def sanity_correlation(model: nn.Module, x: torch.Tensor, method: Any, original: Any,
                       kwargs: dict[str, Any], layers: int, seed: int) -> torch.Tensor:
    """Spearman of |map| between ``original`` (the model's) and the map of a copy whose top
    ``layers`` are re-initialised."""
    import torch

    from netviz.attribute import model_randomisation, parameter_layers

    names = parameter_layers(model)[:max(1, layers)]
    result = model_randomisation(model, x, method.function, original.target, layers=names,
                                 method_kwargs=kwargs, seed=seed, original=original, last_only=True)
    return result.rank_correlation[-1].to(torch.float64)


def evaluate_run(run: Run, methods: str | Sequence[str] | None = None, *, images: Sequence[str | os.PathLike] = (),
                 indices: str | Sequence[int] | None = None, steps_frac: float = EvaluateOptions.steps_frac,
                 baseline: str = EvaluateOptions.baseline, layer: str | int | None = None,
                 batch_size: int | None = None, sanity: bool = EvaluateOptions.sanity,
                 sanity_layers: int | None = None, detection: str | int | None = None,
                 data_dir: str | os.PathLike | None = None, seed: int = 0, quiet: bool = True,
                 **options: Any) -> Evaluation | None:
    """Score ``methods`` (default :func:`default_methods`) on the run's eval images ``indices``
    (default 0-49) or on image files; every method explains the same target (the prediction). For
    a detector each image's ``detection`` (an index by score or a range, default 0) is the target,
    one row per detection, and the curves follow its box score.
    ``options``: the methods' own (``steps=64``, ``window=8``, ...), each method taking its own;
    ``baseline``, ``layer`` and ``batch_size`` serve the curves and every method alike.
    Under torchrun each rank scores its share of the images; rank 0 gets the whole evaluation
    (the other ranks None)."""
    import torch

    from netviz import detection as detections
    from netviz import distributed
    from netviz.attribute import check_batch_size, check_method_options, for_share, get_method, method_kwargs
    from netviz.data import normalise
    from netviz.device import seed_everything
    from netviz.inputs import merge_inputs, select_inputs
    from netviz.layers import weight_layers
    from netviz.progress import say

    names = parse_methods(methods)
    chosen = [get_method(name) for name in names]
    check_method_options(options)
    if baseline not in CURVE_BASELINES:
        raise NetvizError(f"unknown --baseline '{baseline}' for the curves: use one of {', '.join(CURVE_BASELINES)}")
    spec, model = run.spec, run.model
    detector = detections.is_detector(model)
    if detection is not None and not detector:
        raise NetvizError(f"--detection is for detectors; model '{spec.name}' answers with class scores: leave it out")
    seed_everything(seed)
    batch_size = check_batch_size(batch_size)
    fractions = fraction_steps(steps_frac, spec.input_shape[1] * spec.input_shape[2])
    n_layers = len(weight_layers(model))
    top = sanity_layers if sanity_layers is not None else math.ceil(n_layers / 2)
    if sanity and not 1 <= top <= n_layers:
        raise NetvizError(f"--sanity-layers {top}: {spec.name} has {n_layers} layers with weights, so "
                          f"use 1 to {n_layers}")
    inputs = select_inputs(run, images, indices, data_dir, default="0-49", shard=True)
    picked = None
    if detector and len(inputs):  # a row per detection explained
        picked = detections.targets(model, normalise(inputs.images, spec), detection)
        inputs = inputs.rows(picked.image, picked.chosen)
    notes = list(inputs.notes)
    values = {**options, "score": "logit", "batch_size": batch_size, "baseline": baseline, "layer": layer,
              "seed": seed}
    kwargs = {m.name: method_kwargs(m, run, for_share(m.make_options(values), inputs.offset), data_dir, notes)
              for m in chosen}
    part = None
    if len(inputs):
        base = make_curve_baseline(run, inputs, baseline, data_dir, seed)
        part = score_methods(run, chosen, kwargs, inputs, base, fractions, batch_size, sanity, top, seed, quiet,
                             picked)
    parts = distributed.gather((inputs, part) if part is not None else None)
    if parts is None:
        return None  # another rank than 0
    parts = [p for p in parts if p is not None]
    for note in notes:
        say(f"note: {note}", quiet)
    targets = torch.cat([p[1][0] for p in parts])
    failed = {name: why for p in parts for name, why in p[1][2].items()}
    if len(failed) == len(names):
        reasons = [f"{name}: {why}" for name, why in failed.items()]
        raise NetvizError(next(iter(failed.values())) if len(failed) == 1 else
                          f"no method could run on this model: {'; '.join(reasons)}")
    scores = {}
    for name in (n for n in names if n not in failed):
        shares = [p[1][1][name] for p in parts]
        merged = distributed.concat(shares)
        merged.seconds = sum(share.seconds for share in shares)  # the work of all the ranks
        scores[name] = merged
    inputs = merge_inputs([p[0] for p in parts])
    settings = {"methods": names, "steps_frac": steps_frac, "steps": len(fractions) - 1, "baseline": baseline,
                "batch_size": batch_size, "sanity": sanity, "sanity_layers": top if sanity else 0, "seed": seed,
                "images": len(inputs), "target": "the predicted class", "score": "softmax probability"}
    if detector:
        settings |= {"target": "each image's detection (--detection, by score)", "detection": detection or 0,
                     "score": detections.SIMILARITIES["box"].meaning}
    return Evaluation(scores, fractions, inputs, targets, spec, settings, notes, failed)


def make_curve_baseline(run: Run, inputs: Inputs, baseline: str, data_dir: str | os.PathLike | None,
                        seed: int) -> torch.Tensor:
    """What deleted pixels become and insertion starts from, for these images (normalised)."""
    from netviz.attribute import load_baseline, make_baseline
    from netviz.data import normalise

    x = normalise(inputs.images, run.spec)
    return make_baseline(x, load_baseline(baseline, run, data_dir), spec=run.spec, seed=seed, offset=inputs.offset)


def score_methods(run: Run, methods: Sequence[Any], kwargs: dict[str, dict[str, Any]], inputs: Inputs,
                  base: torch.Tensor, fractions: torch.Tensor, batch_size: int | None, sanity: bool, top: int,
                  seed: int, quiet: bool, chosen: Targets | None = None
                  ) -> tuple[torch.Tensor, dict[str, MethodScores], dict[str, str]]:
    """(targets, per method its curves, AUCs, sanity and seconds, the methods that could not run
    with why) for one set of images. A method that cannot run on this model (LRP through a
    functional mean, say) is reported and the others' results kept. ``chosen``: a detector's
    detections, one per image (row): each method explains its own, the curves follow its box score."""
    import torch

    from netviz.attribute import eval_mode, forward_scores
    from netviz.data import normalise
    from netviz.heads import headed

    model = run.model
    x = normalise(inputs.images, run.spec)
    if chosen is None:
        with eval_mode(model):
            _, targets = forward_scores(model, x, None, "logit", batch_size)
        scorer = contextlib.nullcontext(model)
    else:  # target j is detection j, read by its box score
        targets, scorer = torch.arange(len(x)), headed(model, chosen.head())
    with scorer as scored:
        return (targets, *_score_each(model, scored, methods, kwargs, x, base, targets, fractions, batch_size,
                                      sanity, top, seed, quiet, chosen))


def _score_each(model: nn.Module, scored: nn.Module, methods: Sequence[Any], kwargs: dict[str, dict[str, Any]],
                x: torch.Tensor, base: torch.Tensor, targets: torch.Tensor, fractions: torch.Tensor,
                batch_size: int | None, sanity: bool, top: int, seed: int, quiet: bool, chosen: Targets | None
                ) -> tuple[dict[str, MethodScores], dict[str, str]]:
    import torch

    from netviz.attribute import eval_mode
    from netviz.progress import progress, say

    scores: dict[str, MethodScores] = {}
    failed: dict[str, str] = {}
    for method in progress(methods, quiet=quiet, desc="methods", unit="method"):
        start = time.perf_counter()
        own = kwargs[method.name] if chosen is None else {**kwargs[method.name],
                                                           "head": chosen.head(method.detection_similarity)}
        try:
            with eval_mode(model):
                result = method.function(model, x, targets, quiet=True, **own)
        except NetvizError as exc:  # said with the table, or as the error when no method ran
            failed[method.name] = str(exc)
            continue
        seconds = time.perf_counter() - start
        with eval_mode(model):
            deletion, insertion = perturbation_curves(scored, x, base, targets, result.attributions,
                                                      fractions, batch_size)
        corr = (sanity_correlation(model, x, method, result, own, top, seed) if sanity
                else torch.full((len(x),), float("nan"), dtype=torch.float64))
        scores[method.name] = MethodScores(method.name, deletion, insertion, auc(deletion, fractions),
                                           auc(insertion, fractions), corr, seconds)
        s = {k: "n/a" if v is None else f"{v:.3f}" for k, v in scores[method.name].summary(len(x)).items()}
        # a line per method as it finishes, on a terminal or not: minutes of work are never silent
        say(f"evaluate: {method.name} done in {time.perf_counter() - start:.1f} s (deletion AUC "
            f"{s['deletion_auc']}, insertion AUC {s['insertion_auc']})", quiet)
    return scores, failed


def parse_methods(methods: str | Sequence[str] | None) -> list[str]:
    """``"integrated,gradcam,random"`` (or a sequence; None: every method that can be scored)."""
    from netviz.attribute import get_method

    if methods is None:
        return default_methods()
    names = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)
    names = [m for m in names if m]
    if not names:
        raise NetvizError("--methods is empty: name one or more, e.g. --methods integrated,gradcam,random")
    for name in names:
        if not get_method(name).evaluate:
            raise NetvizError(f"method {name} gives no single map per image and cannot be scored: "
                              "leave it out of --methods")
    return list(dict.fromkeys(names))
