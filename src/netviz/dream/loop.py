"""The optimisation loop: images optimised so that an objective grows, all targets in one batch
(lucent's render, apart from its objectives and parameterisations)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from netviz.device import model_device
from netviz.dream.measure import Measurement, measure_result, saved_pixels, saved_probability
from netviz.dream.objectives import Objective, activations, channel, class_logprob, direction, neuron
from netviz.dream.recipes import DreamSettings, recipe_settings
from netviz.dream.targets import DreamTarget, image_seed, layer_output_shape, parse_classes
from netviz.errors import NetvizError
from netviz.files import file_stem
from netviz.layers import eval_mode
from netviz.selection import parse_indices

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.registry import ModelSpec
    from netviz.runs import Run

@dataclass
class DreamResult:
    """Optimised images and how they were made (pixels in [0, 1], on the CPU)."""

    targets: list[DreamTarget]
    settings: DreamSettings
    seed: int
    objective: Objective  # for all targets
    make_objective: Callable[[list[DreamTarget]], Objective]  # the objective of some targets
    start: torch.Tensor  # (N, C, H, W) the starting images
    images: torch.Tensor  # (N, C, H, W) the optimised images
    objective_start: list[float]  # per image, on the starting image
    objective_final: list[float]  # per image, on the final image (no transforms)
    history: torch.Tensor  # (steps, N) the objective at every step (on the transformed image)
    frames: list[torch.Tensor] = field(default_factory=list)  # snapshots (N, C, H, W)
    frame_steps: list[int] = field(default_factory=list)
    seconds: float = 0.0
    # with settings.until: the step at which each image's saved PNG first had p >= until
    # (0 = the start image already did), None where it never did within settings.max_steps
    stopped_at: list[int | None] = field(default_factory=list)
    # what the model makes of the start images and of the images as the saved 8-bit PNGs hold them
    before: Measurement | None = None
    after: Measurement | None = None

    def summary(self) -> dict[str, Any]:
        """Key numbers: each target with its objective before and after (and its stopping step)."""
        out = {"recipe": self.settings.recipe, "seed": self.seed, "images": [
            {"target": t.label, "objective_start": round(a, 6), "objective_final": round(b, 6)}
            for t, a, b in zip(self.targets, self.objective_start, self.objective_final, strict=True)]}
        if self.settings.until is not None:
            for entry, stopped in zip(out["images"], self.stopped_at, strict=True):
                entry["stopped_at_step"] = stopped
        return out

    def settings_dict(self) -> dict[str, Any]:
        d = asdict(self.settings)
        d["scale"] = list(d["scale"])
        return d

    def record(self, run: Run, files: Sequence[str]) -> dict[str, Any]:
        """What dream.json holds: per image (saved as ``files``) the target, the objective and the
        class probabilities before and as saved."""
        spec, after, before = run.spec, self.after, self.before
        images = []
        for i, t in enumerate(self.targets):
            entry: dict[str, Any] = {"file": files[i], "kind": t.kind}
            if t.kind == "class":
                entry.update(target=t.index, name=t.label,
                             probability_before=float(before.probabilities[i, t.index]),
                             probability_after=float(after.probabilities[i, t.index]))
            else:
                entry.update(layer=t.layer, channel=t.index,
                             position=list(t.position) if t.position else None,
                             activation_before=before.objective[i], activation_after=after.objective[i])
            if self.settings.until is not None:
                entry.update(stopped_at_step=self.stopped_at[i], reached_until=self.stopped_at[i] is not None)
            entry.update(objective_start=self.objective_start[i], objective_final=self.objective_final[i],
                         objective_saved=after.objective[i],
                         top3=[{"class": k, "name": spec.class_name(k), "probability": p}
                               for k, p in after.top(3)[i]])
            images.append(entry)
        return {
            "model": spec.name,
            "run": str(run.path) if run.path else None,
            "checkpoint": str(run.checkpoint) if run.checkpoint else None,
            "objective": self.objective.description,
            "activation": ("total squared activation of the channel (the objective), on the start "
                           "image (before) and on the saved PNG (after)"
                           if self.targets[0].kind != "class" else None),
            "seed": self.seed,
            "settings": self.settings_dict(),
            "seconds": round(self.seconds, 3),
            "device": str(run.device),
            "images": images,
        }


def optimise(model: nn.Module, spec: ModelSpec, make_objective: Callable[[list[DreamTarget]], Objective],
             targets: Sequence[DreamTarget], settings: DreamSettings, seed: int = 0,
             quiet: bool = True) -> DreamResult:
    """Optimise one image per target, all in one batch (one forward/backward per step).

    ``make_objective(targets)`` builds the objective of a list of targets (image i aims at
    ``targets[i]``), e.g. ``lambda ts: channel("conv3", [t.index for t in ts])``.

    With ``settings.until`` (class targets only), each image is checked after every update as
    its saved 8-bit PNG would be: once its target probability reaches ``until`` it is frozen
    (later updates are undone for it) and the others go on, up to ``settings.max_steps``.

    The model is run in eval mode and its weights get no gradients. On the CPU the same seed
    gives bit-identical images. Batching is exact in the algorithm, but BLAS/oneDNN kernels
    round differently for different batch sizes; where an objective is flat the optimiser can
    amplify that rounding, so an image optimised alone may differ in a few pixels from the same
    image optimised in a batch.
    """
    import torch

    from netviz.dream.objectives import redirected_relus
    from netviz.dream.transforms import jitter, scale_rotate
    from netviz.layers import plain_relus
    from netviz.progress import progress, say

    s = settings
    if s.until is not None and any(t.kind != "class" for t in targets):
        raise NetvizError("--until stops class dreams at a probability: use it with --class, "
                          "not with --layer")
    # 1. the objective, one generator per image, the image's parameterisation and optimiser
    objective = make_objective(list(targets))
    gens = [torch.Generator().manual_seed(image_seed(seed, t.key)) for t in targets]
    param = _parameterise(spec, s, gens, model_device(model))
    opt = torch.optim.Adam([param.tensor], lr=s.lr) if s.optimizer == "adam" else None

    def score(x: torch.Tensor) -> torch.Tensor:
        return objective(activations(model, x, objective))

    with eval_mode(model):
        history = torch.full((s.budget, len(targets)), float("nan"))
        until = _Until(model, spec, param, targets, s.until)
        t0 = time.perf_counter()
        steps_run = 0
        # 2. where it starts
        with torch.no_grad():
            start = param.pixels().detach()
            objective_start = score(param.input()).tolist()
        frames, frame_steps = ([start.cpu()], [0]) if s.gif_every else ([], [])
        until.check(0)
        # 3. the steps: transform, score, penalise, update; --until freezes the images that passed
        with redirected_relus(model) if s.redirect_relu else contextlib.nullcontext():
            plain = plain_relus(model, param.input().detach()) if s.redirect_relu else 0
            if plain:
                say(f"note: --redirect-relu reaches nn.ReLU modules only: {plain} ReLU(s) this model applies "
                    "as functions (F.relu) keep their plain gradient", quiet)
            for step in progress(range(s.budget), quiet=quiet, desc="dream", total=s.budget):
                if not until.active.any():
                    break
                x = scale_rotate(jitter(param.input(), gens, s.jitter), gens, s.scale, s.rotate)
                value = score(x)
                (grad,) = torch.autograd.grad(_loss(value, param, s), [param.tensor])
                history[step] = value.detach().cpu()
                if s.fresh_adam and opt is not None:  # the 2019 MNIST post: a new optimiser every iteration
                    opt = torch.optim.Adam([param.tensor], lr=s.lr)
                _update(param, opt, grad, s, step)
                steps_run = step + 1
                until.keep_frozen()
                until.check(steps_run)
                if s.gif_every and (steps_run % s.gif_every == 0 or steps_run == s.budget
                                    or not until.active.any()):
                    frames.append(param.pixels().detach().cpu())
                    frame_steps.append(steps_run)
        # 4. where it ended
        with torch.no_grad():
            final = param.pixels().detach()
            objective_final = score(param.input()).tolist()
    return DreamResult(
        targets=list(targets), settings=s, seed=seed, objective=objective,
        make_objective=make_objective,
        start=start.clamp(0, 1).cpu(), images=final.clamp(0, 1).cpu(),
        objective_start=objective_start, objective_final=objective_final,
        history=history[:steps_run], frames=[f.clamp(0, 1) for f in frames],
        frame_steps=frame_steps, seconds=time.perf_counter() - t0, stopped_at=until.stopped,
    )


def _parameterise(spec: ModelSpec, s: DreamSettings, gens: list[torch.Generator], device: torch.device):
    """The images as the optimiser sees them: Fourier coefficients or pixels."""
    from netviz.dream.param import FFTParam, PixelParam, initial_pixels

    if s.param == "fft":
        return FFTParam(spec.input_shape, spec, gens, device, decorrelate=s.decorrelate)
    return PixelParam(initial_pixels(s.init, spec, gens), spec, device)


def _loss(value: torch.Tensor, param: Any, s: DreamSettings) -> torch.Tensor:
    """What the step minimises: minus the objective, plus the recipe's penalties on the pixels."""
    from netviz.dream.transforms import l2_penalty, total_variation

    loss = -value.sum()
    if s.tv or s.l2:
        pixels = param.pixels()
        if s.tv:
            loss = loss + s.tv * total_variation(pixels).sum()
        if s.l2:
            loss = loss + s.l2 * l2_penalty(pixels).sum()
    return loss


