"""Inputs the network likes most: class maximisation and channel / neuron visualisation.

The model's weights stay frozen; an image (see :mod:`netviz.dream.param`) is optimised so that
an objective (:mod:`netviz.dream.objectives`) grows, with random transforms and regularisers
(:mod:`netviz.dream.transforms`). Several targets are optimised as one batch: the loss is a sum
over images, Adam and the normalised-gradient step are per element / per image, and all
randomness comes from one generator per image seeded from (seed, target), so an image does not
depend on which other images share its batch (up to float rounding, see :func:`optimise`).

Recipes (:data:`RECIPES`): ``paper`` (the 2019 MNIST post), ``deepdream`` (the Wolfram feature
visualisation example) and ``lucent`` (FFT parameterisation and transforms, as Lucid/Lucent).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from netviz.device import model_device
from netviz.dream.objectives import (
    OUTPUT,
    Objective,
    activations,
    channel,
    class_logit,
    class_logprob,
    neuron,
)
from netviz.dream.param import INITS, PARAMS
from netviz.errors import NetvizError, close_matches
from netviz.outputs import file_stem
from netviz.selection import RANGE_RE, parse_int_list

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netviz.registry import ModelSpec
    from netviz.runs import Run

__all__ = [
    "OUTPUT", "RECIPES", "DreamResult", "DreamSettings", "DreamTarget", "Measurement", "Objective",
    "activations", "channel", "class_logit", "class_logprob", "dream_channels", "dream_classes",
    "layer_output_shape", "measure", "measure_result", "neuron", "optimise", "parse_classes", "parse_indices",
    "recipe_settings",
]

RECIPES = ("paper", "deepdream", "lucent")
OPTIMIZERS = ("adam", "normgrad")


@dataclass(frozen=True)
class DreamSettings:
    """How an image is optimised; :func:`recipe_settings` fills it from a recipe and the input size."""

    recipe: str
    steps: int
    lr: float  # Adam's learning rate, or the normgrad step (largest change per step, pixel units)
    optimizer: str  # adam | normgrad (gradient scaled so its largest coefficient is lr)
    param: str  # pixel | fft
    init: str  # black | grey | noise | multiscale (pixel); spectrum (fft)
    jitter: int = 0  # random shift of up to this many pixels every step
    scale: tuple[float, float] = (1.0, 1.0)  # random zoom range
    rotate: float = 0.0  # random rotation of up to +-degrees
    tv: float = 0.0  # weight of the total-variation penalty
    l2: float = 0.0  # weight of the L2 penalty (distance from grey)
    blur_every: int = 0  # blur the image every n steps (pixel parameterisation), 0 = never
    blur_sigma: float = 0.5
    decorrelate: bool = True  # fft: decorrelate colours (3-channel input only)
    redirect_relu: bool = True  # let gradients revive dead ReLUs (Lucid); the paper recipe: off
    gif_every: int = 0  # keep a snapshot every k steps for a GIF, 0 = none, -1 = steps // 25
    until: float | None = None  # class dreams: stop each image once its saved PNG has p >= until
    max_steps: int | None = None  # with until: the most steps an image gets (default 4 x steps)
    fresh_adam: bool = False  # a new Adam every step (each update is Adam's first step): the 2019 post
    quantise: bool = False  # round the image to 8-bit pixels after every step: the 2019 post

    @property
    def budget(self) -> int:
        """The most updates an image gets: ``steps``, or ``max_steps`` with ``until``."""
        return self.max_steps if self.until is not None and self.max_steps is not None else self.steps


def recipe_settings(recipe: str, input_shape: Sequence[int], **overrides: Any) -> DreamSettings:
    """A recipe's settings for an input of ``input_shape`` (C, H, W), with ``overrides`` applied.

    Overrides that are None are ignored. Sizes scale with the input: jitter is about 1/28 of the
    side (2 px at 28-32, 8 px at 224); nothing is ever upsampled.
    """
    if recipe not in RECIPES:
        raise NetvizError(f"unknown recipe '{recipe}': use one of {', '.join(RECIPES)}")
    side = max(int(input_shape[1]), int(input_shape[2]))
    if recipe == "paper":
        # The 2019 post's loop, read literally (docs/techniques.md): an all-black start; every one
        # of its 50 iterations makes a new Adam over the normalised image, takes one step and
        # rounds the image back to 8-bit pixels. It gives no learning rate; 0.1 in normalised
        # units is a step of about 8 grey levels (Adam's first step is lr x sign(gradient)).
        base = DreamSettings(recipe, steps=50, lr=0.1, optimizer="adam", param="pixel",
                             init="black", redirect_relu=False, fresh_adam=True, quantise=True)
    elif recipe == "deepdream":
        # Multi-scale noise, gradient scaled so its largest coefficient is 1/8, jitter, 256 steps.
        base = DreamSettings(recipe, steps=256, lr=1 / 8, optimizer="normgrad", param="pixel",
                             init="multiscale", jitter=max(2, round(side / 28)))
    else:
        base = DreamSettings(recipe, steps=256, lr=0.05, optimizer="adam", param="fft",
                             init="spectrum", jitter=max(1, round(side / 28)), scale=(0.95, 1.05),
                             rotate=5.0)
    base = replace(base, blur_sigma=max(0.5, side / 224))
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(given) - set(DreamSettings.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown dream settings: {', '.join(sorted(unknown))}")
    if given.get("param") == "fft" and "init" not in given:
        given["init"] = "spectrum"
    elif given.get("param") == "pixel" and base.param == "fft" and "init" not in given:
        given["init"] = "noise"
    if "scale" in given:
        given["scale"] = tuple(float(s) for s in given["scale"])
    settings = replace(base, **given)
    if settings.until is not None and settings.max_steps is None:
        settings = replace(settings, max_steps=4 * settings.steps)
    if settings.gif_every == -1:  # "auto": about 25 frames
        settings = replace(settings, gif_every=max(1, settings.budget // 25))
    _check(settings, side)
    return settings


def _check(s: DreamSettings, side: int) -> None:
    if s.steps <= 0:
        raise NetvizError(f"--steps must be a positive number of updates, not {s.steps}")
    if not s.lr > 0:
        raise NetvizError(f"--lr must be positive, not {s.lr}")
    if s.optimizer not in OPTIMIZERS:
        raise NetvizError(f"unknown optimizer '{s.optimizer}': use {' or '.join(OPTIMIZERS)}")
    if s.param not in PARAMS:
        raise NetvizError(f"unknown image parameterisation '{s.param}': use {' or '.join(PARAMS)}")
    if s.param == "fft" and s.init != "spectrum":
        raise NetvizError("--init applies to --param pixel only (the fft image starts from a "
                          "random spectrum): leave --init out")
    if s.param == "pixel" and s.init not in INITS:
        raise NetvizError(f"unknown init '{s.init}': use one of {', '.join(INITS)}")
    if not 0 <= s.jitter < side:
        raise NetvizError(f"--jitter must be between 0 and {side - 1} pixels, not {s.jitter}")
    lo, hi = s.scale
    if not 0 < lo <= hi:
        raise NetvizError(f"--scale must be a range LO,HI with 0 < LO <= HI, not {lo:g},{hi:g}")
    if not 0 <= s.rotate <= 180:
        raise NetvizError(f"--rotate must be between 0 and 180 degrees, not {s.rotate:g}")
    if s.tv < 0 or s.l2 < 0:
        raise NetvizError("--tv and --l2 are penalty weights: they cannot be negative")
    if s.blur_every < 0 or not s.blur_sigma > 0:
        raise NetvizError("--blur-every must be >= 0 and --blur-sigma > 0")
    if s.blur_every and s.param != "pixel":
        raise NetvizError("--blur-every works with --param pixel only (an fft image is smooth "
                          "by construction): leave it out or use --param pixel")
    if s.quantise and s.param != "pixel":
        raise NetvizError("the paper recipe rounds the pixels after every step: it works with --param pixel "
                          "only (use --recipe lucent for an fft image)")
    if s.gif_every < 0:  # -1 was resolved by recipe_settings
        raise NetvizError(f"--gif-every must be >= 0, not {s.gif_every}")
    if s.until is not None and not 0 < s.until < 1:
        raise NetvizError(f"--until is a probability between 0 and 1 (e.g. 0.99), not {s.until:g}")
    if s.max_steps is not None and s.until is None:
        raise NetvizError("--max-steps goes with --until (without it, --steps sets the steps)")
    if s.max_steps is not None and s.max_steps < 1:
        raise NetvizError(f"--max-steps must be a positive number of updates, not {s.max_steps}")


@dataclass(frozen=True)
class DreamTarget:
    """What one image of a batch aims at."""

    kind: str  # class | channel | neuron
    index: int  # the class, or the channel
    label: str  # for figures: "5", "cat", "conv3 ch 7"
    stem: str  # file name without .png: class_5, conv3_channel_7, conv3_neuron_7_4_4
    layer: str | None = None
    position: tuple[int, int] | None = None

    @property
    def key(self) -> str:
        """Seeds the image's generator: the same target gets the same randomness in any batch."""
        where = "" if self.position is None else f"@{self.position[0]},{self.position[1]}"
        return f"{self.kind}:{self.layer or ''}:{self.index}{where}"


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


