"""How a dream is made: the recipes (``paper``, ``deepdream``, ``lucent``) as :class:`DreamSettings`,
filled in for an input size and checked before any work (docs/techniques.md §3-4)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from netviz.dream.param import INITS, PARAMS
from netviz.errors import NetvizError
from netviz.options import CommandOptions, option, seed_option

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
        # The 2019 post's loop, read literally (docs/techniques.md §3): an all-black start; every one
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


@dataclass(frozen=True)
class DreamOptions(CommandOptions):
    """`netviz dream`: what is maximised (classes, or channels / a neuron of a layer), the recipe and
    its settings (None: the recipe's), the GIF."""

    classes: str | None = option(None, "Class(es) to maximise: 5, 0-4, 3,7, a class name, or all (the default "
                                 "without --layer). All are optimised in one batch.", flags=("--class",))
    layer: str | int | None = option(None, "Visualise channels of this layer instead: a name (conv3, "
                                     "layer2.0.conv1) or a layer number (see `netviz layers`).")
    channels: str | None = option(None, "With --layer: channel(s) 3, 0-15, 1,4,7 or all (default 0).",
                                  flags=("--channels", "--channel"))
    neuron: str | None = option(None, "With --layer: one position of a channel, K,Y,X (or K for the centre); K "
                                "may be a range such as 0-7.")
    recipe: str | None = option(None, "paper: the MNIST post (black start, Adam, 50 steps; default for --class); "
                                "deepdream: multi-scale noise, gradient steps of 1/8, jitter, 256 steps (default for "
                                "--layer); lucent: FFT image, jitter/scale/rotate, Adam.", "choice", choices=RECIPES)
    steps: int | None = option(None, "Number of updates (recipe default).", "count")
    until: float | None = option(None, "Class dreams: stop each image once its target probability, measured on "
                                 "the saved 8-bit PNG, reaches P (e.g. 0.99); the others go on up to --max-steps.",
                                 "float")
    max_steps: int | None = option(None, "With --until: the most updates an image gets (default 4 x the recipe's "
                                   "steps).", "count")
    lr: float | None = option(None, "Adam learning rate, or the normgrad step (largest pixel change per step) "
                              "(default: the recipe's).", "positive")
    optimizer: str | None = option(None, "adam, or normgrad (gradient scaled so its largest coefficient is --lr) "
                                   "(default: the recipe's).", "choice", choices=OPTIMIZERS)
    param: str | None = option(None, "Image parameterisation: pixel (clamped to valid pixels) or fft "
                               "(decorrelated Fourier image, as Lucid/Lucent) (default: the recipe's).", "choice",
                               choices=PARAMS)
    init: str | None = option(None, "Start image of --param pixel; noise/multiscale are centred on the model's "
                              "mean pixel (default: the recipe's).", "choice", choices=INITS)
    jitter: int | None = option(None, "Random shift of up to N pixels every step (default: ~side/28 for "
                                "deepdream and lucent, 0 for paper).", "whole")
    scale: str | None = option(None, "Random zoom range every step, e.g. 0.95,1.05 (1 = off) (default: the "
                               "recipe's).")
    rotate: float | None = option(None, "Random rotation of up to +-DEG degrees every step (default: the "
                                  "recipe's).", "nonneg")
    tv: float | None = option(None, "Weight of a total-variation penalty (default: the recipe's).", "nonneg")
    l2: float | None = option(None, "Weight of an L2 penalty (distance from grey) (default: the recipe's).",
                              "nonneg")
    blur_every: int | None = option(None, "Blur the image every N steps (--param pixel; 0 = never).", "whole")
    blur_sigma: float | None = option(None, "Blur radius in pixels (default: 0.5, or side/224).", "positive")
    decorrelate: bool | None = option(None, "fft: decorrelate the colours of 3-channel images (default on).",
                                      "switch")
    redirect_relu: bool | None = option(None, "Let gradients reach dead ReLUs, as Lucid does (default on, off "
                                        "for paper).", "switch")
    gif: bool = option(False, "Also write dream.gif of the optimisation.", "flag")
    gif_every: int | None = option(None, "GIF: one frame every K steps (default: steps/25).", "count")
    batch_size: int | None = option(None, "Images per forward/backward (default: the fastest size, measured). An "
                                    "image's random draws and updates do not depend on its batch; 1 also makes the "
                                    "CPU rounding identical to a one-target run.", "count")
    seed: int = seed_option()

    def check(self) -> None:
        if self.layer is None and (self.channels is not None or self.neuron is not None):
            raise NetvizError("--channel and --neuron need --layer NAME (see `netviz layers`)")
        if self.layer is not None and self.classes is not None:
            raise NetvizError("use either --class or --layer, not both")
        if self.channels is not None and self.neuron is not None:
            raise NetvizError("use either --channel or --neuron, not both")

    def settings(self) -> dict[str, Any]:
        """The recipe's settings these options override (those given)."""
        names = set(DreamSettings.__dataclass_fields__)
        names -= {"recipe", "scale", "gif_every"}  # the recipe is named apart; the others derived by the command
        return {k: v for k, v in self.values().items() if k in names and v is not None}