def _update(param: Any, opt: Any, grad: torch.Tensor, s: DreamSettings, step: int) -> None:
    """One step of Adam or of the normalised-gradient ascent, kept in range, blurred on schedule."""
    if opt is not None:
        param.tensor.grad = grad
        opt.step()
        param.tensor.grad = None
    else:
        param.normgrad_step_(-grad, s.lr)
    param.project_()
    if s.blur_every and (step + 1) % s.blur_every == 0:
        param.blur_(s.blur_sigma)
    if s.quantise:
        param.quantise_()


class _Until:
    """``--until P``: each class image is checked as its saved 8-bit PNG would be; once its target
    probability reaches P it is frozen (later updates are undone for it) and the step recorded."""

    def __init__(self, model: nn.Module, spec: ModelSpec, param: Any, targets: Sequence[DreamTarget],
                 until: float | None) -> None:
        import torch

        self.model, self.spec, self.param, self.until = model, spec, param, until
        self.classes = [t.index for t in targets]
        self.stopped: list[int | None] = [None] * len(targets)
        self.active = torch.ones(len(targets), dtype=torch.bool)
        self.frozen = param.tensor.detach().clone()

    def check(self, step: int) -> None:
        if self.until is None:
            return
        p = saved_probability(self.model, self.spec, self.param.pixels().detach(), self.classes)
        passed = self.active & (p >= self.until)
        for i in passed.nonzero().flatten().tolist():
            self.stopped[i] = step
        self.active[passed] = False
        passed = passed.to(self.frozen.device)
        self.frozen[passed] = self.param.tensor.detach()[passed]

    def keep_frozen(self) -> None:
        import torch

        if self.until is None:
            return
        with torch.no_grad():  # frozen images keep the update that passed
            done = (~self.active).to(self.frozen.device)
            self.param.tensor[done] = self.frozen[done]