def image_seed(seed: int, key: str) -> int:
    """A 63-bit seed from the run seed and a target key, stable across runs and platforms."""
    digest = hashlib.sha256(f"{seed}|{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def saved_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] as the 8-bit PNG will hold them (uint8, rounded as the PNG writer does)."""
    import torch

    return (pixels.clamp(0, 1) * 255.0 + 0.5).floor().to(torch.uint8)


def saved_probability(model: nn.Module, spec: ModelSpec, pixels: torch.Tensor,
                      classes: Sequence[int]) -> torch.Tensor:
    """p(class_i | image_i) as the model will see image i once saved as an 8-bit PNG (CPU)."""
    import torch

    from netviz.data import normalise

    with torch.no_grad():
        logits = model(normalise(saved_pixels(pixels), spec, pixels.device))
        logits = logits[0] if isinstance(logits, (tuple, list)) else logits
        probs = torch.softmax(logits.float(), dim=1)
    return probs[torch.arange(len(classes)), torch.as_tensor(list(classes), device=probs.device)].cpu()


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
    from netviz.progress import progress

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

    was_training = model.training
    model.eval()
    history = torch.full((s.budget, len(targets)), float("nan"))
    until = _Until(model, spec, param, targets, s.until)
    t0 = time.perf_counter()
    steps_run = 0
    try:
        # 2. where it starts
        with torch.no_grad():
            start = param.pixels().detach()
            objective_start = score(param.input()).tolist()
        frames, frame_steps = ([start.cpu()], [0]) if s.gif_every else ([], [])
        until.check(0)
        # 3. the steps: transform, score, penalise, update; --until freezes the images that passed
        with redirected_relus(model) if s.redirect_relu else contextlib.nullcontext():
            for step in progress(range(s.budget), quiet=quiet, desc="dream", total=s.budget):
                if not until.active.any():
                    break
                x = scale_rotate(jitter(param.input(), gens, s.jitter), gens, s.scale, s.rotate)
                value = score(x)
                (grad,) = torch.autograd.grad(_loss(value, param, s), [param.tensor])
                history[step] = value.detach().cpu()
                if s.fresh_adam and opt is not None:  # the post: a new optimiser every iteration
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
    finally:
        model.train(was_training)
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


# -- targets -------------------------------------------------------------------------------------

def parse_indices(text: str | int | Sequence[int], count: int, what: str, owner: str) -> list[int]:
    """``"5"``, ``"0-15"``, ``"1,4,7"``, ``"all"`` (or ints) -> indices checked against ``count``."""
    if isinstance(text, str) and text.strip().lower() == "all":
        return list(range(count))
    if isinstance(text, str):
        items = parse_int_list(text, what)
    else:
        items = [int(text)] if isinstance(text, int) else [int(i) for i in text]
    if not items:
        raise NetvizError(f"no {what} given")
    for i in items:
        if not 0 <= i < count:
            plural = what + ("es" if what.endswith("s") else "s")
            raise NetvizError(f"{what} {i} is out of range: {owner} has {count} {plural} "
                              f"(0..{count - 1})")
    return list(dict.fromkeys(items))


def parse_classes(text: str | int | Sequence[int], spec: ModelSpec) -> list[int]:
    """Class numbers from ``"5"``, ``"0-4"``, ``"all"``, or class names (``"cat,dog"``)."""
    if not isinstance(text, str) or text.strip().lower() == "all":
        return parse_indices(text, spec.num_classes, "class", f"model {spec.name}")
    names = [n.lower() for n in spec.class_names]
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if part.lower() in names and not RANGE_RE.match(part):
            out.append(names.index(part.lower()))
        elif RANGE_RE.match(part) or not names:
            out.extend(parse_indices(part, spec.num_classes, "class", f"model {spec.name}"))
        else:
            raise NetvizError(f"unknown class '{part}' of model {spec.name}"
                              f"{close_matches(part, spec.class_names)}")
    return list(dict.fromkeys(out))


def layer_output_shape(model: nn.Module, spec: ModelSpec, layer: str) -> tuple[int, ...]:
    """The output shape of ``layer`` without the batch dimension, from one zero input."""
    import torch

    from netviz.layers import forward_to

    x = torch.zeros(1, *spec.input_shape, device=model_device(model))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = forward_to(model, x, [layer])[layer]
    finally:
        model.train(was_training)
    return tuple(out.shape[1:])


def _run_parts(run: Run) -> tuple[nn.Module, ModelSpec]:
    return run.model, run.spec


def _batched(model: nn.Module, spec: ModelSpec, objective_for: Callable[[list[DreamTarget]], Objective],
             targets: list[DreamTarget], settings: DreamSettings, seed: int, quiet: bool,
             batch_size: int) -> DreamResult | None:
    """Optimise ``targets`` ``batch_size`` at a time. Under torchrun each rank optimises its share
    of the targets (an image depends on its target and seed alone) and rank 0 gets them all, in
    order; the other ranks get None."""
    from netviz import distributed

    if batch_size <= 0:
        raise NetvizError(f"--batch-size must be positive, not {batch_size}")
    share = distributed.shard(len(targets))
    own = targets[share.start:share.stop]
    parts = [optimise(model, spec, objective_for, own[k:k + batch_size], settings, seed, quiet)
             for k in range(0, len(own), batch_size)]
    if not distributed.context().active:
        return _merge(parts, targets, objective_for)
    # the objectives are closures, which do not travel between processes: send the numbers only
    plain = [{f: getattr(p, f) for f in _TRAVELS} for p in parts]
    gathered = distributed.gather(plain)
    if gathered is None:
        return None
    rebuilt = [DreamResult(objective=objective_for(p["targets"]), make_objective=objective_for, **p)
               for rank_parts in gathered for p in rank_parts]
    return _merge(rebuilt, targets, objective_for)


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
                  seed: int = 0, quiet: bool = True, batch_size: int = 64,
                  **overrides: Any) -> DreamResult | None:
    """Images that maximise classes (default: the MNIST post's recipe, all classes in one batch)."""
    model, spec = _run_parts(run)
    settings = recipe_settings(recipe, spec.input_shape, **overrides)
    targets = [DreamTarget("class", k, spec.class_name(k), f"class_{k}")
               for k in parse_classes(classes, spec)]

    def objective_for(chunk: list[DreamTarget]) -> Objective:
        return class_logprob([t.index for t in chunk])

    return _batched(model, spec, objective_for, targets, settings, seed, quiet, batch_size)


