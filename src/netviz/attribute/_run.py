"""`netviz attribute` as a plain function: pick the images of a run, attribute, sanity-check.

Which options a method takes comes from its registered :class:`~netviz.attribute._registry.Method`;
nothing here branches on a method's name. The result (:class:`AttributeResult`) is drawn and
written by :mod:`netviz.draw.attribute`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from netviz.attribute._common import BASELINES, Attribution, mean_baseline
from netviz.attribute._interior import InteriorGradients
from netviz.attribute._registry import METHODS, Method, Options, SeededOptions, get_method
from netviz.attribute._sanity import SanityResult, model_randomisation
from netviz.errors import NetvizError, close_matches
from netviz.files import finite_number
from netviz.heads import head_of, region_masks, target_label, target_name
from netviz.inputs import ImageOptions
from netviz.options import (
    box_option,
    data_dir_option,
    dataset_option,
    detection_option,
    images_option,
    option,
    seed_option,
)
from netviz.styles import STYLES, check_drawing

if TYPE_CHECKING:
    import torch

    from netviz.detection import Explained
    from netviz.registry import ModelSpec
    from netviz.runs import Run

UNIFORM = 0.05  # an unsigned map whose range is under this fraction of its maximum points nowhere
DEFAULT_INDICES = "0-7"


@dataclass(frozen=True)
class AttributeOptions(ImageOptions):
    """`netviz attribute`: the method, the images and target, how the maps are drawn; the method's own
    options (its :class:`Options` dataclass) come beside these."""

    positional: ClassVar[tuple[str, ...]] = ("method",)

    method: str = option("integrated", lambda: "The method: " + ", ".join(METHODS)
                         + " (`--list` says what each computes).")
    images: Any = images_option()
    indices: str | int | Sequence[int] | None = option(None, f"Eval-set images: 7, 0-99 or 1,5,10-12 (default "
                                                       f"{DEFAULT_INDICES}).", flags=("--index",))
    target: int | str | None = option(None, "Class to explain, a number or a name (default: each image's "
                                      "predicted class); several at once as 3,5 for a multi-label model (their "
                                      "scores are summed).")
    detection: str | None = detection_option()
    box: str | None = box_option()
    sanity: bool = option(False, "Also run the cascading model-randomisation test (sanity.json, sanity.png).",
                          "flag")
    style: str = option("overlay", "Grid panels: green/red on a grey image, or a heat map.", "choice",
                        choices=STYLES)
    percentile: float = option(99.0, "Percentile of |attribution| drawn at full colour.", "float",
                               flags=("--clip",))
    dataset: str | None = dataset_option()
    data_dir: str | None = data_dir_option()
    seed: int = seed_option()

    def check(self) -> None:
        check_drawing(self.style, self.percentile)



@dataclass
class AttributeResult:
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
    regions: torch.Tensor | None = None  # (N, H, W): the pixels a segmentation target's score sums
    detections: Explained | None = None  # a detector's: per map, the detection it explains
    weights: str = ""  # which weights the model has (Run.weights_label)

    @property
    def spec_method(self) -> Method:
        return get_method(self.method)

    @functools.cached_property
    def uniform(self) -> list[bool]:
        """Per image, whether an unsigned map (a CAM's) is nearly the same everywhere: its range under
        UNIFORM of its maximum. Drawn at full strength such a map would look like a strong answer;
        it points at no region."""
        if self.spec_method.signed or self.result.attributions.ndim != 4:
            return [False] * len(self.names)
        maps = self.result.attributions.double().sum(1).flatten(1)
        top, low = maps.amax(1), maps.amin(1)
        return [bool(t > 0 and (t - b) < UNIFORM * t) for t, b in zip(top, low, strict=True)]

    def lines(self, most: int = 10) -> list[str]:
        """What the terminal shows: per image its prediction, the target and what the map adds up to."""
        res = self.result
        out = [f"{self.spec.name} with {self.weights}:"] if self.run_path is None and self.weights else []
        err = getattr(res, "completeness_error", None)
        for i, name in enumerate(self.names[:most]):
            truth = f" (true {self.spec.class_name(self.labels[i])})" if self.labels[i] is not None else ""
            line = (f"{name}{truth}: predicted {self.spec.class_name(self.preds[i])}, target "
                    f"{self.target_text(i)}") if self.detections is None else f"{name}: {self.target_text(i)}"
            if res.attributions.ndim == 4:  # one map per image (interior's are a strip of gradients)
                line += f"; map sum {float(res.attributions[i].double().sum()):.3g}"
            if err is not None:
                line += f", completeness error {float(err[i]):.1%} in {int(res.steps[i])} steps"
            if self.uniform[i]:
                line += f"; the map is uniform (its range under {UNIFORM:.0%} of its maximum): it points at no region"
            out.append(line)
        if len(self.names) > most:
            out.append(f"... and {len(self.names) - most} more image(s) in attribute.json")
        return out

    def target_text(self, i: int) -> str:
        """What map ``i`` explains: a class, or a detection (its class, score and box)."""
        d = self.detections
        if d is None:
            return target_name(self.result.target[i], self.spec)
        box = ",".join(f"{float(v):.0f}" for v in d.boxes[i])
        name = self.spec.class_name(int(d.labels[i]))
        return f"{'class ' if name.isdigit() else ''}{name} ({float(d.confidence[i]):.2f}) at [{box}]"

    def summary(self) -> dict[str, Any]:
        """Key numbers: the method, images, predictions, and the completeness error when known."""
        out: dict[str, Any] = {"method": self.method, "images": len(self.names),
                               "correct": sum(p == lbl for p, lbl in zip(self.preds, self.labels, strict=True)
                                              if lbl is not None),
                               "labelled": sum(lbl is not None for lbl in self.labels)}
        layer = getattr(self.result, "layer", None)
        if layer:
            out["layer"] = layer
        err = getattr(self.result, "completeness_error", None)
        if err is not None:
            out["completeness_error_max"] = float(err.max())
            out["completeness_error_mean"] = float(err.mean())
            out["mean_steps"] = float(self.result.steps.double().mean())
        return out

    def tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """What maps.safetensors holds, for users to analyse the maps themselves: ``attributions``
        (N, C, H, W float32 at the input's resolution, as the Python API returns them) or, for
        interior gradients, ``gradients`` (N, A, C, H, W) with ``alphas`` and ``scores``; ``targets``
        (N); ``maps`` (N, 1, h, w) at a CAM method's layer. Its metadata names the model, method and
        images."""
        import json

        import torch

        res = self.result
        out = {"targets": res.target.long().cpu().contiguous()}
        if self.detections is not None:  # map j explains detection j: its box and class
            out |= {"boxes": self.detections.boxes.float().contiguous(),
                    "labels": self.detections.labels.long().contiguous()}
        if isinstance(res, InteriorGradients):
            out |= {"gradients": res.gradients.float().contiguous(), "scores": res.scores.double().contiguous(),
                    "alphas": torch.tensor(res.alphas, dtype=torch.float64)}
        else:
            out["attributions"] = res.attributions.float().contiguous()
            if res.maps is not None:
                out["maps"] = res.maps.float().cpu().contiguous()
        meta = {"model": self.spec.name, "method": self.method, "score": res.score,
                "images": json.dumps(self.names), "indices": json.dumps(self.indices)}
        if getattr(res, "layer", None):
            meta["layer"] = res.layer
        return out, meta

    def record(self) -> dict[str, Any]:
        """What attribute.json holds: the settings, and per image its target, scores and sums."""
        report, res, spec = self, self.result, self.spec
        score_text = {"logit": "the target class logit", "logprob": "the log-softmax of the target",
                      "prob": "the softmax probability of the target"}[res.score]
        if self.detections is not None:
            score_text = self.detections.scored_by.meaning
        data: dict[str, Any] = {
            "model": spec.name,
            "weights": report.weights,
            "run": str(report.run_path) if report.run_path is not None else None,
            "method": report.method,
            "score": res.score,
            "score_meaning": f"F, the function differentiated, is {score_text}",
            "settings": report.settings,
            "notes": report.notes,
            "images": [],
        }
        if getattr(res, "layer", None):
            data["layer"] = res.layer
        complete = getattr(res, "completeness_error", None) is not None
        for i, name in enumerate(report.names):
            item: dict[str, Any] = {
                "name": name, "index": report.indices[i], "label": report.labels[i],
                "label_name": spec.class_name(report.labels[i]) if report.labels[i] is not None
                else None,
                "pred": report.preds[i], "target": target_label(res.target[i]), "uniform": report.uniform[i],
            }
            if report.detections is not None:
                item["detection"] = report.detections.record(i, spec.class_name)
            item.update(res.image_record(i))  # each kind of result says what it records of an image
            if complete:
                item["score_baseline"] = finite_number(res.score_baseline[i])
                item["completeness_delta"] = finite_number(res.delta[i])
                item["completeness_error"] = finite_number(res.completeness_error[i])
                item["steps"] = int(res.steps[i])
            data["images"].append(item)
        if complete:
            err = res.completeness_error
            tol = res.settings.get("tolerance")
            data["completeness"] = {
                "definition": "|sum(attributions) - (F(x) - F(baseline))| / |F(x) - F(baseline)|",
                "max": finite_number(err.max()), "mean": finite_number(err.mean()),
                "median": finite_number(err.median()),
                "images_over_1_percent": int((err > 0.01).sum()),
                "images_over_tolerance": int((err > tol).sum()) if tol else None,
                "mean_steps": finite_number(res.steps.double().mean()),
            }
        return data

    def sanity_record(self) -> dict[str, Any]:
        """What sanity.json holds: the correlations per randomised layer."""
        import numpy as np

        report, sanity = self, self.sanity
        rank, signed = sanity.rank_correlation.numpy(), sanity.signed_correlation.numpy()
        return {
            "test": "cascading model randomisation (Adebayo et al. 2018): layers re-initialised "
                    "from the top down, cumulatively, on a copy of the model",
            "method": report.method,
            "correlation": "Spearman rank correlation with the original map (channel-summed)",
            "images": report.names,
            "targets": [target_label(t) for t in sanity.target],
            "layers": [
                {"randomised_up_to": name,
                 "abs_mean": finite_number(np.nanmean(rank[j])), "signed_mean": finite_number(np.nanmean(signed[j])),
                 "abs_per_image": [finite_number(v) for v in rank[j]],
                 "signed_per_image": [finite_number(v) for v in signed[j]]}
                for j, name in enumerate(sanity.layers)
            ],
        }


def load_baseline(baseline: str | None, run: Run, data_dir: str | os.PathLike | None
                  ) -> str | torch.Tensor | None:
    """A baseline name, or the tensor for "mean" or an image file (which must fit the model)."""
    from netviz.data import load_image, normalise
    from netviz.images import decode

    if baseline is None or baseline.lower() in ("black", "white", "blur", "noise"):
        return baseline.lower() if baseline else None
    if baseline.lower() == "mean":
        return mean_baseline(run.eval_data(data_dir).images, run.spec)
    path = Path(baseline)
    if not path.is_file() and (path.suffix or len(path.parts) > 1):  # meant as a file
        raise NetvizError(f"baseline image {baseline} does not exist: give an image file, or one of "
                          f"{', '.join(BASELINES)}")
    if not path.is_file():
        raise NetvizError(f"unknown baseline '{baseline}': use one of {', '.join(BASELINES)} or an "
                          f"image file{close_matches(baseline, BASELINES)}")
    h, w = decode(path).pixels.shape[:2]
    _, mh, mw = run.spec.input_shape
    if (w, h) != (mw, mh):
        raise NetvizError(f"baseline image {path} is {w}x{h} but model '{run.spec.name}' takes "
                          f"{mw}x{mh} images: give a baseline of that size")
    pixels, _ = load_image(path, run.spec)
    return normalise(pixels, run.spec)


def method_kwargs(method: Method, run: Run, options: Options, data_dir: str | os.PathLike | None,
                  notes: list[str]) -> dict[str, Any]:
    """The keyword arguments of ``method``'s function from its options: the baseline loaded, the
    CAM layer resolved (the default one said in ``notes``), ``spec`` added."""
    from netviz.attribute._cam import cam_layer
    from netviz.layers import grid_notes

    chosen = options.given()
    if "baseline" in chosen:
        chosen["baseline"] = load_baseline(chosen["baseline"], run, data_dir)
    if method.layer:
        said: list[str] = []
        layer = cam_layer(run.model, chosen.get("layer"), run.spec.input_shape, said)
        if chosen.get("layer") is None:
            notes.extend(said or [f"{method.name} reads layer {layer}, the last one with a spatial output "
                                  "(pass --layer to choose another)"])
        notes.extend(grid_notes(run.model, [layer], run.spec.input_shape).values())
        chosen["layer"] = layer
    return {**chosen, "spec": run.spec}


def for_share(options: Options, offset: int) -> Options:
    """The options of a share of the images that starts at ``offset`` (random draws skip the rest)."""
    import dataclasses

    return dataclasses.replace(options, offset=offset) if isinstance(options, SeededOptions) else options


def recorded(options: dict[str, Any]) -> dict[str, Any]:
    """The options as JSON can hold them (a baseline tensor becomes its name)."""
    return {k: (v if isinstance(v, (str, int, float, bool, list, type(None))) else "tensor")
            for k, v in options.items() if k != "spec"}


def attribute_run(
    run: Run,
    method: str = "integrated",
    options: Options | None = None,
    *,
    images: Any = (),
    indices: str | int | Sequence[int] | None = None,
    target: int | str | None = None,
    sanity: bool = False,
    detection: str | int | None = None,
    box: str | Sequence[float] | None = None,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    quiet: bool = False,
) -> AttributeResult | None:
    """Attribute the run's eval images ``indices`` (default 0-7) or ``images`` (files, PIL images,
    tensors) for ``target`` (a class number or name, or several summed: ``"3,5"``) with
    ``method`` and its ``options`` (an instance of the method's :class:`Options` dataclass, e.g.
    ``get_method("occlusion").make_options({"window": 8})``; default: its defaults, seeded with
    ``seed``). For a detector, each image's ``detection`` (an index by score or a range, default
    0) or the detection matching ``box`` (x0,y0,x1,y1, with ``target`` its class) is explained:
    one map per detection. Under torchrun every rank attributes its share and the report (rank 0's) holds all
    images in order; the other ranks get None."""
    import torch

    from netviz import detection as detections
    from netviz import distributed
    from netviz.attribute._common import eval_mode, forward_scores
    from netviz.data import normalise
    from netviz.device import seed_everything
    from netviz.inputs import merge_inputs, select_inputs
    from netviz.progress import say
    from netviz.selection import target_text

    m = get_method(method)
    options = options if options is not None else m.make_options({"seed": seed})
    if not isinstance(options, m.options):
        raise NetvizError(f"{method} takes {m.options.__name__}, not {type(options).__name__}")
    options.check()  # before any work: a bad size is one line, not an empty batch
    if sanity and not m.evaluate:
        raise NetvizError(f"--sanity needs a method with one map per image, not {method}")
    if (detection is not None or box is not None) and not detections.is_detector(run.model):
        raise NetvizError(f"--detection and --box are for detectors; model '{run.spec.name}' answers with class "
                          "scores: leave them out (--target names the class to explain)")
    seed_everything(seed)
    spec = run.spec
    target = target_text(target, spec.class_names, spec.num_classes, f"model {spec.name}")
    # under torchrun each rank attributes its own share of the images; rank 0 gathers them
    inputs = select_inputs(run, images, indices, data_dir, default=DEFAULT_INDICES, shard=True)
    notes = list(inputs.notes)
    kwargs = method_kwargs(m, run, for_share(options, inputs.offset), data_dir, notes)
    for note in notes:
        say(f"note: {note}", quiet)
    part = None
    if len(inputs):
        x = normalise(inputs.images, spec)
        model = run.model
        if detections.is_detector(model):  # one map per detection chosen, each with its image
            chosen = detections.targets(model, x, detection, box, target)
            inputs = inputs.rows(chosen.image, chosen.chosen)
            x, wanted, preds = x[chosen.image], torch.arange(len(chosen.image)), chosen.labels
            kwargs = {**kwargs, "head": chosen.head(m.detection_similarity)}
            explained: Explained | None = chosen.explained(m.detection_similarity)
        else:
            with eval_mode(model):
                _, preds = forward_scores(model, x, None, "logit", options.batch_size)
            wanted, explained = target, None
        result = m.function(model, x, wanted, quiet=quiet, **kwargs)
        if explained is not None and getattr(result, "completeness_error", None) is not None:
            notes.append("a detector's box score jumps where a detection appears or changes (its score threshold, "
                         "non-maximum suppression, the IoU gate of 0.5): integrated gradients' completeness does not "
                         "hold across such a jump, so a large completeness error here is the detector's, not the "
                         "integral's")
            say(f"note: {notes[-1]}", quiet)
        regions = None if explained is not None else region_masks(model, x, result.target)
        sanity_result = None
        if sanity:
            say("sanity check: randomising the layers from the top down", quiet)
            sanity_result = model_randomisation(model, x, m.function, result.target, method_kwargs=kwargs,
                                                seed=seed, quiet=quiet)
        part = (inputs, preds, result, sanity_result, regions, explained)
    parts = distributed.gather(part)
    if parts is None:
        return None  # another rank than 0: rank 0 draws and writes
    parts = [p for p in parts if p is not None]
    inputs = merge_inputs([p[0] for p in parts])
    preds = torch.cat([p[1] for p in parts])
    result = distributed.concat([p[2] for p in parts], keep=("alphas",))
    sanity_result = distributed.concat([p[3] for p in parts], keep=("layers",),
                                       dims={"rank_correlation": 1, "signed_correlation": 1, "maps": 1})
    settings = {"method": method, "target": target,
                **recorded({k: v for k, v in options.given().items() if k != "offset"})}
    settings.update(result.settings)  # what the method itself settled on (steps, alphas, ...)
    regions = None if parts[0][4] is None else torch.cat([p[4] for p in parts])
    explained = distributed.concat([p[5] for p in parts])
    if regions is not None:  # a segmentation model: what its target's score sums
        region = head_of(run.model).region
        settings["region"] = list(region) if isinstance(region, tuple) else "pred"
        empty = [inputs.names[i] for i in range(len(regions)) if not bool(regions[i].any())]
        if empty:
            notes.append(f"the target is predicted at no pixel of {', '.join(empty[:3])}"
                         f"{' ...' if len(empty) > 3 else ''}: its score sums an empty region (0); pass "
                         "--region Y0,X0,Y1,X1 to name the pixels")
            say(f"note: {notes[-1]}", quiet)
    return AttributeResult(spec=spec, run_path=run.path, method=method, names=inputs.names,
                           indices=inputs.indices, labels=inputs.labels, preds=[int(p) for p in preds],
                           pixels=inputs.images.float() / 255.0, result=result, sanity=sanity_result,
                           settings=settings, notes=list(dict.fromkeys(notes + inputs.notes)), regions=regions,
                           weights=run.weights_label, detections=explained)