def _run_parts(run: Run) -> tuple[nn.Module, ModelSpec]:
    return run.model, run.spec


def dream_directions(run: Run, layer: str, vectors: torch.Tensor, recipe: str = "deepdream", seed: int = 0,
                     quiet: bool = True, batch_size: int | None = None, **overrides: Any) -> DreamResult | None:
    """Images that maximise the activation of ``layer`` along each row of ``vectors`` (K x C),
    summed over positions: the feature visualisation of a dictionary's concepts."""
    model, spec = _run_parts(run)
    settings = recipe_settings(recipe, spec.input_shape, **overrides)
    targets = [DreamTarget("concept", k, f"{layer} concept {k}", f"{file_stem(layer)}_concept_{k}", layer)
               for k in range(vectors.shape[0])]
    return _batched(model, spec, lambda chosen: direction(layer, vectors[[t.index for t in chosen]]), targets,
                    settings, seed, quiet, batch_size)


def _batched(model: nn.Module, spec: ModelSpec, objective_for: Callable[[list[DreamTarget]], Objective],
             targets: list[DreamTarget], settings: DreamSettings, seed: int, quiet: bool,
             batch_size: int | None) -> DreamResult | None:
    """Optimise ``targets`` ``batch_size`` at a time (None: measured, :mod:`netviz.batching`). Under
    torchrun each rank optimises its share of the targets (an image depends on its target and seed
    alone) and rank 0 gets them all, in order; the other ranks get None."""
    from netviz import batching, distributed

    if batch_size is not None and batch_size <= 0:
        raise NetvizError(f"--batch-size must be positive, not {batch_size}")
    share = distributed.shard(len(targets))
    own = targets[share.start:share.stop]
    parts = [optimise(model, spec, objective_for, own[k], settings, seed, quiet)
             for k in batching.batches(len(own), model, spec.input_shape, "dream", batch_size)]
    if not distributed.context().active:
        return _measured(model, spec, _merge(parts, targets, objective_for))
    # the objectives are closures, which do not travel between processes: send the numbers only
    plain = [{f: getattr(p, f) for f in _TRAVELS} for p in parts]
    gathered = distributed.gather(plain)
    if gathered is None:
        return None
    rebuilt = [DreamResult(objective=objective_for(p["targets"]), make_objective=objective_for, **p)
               for rank_parts in gathered for p in rank_parts]
    return _measured(model, spec, _merge(rebuilt, targets, objective_for))


def _measured(model: nn.Module, spec: ModelSpec, result: DreamResult) -> DreamResult:
    """The result with what the model makes of its start images and of its images as saved."""
    result.before = measure_result(model, spec, result, result.start)
    result.after = measure_result(model, spec, result, saved_pixels(result.images))
    return result