def dream_channels(run: Run, layer: str | int, channels: str | int | Sequence[int] = 0,
                   position: tuple[int, int] | str | None = None, recipe: str = "deepdream",
                   seed: int = 0, quiet: bool = True, batch_size: int = 64,
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


def parse_scale(text: str | None) -> tuple[float, float] | None:
    """``"0.95,1.05"`` -> (0.95, 1.05); ``"1.1"`` -> (1/1.1, 1.1); ``"1"`` -> off."""
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) == 1 and values[0] > 0:
        v = values[0]
        return (min(v, 1 / v), max(v, 1 / v))
    if len(values) != 2:
        raise NetvizError(f"cannot read --scale '{text}': use a range like 0.95,1.05 or one "
                          "factor like 1.05 (1 = off)")
    return (values[0], values[1])


def parse_neuron(text: str) -> tuple[str, tuple[int, int] | str]:
    """``"K"`` -> (K, centre); ``"K,Y,X"`` -> (K, (Y, X)); K may be a range like ``0-3``."""
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) == 1:
            return parts[0], "center"
        if len(parts) == 3:
            return parts[0], (int(parts[1]), int(parts[2]))
    except ValueError:
        pass
    raise NetvizError(f"cannot read --neuron '{text}': use K (the centre of channel K) or K,Y,X")