_TRAVELS = ("targets", "settings", "seed", "start", "images", "objective_start", "objective_final", "history",
            "frames", "frame_steps", "seconds", "stopped_at")


def _merge(parts: list[DreamResult], targets: list[DreamTarget],
           objective_for: Callable[[list[DreamTarget]], Objective]) -> DreamResult:
    """One result from results of consecutive chunks of ``targets``."""
    import torch

    if len(parts) == 1:
        return parts[0]
    # With --until the chunks may stop at different steps: pad the shorter histories with NaN
    # and repeat their last frame, so every image has a row and a frame for every step.
    longest = max(parts, key=lambda p: p.history.shape[0])
    steps = longest.history.shape[0]
    history = torch.cat([torch.cat([p.history, torch.full((steps - p.history.shape[0], len(p.targets)),
                                                          float("nan"))]) for p in parts], dim=1)
    frames = []
    for k in range(len(longest.frames)):
        frames.append(torch.cat([p.frames[min(k, len(p.frames) - 1)] for p in parts]))
    first = parts[0]
    return DreamResult(
        targets=targets, settings=first.settings, seed=first.seed, objective=objective_for(targets),
        make_objective=objective_for,
        start=torch.cat([p.start for p in parts]), images=torch.cat([p.images for p in parts]),
        objective_start=[v for p in parts for v in p.objective_start],
        objective_final=[v for p in parts for v in p.objective_final],
        history=history, frames=frames, frame_steps=longest.frame_steps,
        seconds=sum(p.seconds for p in parts), stopped_at=[v for p in parts for v in p.stopped_at],
    )


def dream_classes(run: Run, classes: str | int | Sequence[int] = "all", recipe: str = "paper",
                  seed: int = 0, quiet: bool = True, batch_size: int | None = None,
                  **overrides: Any) -> DreamResult | None:
    """Images that maximise classes (default: the 2019 MNIST post's recipe, docs/techniques.md §3;
    all classes in one batch)."""
    model, spec = _run_parts(run)
    settings = recipe_settings(recipe, spec.input_shape, **overrides)
    targets = [DreamTarget("class", k, spec.class_name(k), f"class_{k}")
               for k in parse_classes(classes, spec)]

    def objective_for(chunk: list[DreamTarget]) -> Objective:
        return class_logprob([t.index for t in chunk])

    return _batched(model, spec, objective_for, targets, settings, seed, quiet, batch_size)


def dream_channels(run: Run, layer: str | int, channels: str | int | Sequence[int] = 0,
                   position: tuple[int, int] | str | None = None, recipe: str = "deepdream",
                   seed: int = 0, quiet: bool = True, batch_size: int | None = None,
                   **overrides: Any) -> DreamResult | None:
    """Images that maximise the total squared activation of channels of ``layer``.

    With ``position`` (y, x), or ``"center"``, one neuron of each channel is maximised instead
    (without jitter unless asked for).
    """
    from netviz.layers import resolve_layer

    model, spec = _run_parts(run)
    if position is not None and overrides.get("jitter") is None:
        overrides["jitter"] = 0  # a neuron has a place: shifting the image would move it away
    settings = recipe_settings(recipe, spec.input_shape, **overrides)
    name = resolve_layer(model, layer)
    shape = layer_output_shape(model, spec, name)
    if len(shape) not in (1, 3):
        raise NetvizError(f"layer {name} outputs shape {tuple(shape)}: channel visualisation needs "
                          "a (channels,) or (channels, height, width) output")
    picked = parse_indices(channels, shape[0], "channel", f"layer {name}")
    if position is None:
        targets = [DreamTarget("channel", c, f"{name} ch {c}", f"{file_stem(name)}_channel_{c}", name)
                   for c in picked]
        return _batched(model, spec, lambda ch: channel(name, [t.index for t in ch]), targets,
                        settings, seed, quiet, batch_size)
    if len(shape) != 3:
        raise NetvizError(f"layer {name} has no spatial positions (output {tuple(shape)}): "
                          "use --channel instead of --neuron")
    h, w = shape[1], shape[2]
    y, x = (h // 2, w // 2) if position == "center" else position
    if not (0 <= y < h and 0 <= x < w):
        raise NetvizError(f"neuron position ({y}, {x}) is outside layer {name}'s {h}x{w} map "
                          f"(rows 0..{h - 1}, columns 0..{w - 1})")
    targets = [DreamTarget("neuron", c, f"{name} ch {c} @{y},{x}", f"{file_stem(name)}_neuron_{c}_{y}_{x}",
                           name, (y, x)) for c in picked]
    return _batched(model, spec, lambda ch: neuron(name, [t.index for t in ch], y, x), targets,
                    settings, seed, quiet, batch_size)