# -- measuring ----------------------------------------------------------------------------------

@dataclass
class Measurement:
    """What the model makes of images: the objective, and class probabilities."""

    objective: list[float]
    probabilities: torch.Tensor  # (N, classes) softmax of the output

    def top(self, k: int = 3) -> list[list[tuple[int, float]]]:
        p, idx = self.probabilities.topk(min(k, self.probabilities.shape[1]), dim=1)
        return [[(int(i), float(v)) for i, v in zip(row_idx, row_p, strict=True)]
                for row_idx, row_p in zip(idx, p, strict=True)]


def _first_column(t: torch.Tensor) -> torch.Tensor:
    return t[:, 0]


def measure(model: nn.Module, spec: ModelSpec, objective: Objective, images: torch.Tensor
            ) -> Measurement:
    """Score images (uint8, or floats in [0, 1]; (N, C, H, W), one per target of ``objective``)."""
    import torch

    from netviz.data import normalise

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = normalise(images, spec, model_device(model))
            # the same (possibly truncated) pass as the optimisation: a module called twice
            # (torchvision ResNets reuse one ReLU) is read at its first call in both
            values = objective(activations(model, x, objective, detach=True)).float().cpu().tolist()
            logits = activations(model, x, Objective(((OUTPUT, 1.0, _first_column),), ""),
                                 detach=True)[OUTPUT]
            probs = torch.softmax(logits.float(), dim=1).cpu()
    finally:
        model.train(was_training)
    return Measurement(values, probs)


def measure_result(model: nn.Module, spec: ModelSpec, result: DreamResult, images: torch.Tensor,
                   batch_size: int = 64) -> Measurement:
    """:func:`measure` for the images of ``result`` (e.g. re-loaded from disk), in chunks."""
    import torch

    values: list[float] = []
    probs = []
    for start in range(0, len(result.targets), batch_size):
        chunk = result.targets[start:start + batch_size]
        m = measure(model, spec, result.make_objective(chunk), images[start:start + batch_size])
        values += m.objective
        probs.append(m.probabilities)
    return Measurement(values, torch.cat(probs))
